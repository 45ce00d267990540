"""DDIM sampling and inversion (Song et al. 2021)."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from unclip_core.diffusion.parameterization import to_x0_eps
from unclip_core.diffusion.sampling import ClipSetting, SingleStepSampler, SpacingSetting, denoised, gaussian, split_output, timestep_batch
from unclip_core.diffusion.variance import alpha_bars, posterior_variance
from unclip_core.interfaces import ComponentConfig, Denoiser, Sampler, StepCallback, StepInfo


class DDIMConfig(ComponentConfig):
    """Settings of the ``ddim`` sampler."""

    steps: int = Field(50, ge=1, description="Number of denoising steps (at most the model's training timesteps).")
    eta: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Noise scale η: 0 is deterministic DDIM (invertible), 1 has DDPM's posterior variance.",
    )
    timestep_spacing: SpacingSetting = "trailing"
    clip_denoised: ClipSetting = True


class DDIMSampler(SingleStepSampler, Sampler[DDIMConfig]):
    """Denoising diffusion implicit models (Song et al. 2021): few steps, deterministic at η=0, invertible.

    The generalised update of Song et al. (2021, eq. 12):
        ``x_prev = √ᾱ_prev x0 + √(1 − ᾱ_prev − σ²) eps + σ z`` with ``σ = η √β̃``.

    A learned variance, if the model has one, is ignored: DDIM fixes its own.
    """

    name = "ddim"

    @torch.no_grad()
    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_prev: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One step ``t → t_prev``: ``(x_prev, predicted x0)``. Public so that a loop that must
        revisit steps (RePaint's resampling) can drive the sampler one step at a time."""
        prediction, _ = split_output(denoiser(x, timestep_batch(t, x)), x, denoiser.variance_type)
        x0, eps = denoised(denoiser, x, t, prediction, self.config.clip_denoised)
        _, abar_prev = alpha_bars(denoiser.schedule, t, t_prev)
        sigma = self.config.eta * float(posterior_variance(denoiser.schedule, t, t_prev).sqrt())
        direction = float((1 - abar_prev - sigma**2).clamp(min=0).sqrt())
        x_prev = float(abar_prev.sqrt()) * x0 + direction * eps
        if sigma > 0:
            x_prev = x_prev + sigma * gaussian(x.shape, denoiser, generator)
        return x_prev, x0

    @torch.no_grad()
    def invert(self, denoiser: Denoiser, x0: Tensor, *, callback: StepCallback | None = None) -> Tensor:
        """DDIM inversion: the η=0 update run from x0 towards noise over the same timesteps,
        reversed (Song et al. 2021 §4.3; Dhariwal & Nichol 2021), so that
        ``sample(denoiser, x0.shape, x_T=invert(denoiser, x0))`` with η=0 gives x0 back.

        Going from ``t_prev`` to ``t`` needs eps at the noisier end, which is not known yet;
        as usual it is taken from the model at the current sample and the target timestep
        ``t`` (exact in the limit of many steps). No clipping: inversion must not lose range.
        """
        schedule = denoiser.schedule
        steps = self.timestep_pairs(denoiser)[::-1]
        x = x0.to(device=denoiser.device, dtype=denoiser.dtype)
        for index, (t, t_prev) in enumerate(steps):
            prediction, _ = split_output(denoiser(x, timestep_batch(t, x)), x, denoiser.variance_type)
            _, eps = to_x0_eps(denoiser.prediction_type, schedule, x, t, prediction)
            abar_t, abar_prev = alpha_bars(schedule, t, t_prev)
            x0_estimate = (x - float((1 - abar_prev).sqrt()) * eps) / float(abar_prev.sqrt())
            x = float(abar_t.sqrt()) * x0_estimate + float((1 - abar_t).sqrt()) * eps
            if callback is not None:
                callback(StepInfo(index, len(steps), t, x, x0_estimate))
        return x
