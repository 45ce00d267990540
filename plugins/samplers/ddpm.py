"""Ancestral DDPM sampling (Ho et al. 2020), optionally over fewer steps than training used."""
from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from unclip_core.diffusion.sampling import ClipSetting, SingleStepSampler, SpacingSetting, denoised, gaussian, split_output, timestep_batch
from unclip_core.diffusion.variance import log_variance, posterior_mean
from unclip_core.interfaces import ComponentConfig, Denoiser, Sampler


class DDPMConfig(ComponentConfig):
    """Settings of the ``ddpm`` sampler."""

    steps: int = Field(100, ge=1, description="Number of denoising steps (at most the model's training timesteps).")
    timestep_spacing: SpacingSetting = "trailing"
    clip_denoised: ClipSetting = True


class DDPMSampler(SingleStepSampler, Sampler[DDPMConfig]):
    """Stochastic ancestral sampling (DDPM, Ho et al. 2020) with respacing (iDDPM).

    Algorithm 2 of Ho et al. (2020) on the respaced chain of Nichol & Dhariwal (2021, §4).

    Each step predicts x0, forms the mean of q(x_{t_prev} | x_t, x0) and adds noise with
    the model's variance (fixed β̃, fixed β, or iDDPM's learned interpolation). The last
    step lands on the clean sample and adds none.
    """

    name = "ddpm"

    @torch.no_grad()
    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_prev: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One ancestral step ``t → t_prev``: ``(x_prev, predicted x0)``. Public so that a loop
        that must revisit steps (RePaint's resampling) can drive the sampler one step at a time."""
        schedule, variance_type = denoiser.schedule, denoiser.variance_type
        prediction, variance_values = split_output(denoiser(x, timestep_batch(t, x)), x, variance_type)
        x0, _ = denoised(denoiser, x, t, prediction, self.config.clip_denoised)
        mean = posterior_mean(schedule, t, t_prev, x0, x)
        if t_prev < 0:
            return mean, x0
        log_var = log_variance(schedule, t, t_prev, variance_type, x, variance_values)
        return mean + torch.exp(0.5 * log_var) * gaussian(x.shape, denoiser, generator), x0
