"""Pieces that sampler loops share (the built-in DDPM, DDIM and DPM-Solver++ loops and Karlo's modified DDPM):
their common settings, the visited steps, noise drawing, splitting a learned-variance output, the (clipped) x0
prediction, and the single-step loop (:class:`SingleStepSampler`). They live in the core so that a sampler in any
plugin can build on them without importing another plugin."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from unclip_core.diffusion import noise
from unclip_core.diffusion.noise import initial_noise  # noqa: F401 - the samplers import it from here
from unclip_core.diffusion.parameterization import eps_from_x0, q_sample, to_x0_eps
from unclip_core.diffusion.spacing import TimestepSpacing, inference_timesteps, solver_timesteps, strength_start
from unclip_core.errors import UnclipError
from unclip_core.interfaces import Denoiser, Sampler, StepCallback, StepInfo

SpacingSetting = Annotated[
    TimestepSpacing,
    Field(
        description=(
            "Which training timesteps to visit (diffusers' names): 'trailing' starts at the noisiest "
            "step, which matters with few steps; 'leading' and 'linspace' match older pipelines."
        )
    ),
]
ClipSetting = Annotated[
    bool,
    Field(description="Clamp each predicted x0 to the model's clip_range (e.g. [-1, 1] for images) when it has one."),
]


def step_pairs(
    denoiser: Denoiser, steps: int, spacing: TimestepSpacing, sampler: str, *, solver: bool = False
) -> list[tuple[int, int]]:
    """``(t, t_prev)`` for every step of the respaced chain, noisiest first; the last ``t_prev``
    is -1 (clean). ``solver`` picks the multistep solvers' spacing (:func:`solver_timesteps`)."""
    spaced = solver_timesteps if solver else inference_timesteps
    try:
        timesteps = spaced(denoiser.schedule.num_train_timesteps, steps, spacing)
    except ValueError as exc:
        raise UnclipError(f"sampler {sampler!r}: {exc}") from None
    return list(zip(timesteps, timesteps[1:] + [-1]))


def gaussian(shape: Sequence[int], denoiser: Denoiser, generator: torch.Generator) -> Tensor:
    """Noise for a step, on the denoiser's device and in its dtype (:mod:`unclip_core.diffusion.noise`)."""
    return noise.gaussian(shape, generator, denoiser.dtype, denoiser.device)


def timestep_batch(t: int, x: Tensor) -> Tensor:
    """The denoiser's timestep argument: ``t`` repeated over the batch as a LongTensor ``[B]``."""
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def split_output(out: Tensor, x: Tensor, variance_type: str) -> tuple[Tensor, Tensor | None]:
    """``(prediction, variance values)``; a learned-range model returns both stacked on channels."""
    channels = x.shape[1]
    if variance_type == "learned_range":
        if out.shape[1] != 2 * channels:
            raise UnclipError(
                f"a learned_range denoiser must return {2 * channels} channels "
                f"(prediction, then variance) for a {channels}-channel sample, got {out.shape[1]}"
            )
        return out[:, :channels], out[:, channels:]
    if out.shape[1] != channels:
        raise UnclipError(f"denoiser returned {out.shape[1]} channels for a {channels}-channel sample")
    return out, None


def denoised(denoiser: Denoiser, x: Tensor, t: int, prediction: Tensor, clip: bool) -> tuple[Tensor, Tensor]:
    """``(x0, eps)`` the prediction implies at ``(x, t)``. With clipping on, x0 is clamped to
    the model's range and eps re-derived from the clamped x0, so the two stay consistent
    (as in iDDPM / guided-diffusion)."""
    x0, eps = to_x0_eps(denoiser.prediction_type, denoiser.schedule, x, t, prediction)
    if clip and denoiser.clip_range is not None:
        x0 = x0.clamp(-denoiser.clip_range, denoiser.clip_range)
        eps = eps_from_x0(denoiser.schedule, x, t, x0)
    return x0, eps


class SingleStepSampler(Sampler):
    """A sampler whose loop is one :meth:`step` per ``(t, t_prev)`` pair, noisiest first:
    the loop, the x_T draw and the callbacks live here once; a subclass gives ``name`` (for
    errors) and :meth:`step`. Both pieces are public so that a loop that must revisit steps
    (RePaint's resampling) can drive the sampler one step at a time."""

    name: str = "sampler"

    @torch.no_grad()
    def sample(
        self,
        denoiser: Denoiser,
        shape: Sequence[int],
        *,
        generator: torch.Generator,
        x_T: Tensor | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        x = initial_noise(shape, denoiser, generator, x_T)
        return self._run(denoiser, x, self.timestep_pairs(denoiser), generator, callback)

    @torch.no_grad()
    def sample_from(
        self, denoiser: Denoiser, x0: Tensor, strength: float, *, generator: torch.Generator,
        callback: StepCallback | None = None,
    ) -> Tensor:
        steps = self.timestep_pairs(denoiser)
        try:
            steps = steps[strength_start(len(steps), strength):]
        except ValueError as exc:
            raise UnclipError(f"sampler {self.name!r}: {exc}") from None
        x0 = x0.to(device=denoiser.device, dtype=denoiser.dtype)
        if not steps:
            return x0
        x = self.noised(denoiser, x0, steps[0][0], gaussian(x0.shape, denoiser, generator))
        return self._run(denoiser, x, steps, generator, callback)

    def noised(self, denoiser: Denoiser, x0: Tensor, t: int, noise: Tensor) -> Tensor:
        """``x0`` noised to training timestep ``t`` with ``noise``: q(x_t | x0), where img2img
        starts. A sampler whose arithmetic differs from the schedule's float64 (Karlo's
        float32 ᾱ) gives its own."""
        return q_sample(denoiser.schedule, x0, torch.tensor(t), noise).to(x0.dtype)

    def _run(self, denoiser: Denoiser, x: Tensor, steps: list[tuple[int, int]], generator: torch.Generator,
             callback: StepCallback | None) -> Tensor:
        for index, (t, t_prev) in enumerate(steps):
            x, x0 = self.step(denoiser, x, t, t_prev, generator=generator)
            if callback is not None:
                callback(StepInfo(index, len(steps), t, x, x0))
        return x

    def timestep_pairs(self, denoiser: Denoiser) -> list[tuple[int, int]]:
        """``(t, t_prev)`` of every step, noisiest first (the last ``t_prev`` is -1, clean)."""
        return step_pairs(denoiser, self.config.steps, self.config.timestep_spacing, self.name)

    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_prev: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One step ``t → t_prev``: ``(x_prev, predicted x0)``."""
        raise NotImplementedError
