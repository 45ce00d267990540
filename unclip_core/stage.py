"""One diffusion stage: the only place a sampler meets a model.

A :class:`Stage` binds a diffusion model (a diffusion prior, the decoder, an upsampler) to its
sampler and guidance scale, and runs it the one way every stage runs: inference mode, the
recipe's precision (bf16 autocast with each weight cast once a call, or oneDNN's bf16
arithmetic), a progress bar, and the generator the pipeline hands on from stage to stage, so
the draw order is the chain's order (prior, decoder, upsamplers). The sampler still owns the
loop and draws x_T from that generator (:mod:`unclip_core.diffusion.noise`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from unclip_core.interfaces import Sampler, StepCallback, StepInfo
from unclip_core.precision import Precision, onednn_bf16_math

ProgressFactory = Callable[[str, int], Any]
"""``progress(stage_name, total_steps)`` → an object with ``update(n)`` and ``close()`` (tqdm)."""


@contextlib.contextmanager
def running(precision: Precision, device: torch.device, *models: object) -> Iterator[None]:
    """Inference mode plus ``precision`` (bf16 autocast, or oneDNN's bf16 arithmetic, where
    asked for) while ``models`` run; under autocast each of their weights is cast once."""
    with torch.no_grad():
        if precision == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16), bf16_weights_cast_once(*models):
                yield
        elif precision == "bf16-matmul":
            with onednn_bf16_math():
                yield
        else:
            yield


@contextlib.contextmanager
def bf16_weights_cast_once(*models: object) -> Iterator[None]:
    """Let autocast keep its bf16 copy of each weight for the whole call.

    Autocast caches the copies it casts only of leaf tensors that require grad, and the
    built models' parameters do not (``assemble`` freezes them), so without this every
    model call would cast every weight again, memory-bound work that tripled a small-batch
    bf16 linear stack's time (docs/benchmarks.md, "Karlo against diffusers"). Under
    ``no_grad`` requiring grad records nothing. The cache lives until the outermost
    autocast region ends (each stage is one) and costs half the running stage's fp32
    weights in memory."""
    frozen = [p for model in models if isinstance(model, torch.nn.Module) for p in model.parameters()
              if not p.requires_grad and p.is_floating_point()]
    for parameter in frozen:
        parameter.requires_grad_(True)
    try:
        yield
    finally:
        for parameter in frozen:
            parameter.requires_grad_(False)


@contextlib.contextmanager
def progress_callback(
    progress: ProgressFactory | None, name: str, sampler: Any, user: StepCallback | None
) -> Iterator[StepCallback | None]:
    """A step callback that advances a progress bar named ``name`` (its total: the sampler's
    ``steps``, where it has them) and calls ``user``; the bar is closed when the block ends."""
    bar = progress(name, getattr(getattr(sampler, "config", None), "steps", None) or 0) if progress else None
    if bar is None and user is None:
        yield None
        return

    def callback(info: StepInfo) -> None:
        if bar is not None:
            bar.update(1)
        if user is not None:
            user(info)

    try:
        yield callback
    finally:
        if bar is not None:
            bar.close()


@dataclass
class Stage:
    """A diffusion model with its sampler and guidance, run as every stage runs."""

    name: str
    model: Any
    sampler: Sampler | None
    guidance_scale: float = 1.0
    precision: Precision = "fp32"
    device: torch.device = torch.device("cpu")
    progress: ProgressFactory | None = None

    def running(self) -> contextlib.AbstractContextManager[None]:
        return running(self.precision, self.device, self.model)

    def sample(
        self,
        cond: Any,
        shape: Sequence[int],
        generator: torch.Generator,
        *,
        x_T: Tensor | None = None,
        sampler: Sampler | None = None,
        guidance_scale: float | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """Draw ``shape`` from the model conditioned on ``cond`` (``sampler`` and
        ``guidance_scale`` in place of the stage's own, if given)."""
        sampler = sampler or self.sampler
        if sampler is None:
            raise ValueError(f"stage {self.name} has no sampler")
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        with progress_callback(self.progress, self.name, sampler, callback) as step, self.running():
            return sampler.sample(self.model.denoiser(cond, scale), shape, generator=generator, x_T=x_T, callback=step)

    def sample_from(
        self,
        cond: Any,
        x0: Tensor,
        strength: float,
        generator: torch.Generator,
        *,
        sampler: Sampler | None = None,
        guidance_scale: float | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """img2img: ``x0`` noised to ``strength`` of the chain and denoised from there
        (:meth:`~unclip_core.interfaces.Sampler.sample_from`), run as :meth:`sample` runs."""
        sampler = sampler or self.sampler
        if sampler is None:
            raise ValueError(f"stage {self.name} has no sampler")
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        with progress_callback(self.progress, self.name, sampler, callback) as step, self.running():
            return sampler.sample_from(self.model.denoiser(cond, scale), x0, strength, generator=generator, callback=step)

    def invert(self, cond: Any, x0: Tensor, sampler: Sampler) -> Tensor:
        """The noise that ``sampler`` (deterministic) maps back to ``x0``, without guidance."""
        with progress_callback(self.progress, "inversion", sampler, None) as step, self.running():
            return sampler.invert(self.model.denoiser(cond, 1.0), x0, callback=step)
