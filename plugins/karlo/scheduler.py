"""Karlo's sampler: diffusers' ``UnCLIPScheduler`` as an unclip sampler.

Karlo (and diffusers' ``UnCLIPPipeline``) sample every stage with a modified DDPM step
that differs from the ``ddpm`` sampler in small ways that add up:

* the timesteps: ``round(i · (T − 1) / (steps − 1))`` for ``i = steps − 1 … 0``, so the chain
  always starts at the noisiest step ``T − 1`` and ends at ``0`` (no other spacing does both);
* the arithmetic: everything in float32 — the betas cast to float32, ᾱ their float32
  cumulative product, the step's coefficients float32 scalars combined in the scheduler's
  order — rather than unclip's float64 coefficients (``exact_float32: false`` computes the
  same step with float64 coefficients: not bit-identical to diffusers, but 1 − ᾱ_t keeps its
  digits near t = 0);
* a respaced step uses ``β = 1 − ᾱ_t / ᾱ_prev`` except between neighbouring timesteps, where
  the trained ``β_t`` is used as is;
* ``learned_range`` interpolates between ``log β̃`` (not floored) and ``log β`` of the step,
  ``fixed_small`` is the scheduler's ``fixed_small_log`` (``β̃`` floored at 1e-20);
* noise is added on every step whose ``t`` is above 0, drawn with the model output's shape
  and dtype from the generator — one draw per step, in the same order as diffusers.

With the same generator this sampler consumes the same random numbers as diffusers' scheduler
driven by ``UnCLIPPipeline``, and ``tests/test_karlo_parity.py`` checks that whole pipelines
agree. The variance type and the prediction type come from the model, as for every unclip
sampler (an imported Karlo recipe sets them to what its schedulers say); clipping of the
predicted x0 is this sampler's setting, like the scheduler's ``clip_sample``.
"""
from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from unclip_core.diffusion.noise import gaussian
from unclip_core.diffusion.parameterization import to_x0_eps
from unclip_core.diffusion.sampling import SingleStepSampler, timestep_batch
from unclip_core.errors import UnclipError
from unclip_core.interfaces import ComponentConfig, Denoiser, Sampler

NAME = "unclip-scheduler"


class UnclipSchedulerConfig(ComponentConfig):
    """Settings of the ``unclip-scheduler`` sampler (those of diffusers' ``UnCLIPScheduler``
    that are not the model's)."""

    steps: int = Field(
        25,
        ge=2,
        description="Number of denoising steps, at least 2 (the scheduler's spacing divides by steps − 1); "
        "Karlo uses 25 for the prior and the decoder and 7 for super-resolution.",
    )
    clip_sample: bool = Field(
        True, description="Clamp each predicted x0 to ±clip_sample_range (the scheduler's clip_sample)."
    )
    exact_float32: bool = Field(
        True,
        description="Compute every step in float32 exactly as diffusers' UnCLIPScheduler does, for "
        "bit-level parity with diffusers; false computes the coefficients in float64, which is more "
        "accurate near t = 0 (where 1 − ᾱ_t loses digits in float32).",
    )
    clip_sample_range: float | None = Field(
        None,
        gt=0,
        description="Clamp range of the predicted x0; None: the model's own clip_range (1 for images, "
        "5 for Karlo's prior), and no clamping if it has none.",
    )


def unclip_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """``UnCLIPScheduler.set_timesteps``: ``steps`` timesteps from ``T − 1`` down to ``0``."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if steps > num_train_timesteps:
        raise ValueError(f"steps={steps} exceeds the {num_train_timesteps} timesteps the model was trained with")
    ratio = (num_train_timesteps - 1) / (steps - 1)
    return [int(t) for t in (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64)]


class UnclipSchedulerSampler(SingleStepSampler, Sampler[UnclipSchedulerConfig]):
    """Karlo's modified DDPM (diffusers' UnCLIPScheduler): float32 steps from T − 1 to 0.

    Ancestral sampling exactly as ``UnCLIPPipeline`` drives ``UnCLIPScheduler.step``; the loop,
    img2img's start and the callbacks are the built-in samplers' (:class:`SingleStepSampler`),
    this class gives the timesteps, the step and img2img's noising in float32."""

    name = NAME

    def timestep_pairs(self, denoiser: Denoiser) -> list[tuple[int, int]]:
        """``(t, t_prev)`` of every step, from ``T − 1`` down to ``0`` (whose ``t_prev`` is -1, clean)."""
        try:
            timesteps = unclip_timesteps(denoiser.schedule.num_train_timesteps, self.config.steps)
        except ValueError as exc:
            raise UnclipError(f"sampler {NAME!r}: {exc}") from None
        return list(zip(timesteps, timesteps[1:] + [-1]))

    def noised(self, denoiser: Denoiser, x0: Tensor, t: int, noise: Tensor) -> Tensor:
        """img2img's start, q(x_t | x0), with this sampler's ᾱ (float32 as diffusers, or float64)."""
        alpha_bar = self._alphas(denoiser.schedule)[2][t]
        return (alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise).to(x0.dtype)

    def _alphas(self, schedule) -> tuple[Tensor, Tensor, Tensor]:
        """``(betas, alphas, ᾱ)`` in float32 (as diffusers) or float64."""
        dtype = torch.float32 if self.config.exact_float32 else torch.float64
        betas = schedule.betas.to(dtype)
        alphas = 1.0 - betas
        return betas, alphas, torch.cumprod(alphas, dim=0)

    def step(self, denoiser: Denoiser, x: Tensor, t: int, t_prev: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One step ``t → t_prev`` as ``UnCLIPScheduler.step``: ``(x_prev, predicted x0)``."""
        schedule, variance_type = denoiser.schedule, denoiser.variance_type
        betas, alphas, alphas_cumprod = self._alphas(schedule)
        one = torch.tensor(1.0, dtype=betas.dtype)
        clip = self.config.clip_sample_range if self.config.clip_sample_range is not None else denoiser.clip_range
        channels = x.shape[1]
        out = denoiser(x, timestep_batch(t, x))
        expected = 2 * channels if variance_type == "learned_range" else channels
        if out.shape[1] != expected:
            raise UnclipError(
                f"sampler {NAME!r}: a {variance_type} denoiser must return {expected} channels for a "
                f"{channels}-channel sample, got {out.shape[1]}"
            )
        prediction, variance_values = out[:, :channels].to(x.dtype), out[:, channels:]

        alpha_prod_t = alphas_cumprod[t]
        alpha_prod_t_prev = alphas_cumprod[t_prev] if t_prev >= 0 else one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        if t_prev == t - 1:
            beta, alpha = betas[t], alphas[t]
        else:
            beta = 1 - alpha_prod_t / alpha_prod_t_prev
            alpha = 1 - beta

        if denoiser.prediction_type == "eps":
            x0 = (x - beta_prod_t ** (0.5) * prediction) / alpha_prod_t ** (0.5)
        elif denoiser.prediction_type == "x0":
            x0 = prediction
        else:  # v: not a prediction type UnCLIPScheduler knows; unclip's conversion
            x0, _ = to_x0_eps(denoiser.prediction_type, schedule, x, t, prediction)
        if self.config.clip_sample and clip is not None:
            x0 = torch.clamp(x0, -clip, clip)

        x0_coeff = (alpha_prod_t_prev ** (0.5) * beta) / beta_prod_t
        x_coeff = alpha ** (0.5) * beta_prod_t_prev / beta_prod_t
        x_prev = x0_coeff * x0 + x_coeff * x

        if t > 0:
            noise = gaussian(prediction.shape, generator, prediction.dtype, prediction.device)
            variance = beta_prod_t_prev / beta_prod_t * beta
            if variance_type == "fixed_small":
                std = torch.exp(0.5 * torch.log(torch.clamp(variance, min=1e-20)))
            elif variance_type == "learned_range":
                frac = (variance_values.to(x.dtype) + 1) / 2  # type: ignore[union-attr]
                std = (0.5 * (frac * beta.log() + (1 - frac) * variance.log())).exp()
            elif variance_type == "fixed_large":  # not in UnCLIPScheduler: the step's beta
                std = beta.sqrt()
            else:
                raise UnclipError(f"sampler {NAME!r}: unknown variance type {variance_type!r}")
            x_prev = x_prev + std * noise
        return x_prev, x0
