"""The reverse-step Gaussian p(x_{t_prev} | x_t): its mean and its (log) variance.

A step always goes from a training timestep ``t`` to an earlier one ``t_prev`` — the
previous timestep when every step is visited, further back when a sampler respaces, and
``-1`` (the clean sample, ᾱ = 1) at the end. As in diffusers (and iDDPM's respacing), the
step's own beta is derived from the ᾱ of the two timesteps, ``β = 1 − ᾱ_t / ᾱ_prev``,
so a respaced chain is an exact DDPM with fewer, larger steps.

``t`` and ``t_prev`` may be Python ints (one step for the whole batch, as samplers use) or
per-sample ``[B]`` tensors (as training losses use). Coefficients are computed in float64
and only cast to the sample's dtype at the end.

``normal_kl`` and ``discretized_gaussian_log_likelihood`` are the two terms of iDDPM's
variational bound (Nichol & Dhariwal 2021), used by the hybrid loss of learned-variance models.
"""
from __future__ import annotations

import torch
from torch import Tensor

from unclip_core.diffusion.schedule import NoiseSchedule

VARIANCE_TYPES: tuple[str, ...] = ("fixed_small", "fixed_large", "learned_range")
MIN_VARIANCE = 1e-20
"""Floor on the posterior variance before its log; it is exactly 0 on the final step (as diffusers)."""

Timestep = Tensor | int


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """Cast float64 coefficients to ``like`` and shape ``[B]`` ones to broadcast over it."""
    values = values.to(device=like.device, dtype=like.dtype)
    if values.ndim == 0:
        return values
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))


def alpha_bars(schedule: NoiseSchedule, t: Timestep, t_prev: Timestep) -> tuple[Tensor, Tensor]:
    """``(ᾱ_t, ᾱ_prev)`` in float64, with ᾱ_{-1} = 1."""
    return (
        schedule.alpha_bar(torch.as_tensor(t).cpu()),
        schedule.alpha_bar(torch.as_tensor(t_prev).cpu()),
    )


def step_beta(schedule: NoiseSchedule, t: Timestep, t_prev: Timestep) -> Tensor:
    """β of the (possibly respaced) step, ``1 − ᾱ_t / ᾱ_prev``: the "fixed_large" variance."""
    abar_t, abar_prev = alpha_bars(schedule, t, t_prev)
    return 1 - abar_t / abar_prev


def posterior_variance(schedule: NoiseSchedule, t: Timestep, t_prev: Timestep) -> Tensor:
    """β̃ = (1 − ᾱ_prev) / (1 − ᾱ_t) · β, the variance of q(x_{t_prev} | x_t, x_0) (no floor)."""
    abar_t, abar_prev = alpha_bars(schedule, t, t_prev)
    return (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)


def posterior_mean(schedule: NoiseSchedule, t: Timestep, t_prev: Timestep, x0: Tensor, x_t: Tensor) -> Tensor:
    """Mean of q(x_{t_prev} | x_t, x_0) (DDPM eq. 7), the mean of every ancestral step."""
    abar_t, abar_prev = alpha_bars(schedule, t, t_prev)
    beta = 1 - abar_t / abar_prev
    coef_x0 = abar_prev.sqrt() * beta / (1 - abar_t)
    coef_xt = (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar_t)
    return _per_sample(coef_x0, x_t) * x0 + _per_sample(coef_xt, x_t) * x_t


def log_variance(
    schedule: NoiseSchedule,
    t: Timestep,
    t_prev: Timestep,
    variance_type: str,
    like: Tensor,
    model_values: Tensor | None = None,
    *,
    clip_first_step: bool = False,
) -> Tensor:
    """Log variance of the reverse step ``t → t_prev``, broadcastable against ``like``.

    * ``fixed_small``: log β̃ (the true posterior's; floored at 1e-20 like diffusers);
    * ``fixed_large``: log β (Ho et al. found both work; β is the upper bound);
    * ``learned_range``: ``model_values`` v ∈ [-1, 1] (shaped like the sample) interpolate
      between them in log space, ``(v+1)/2 · log β + (1−v)/2 · log β̃`` (iDDPM eq. 15).

    ``clip_first_step`` follows iDDPM's ``posterior_log_variance_clipped``: where ``t_prev``
    is -1 (β̃ = 0), β̃ — and for ``fixed_large`` β too — is replaced by the β̃ of training
    step 1 → 0, so the variational bound's decoder term has a sane scale. Samplers add no
    noise on that step, so it only matters to losses.
    """
    small = posterior_variance(schedule, t, t_prev)
    large = step_beta(schedule, t, t_prev)
    if clip_first_step:
        last = torch.as_tensor(t_prev).cpu() < 0
        first_posterior = posterior_variance(schedule, 1, 0)
        small = torch.where(last, first_posterior, small)
        if variance_type == "fixed_large":
            large = torch.where(last, first_posterior, large)
    min_log = _per_sample(small.clamp(min=MIN_VARIANCE).log(), like)
    max_log = _per_sample(large.log(), like)
    if variance_type == "fixed_small":
        return min_log
    if variance_type == "fixed_large":
        return max_log
    if variance_type == "learned_range":
        if model_values is None:
            raise ValueError("learned_range variance needs the model's variance values")
        frac = (model_values + 1) / 2
        return frac * max_log + (1 - frac) * min_log
    raise ValueError(f"unknown variance type {variance_type!r}; choose one of {', '.join(VARIANCE_TYPES)}")


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def discretized_gaussian_log_likelihood(x: Tensor, *, means: Tensor, log_scales: Tensor) -> Tensor:
    """Log-probability (nats, elementwise) of 8-bit data ``x`` in [-1, 1] under a Gaussian
    integrated over each pixel's bin of width 2/255 — DDPM's decoder term L_0.

    The edge bins extend to ±∞, so saturated pixels are not penalised for the Gaussian's
    tail. Uses the exact normal CDF (iDDPM uses a tanh approximation to it); probabilities
    are floored at 1e-12 before the log, as iDDPM does.
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = torch.special.ndtr(inv_std * (centered + 1.0 / 255.0))
    cdf_min = torch.special.ndtr(inv_std * (centered - 1.0 / 255.0))
    one_minus_cdf_min = torch.special.ndtr(-inv_std * (centered - 1.0 / 255.0))  # exact in the tail
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_min = one_minus_cdf_min.clamp(min=1e-12).log()
    log_cdf_delta = (cdf_plus - cdf_min).clamp(min=1e-12).log()
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta)
    )


__all__ = [
    "MIN_VARIANCE",
    "VARIANCE_TYPES",
    "alpha_bars",
    "discretized_gaussian_log_likelihood",
    "log_variance",
    "normal_kl",
    "posterior_mean",
    "posterior_variance",
    "step_beta",
]
