"""Inputs the checks use, public so plugin authors can reuse them in their own tests."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from unclip_core.contracts._support import _generator, _sizes
from unclip_core.diffusion.parameterization import alpha_sigma
from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.interfaces import (
    DecoderCondition,
    Declared,
    Prior,
    PredictionType,
    PriorCondition,
    TextEncoding,
    Upsampler,
    UpsamplerCondition,
    VarianceType,
    map_tensors,
)


def make_text_encoding(
    batch: int, embed_dim: int, length: int, width: int, generator: torch.Generator
) -> TextEncoding:
    """A random caption batch as an encoder would give it: unit-norm ``embed`` ``[B, D]``,
    Gaussian ``tokens`` ``[B, L, W]`` and a ``mask`` ``[B, L]`` marking a random number
    (at least one) of leading tokens real. Drawn on the CPU from ``generator``."""
    device = generator.device
    embed = torch.randn(batch, embed_dim, generator=generator, device=device)
    tokens = torch.randn(batch, length, width, generator=generator, device=device)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator, device=device)
    mask = torch.arange(length, device=device)[None, :] < lengths[:, None]
    return TextEncoding(embed=torch.nn.functional.normalize(embed, dim=-1), tokens=tokens, mask=mask)


class ExactDenoiser:
    """A :class:`~unclip_core.interfaces.Denoiser` that knows the answer.

    For one fixed clean sample ``x0`` it returns, at any ``(x_t, t)``, exactly what a perfect
    model would: the noise that ``x_t`` holds (``eps``), ``x0`` itself, or ``v``. A correct
    sampler driven by it must land on ``x0``, whatever noise it starts from, so a sampler can
    be tested without any trained model. With ``variance_type="learned_range"`` it appends
    zeros (the midpoint between the fixed variances) as the variance channels.
    ``calls`` counts the evaluations.
    """

    def __init__(
        self,
        x0: Tensor,
        schedule: NoiseSchedule,
        *,
        prediction_type: PredictionType = "eps",
        variance_type: VarianceType = "fixed_small",
        clip_range: float | None = 1.0,
    ):
        if prediction_type not in ("eps", "x0", "v"):
            raise ValueError(f"unknown prediction type {prediction_type!r}")
        self.x0 = x0
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.variance_type = variance_type
        self.clip_range = clip_range
        self.device = x0.device
        self.dtype = x0.dtype
        self.calls = 0

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        x_t64 = x_t.double()
        x0 = self.x0.to(device=x_t.device, dtype=torch.float64).expand_as(x_t64)
        a, s = alpha_sigma(self.schedule, torch.as_tensor(t).cpu().long(), x_t64)
        eps = (x_t64 - a * x0) / s
        out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[self.prediction_type].to(x_t.dtype)
        if self.variance_type == "learned_range":
            out = torch.cat([out, torch.zeros_like(out)], dim=1)
        return out


def make_exact_denoiser(
    x0: Tensor,
    schedule: NoiseSchedule,
    *,
    prediction_type: PredictionType = "eps",
    variance_type: VarianceType = "fixed_small",
    clip_range: float | None = 1.0,
) -> ExactDenoiser:
    """An :class:`ExactDenoiser` for ``x0``: a perfect model of a one-point data set."""
    return ExactDenoiser(
        x0, schedule, prediction_type=prediction_type, variance_type=variance_type, clip_range=clip_range
    )


def make_training_batch(
    kind: str, declared: Declared, *, batch_size: int = 2, generator: torch.Generator | None = None
) -> dict[str, Any]:
    """A random batch in the layout the training stages hand to ``training_loss``
    (see :mod:`unclip_core.training.stages`): priors get ``image_embed`` and ``text``;
    decoders ``image``, ``image_embed`` and (when they read captions) ``text``; upsamplers
    ``image`` at their output size. Images are uniform in [-1, 1]."""
    generator = generator if generator is not None else _generator(0)
    embed_dim, length, width, size = _sizes(declared)
    device = generator.device

    def image_embed() -> Tensor:
        return torch.nn.functional.normalize(torch.randn(batch_size, embed_dim, generator=generator, device=device), dim=-1)

    def images() -> Tensor:
        return torch.rand(batch_size, 3, size, size, generator=generator, device=device) * 2 - 1

    if kind == "prior":
        return {"image_embed": image_embed(), "text": make_text_encoding(batch_size, embed_dim, length, width, generator)}
    if kind == "decoder":
        batch = {"image": images(), "image_embed": image_embed()}
        if declared.text_width is not None:
            batch["text"] = make_text_encoding(batch_size, embed_dim, length, width, generator)
        return batch
    if kind == "upsampler":
        return {"image": images()}
    raise ValueError(f"no standard training batch for a {kind!r}; pass batch= yourself")


def _timesteps(schedule: NoiseSchedule, batch: int, device: torch.device) -> Tensor:
    """Timesteps spread over the whole schedule, noisiest last."""
    last = schedule.num_train_timesteps - 1
    return torch.linspace(0, last, batch).round().long().to(device)


def _diffusion_inputs(model: Any, generator: torch.Generator) -> tuple[Tensor, Tensor, Any]:
    """``(x_t, t, cond)`` at the model's declared sizes, batch 3."""
    declared, batch = model.declared, 3
    embed_dim, length, width, size = _sizes(declared)
    device = model.device
    if isinstance(model, Prior):
        x_t = torch.randn(batch, embed_dim, generator=generator)
        cond: Any = PriorCondition.from_text(make_text_encoding(batch, embed_dim, length, width, generator))
    elif isinstance(model, Upsampler):
        channels = getattr(model, "in_channels", 3)
        x_t = torch.randn(batch, channels, size, size, generator=generator)
        low = declared.input_size or max(size // 2, 1)
        cond = UpsamplerCondition(torch.rand(batch, channels, low, low, generator=generator) * 2 - 1)
    else:
        channels = getattr(model, "in_channels", 3)
        x_t = torch.randn(batch, channels, size, size, generator=generator)
        image_embed = torch.nn.functional.normalize(torch.randn(batch, embed_dim, generator=generator), dim=-1)
        text = make_text_encoding(batch, embed_dim, length, width, generator) if declared.text_width is not None else None
        cond = DecoderCondition.build(image_embed, text)
        cond = map_tensors(cond, lambda tensor: tensor.to(device))
        with torch.no_grad():
            cond = model.prepare_condition(cond, generator)  # what the pipeline draws before x_T
    return x_t.to(device), _timesteps(model.schedule, batch, device), map_tensors(cond, lambda tensor: tensor.to(device))
