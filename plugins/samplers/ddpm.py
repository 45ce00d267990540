"""Ancestral DDPM sampling (Ho et al. 2020), optionally over fewer steps than training used."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import Field
from torch import Tensor

from unclip_core.diffusion.variance import log_variance, posterior_mean
from unclip_core.interfaces import ComponentConfig, Denoiser, Sampler, StepCallback, StepInfo

from ._common import ClipSetting, SpacingSetting, denoised, gaussian, initial_noise, split_output, step_pairs, timestep_batch


class DDPMConfig(ComponentConfig):
    """Settings of the ``ddpm`` sampler."""

    steps: int = Field(100, ge=1, description="Number of denoising steps (at most the model's training timesteps).")
    timestep_spacing: SpacingSetting = "trailing"
    clip_denoised: ClipSetting = True


class DDPMSampler(Sampler[DDPMConfig]):
    """Stochastic ancestral sampling (DDPM, Ho et al. 2020) with respacing (iDDPM)."""

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
        """Algorithm 2 of Ho et al. (2020) on the respaced chain of Nichol & Dhariwal (2021, §4).

        Each step predicts x0, forms the mean of q(x_{t_prev} | x_t, x0) and adds noise with
        the model's variance (fixed β̃, fixed β, or iDDPM's learned interpolation). The last
        step lands on the clean sample and adds none.
        """
        schedule, variance_type = denoiser.schedule, denoiser.variance_type
        steps = step_pairs(denoiser, self.config.steps, self.config.timestep_spacing, "ddpm")
        x = initial_noise(shape, denoiser, generator, x_T)
        for index, (t, t_prev) in enumerate(steps):
            prediction, variance_values = split_output(denoiser(x, timestep_batch(t, x)), x, variance_type)
            x0, _ = denoised(denoiser, x, t, prediction, self.config.clip_denoised)
            mean = posterior_mean(schedule, t, t_prev, x0, x)
            if t_prev >= 0:
                log_var = log_variance(schedule, t, t_prev, variance_type, x, variance_values)
                x = mean + torch.exp(0.5 * log_var) * gaussian(x.shape, denoiser, generator)
            else:
                x = mean
            if callback is not None:
                callback(StepInfo(index, len(steps), t, x, x0))
        return x
