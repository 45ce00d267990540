"""The training objective every diffusion component shares.

``diffusion_loss`` draws a timestep and noise per sample, noises ``x0`` and regresses the
model's prediction onto the target of its parameterisation (eps, x0 or v). With
``learned_range`` variance it adds iDDPM's variational bound term (Nichol & Dhariwal 2021,
"hybrid" loss, λ = 0.001) with the mean held fixed, so the variance head learns without
disturbing the mean.

Conditioning dropout (for classifier-free guidance) is chosen by the caller through the
``drop_*`` flags of ``cond``; :func:`drop_mask` draws them.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from unclip_core.diffusion.parameterization import q_sample, to_x0_eps, training_target
from unclip_core.diffusion import variance as var


def drop_mask(batch: int, probability: float, generator: torch.Generator, device: torch.device | str = "cpu") -> Tensor:
    """``[batch]`` bool, each True with ``probability`` (for conditioning dropout)."""
    if probability <= 0:
        return torch.zeros(batch, dtype=torch.bool, device=device)
    draws = torch.rand(batch, generator=generator, device=generator.device)
    return (draws < probability).to(device)


def sample_timesteps(batch: int, num_train_timesteps: int, generator: torch.Generator) -> Tensor:
    return torch.randint(0, num_train_timesteps, (batch,), generator=generator, device=generator.device)


def diffusion_loss(
    model: Any,
    x0: Tensor,
    cond: Any,
    *,
    generator: torch.Generator,
    vlb_weight: float = 1e-3,
    t: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Mean loss over the batch for a :class:`~unclip_core.interfaces.DiffusionModel`."""
    schedule = model.schedule
    batch = x0.shape[0]
    if t is None:
        t = sample_timesteps(batch, schedule.num_train_timesteps, generator)
    t = t.to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=generator.device, dtype=x0.dtype).to(x0.device)
    x_t = q_sample(schedule, x0, t, noise)
    out = model(x_t, t, cond)
    learned = model.variance_type == "learned_range"
    pred = out[:, : x0.shape[1]] if learned else out
    target = training_target(model.prediction_type, schedule, x0, t, noise)
    loss = (pred.float() - target.float()).pow(2).mean()
    if learned and vlb_weight > 0:
        loss = loss + vlb_weight * _vlb_term(model, x0, x_t, t, pred.detach(), out[:, x0.shape[1]:])
    return loss


def _vlb_term(model: Any, x0: Tensor, x_t: Tensor, t: Tensor, pred: Tensor, var_values: Tensor) -> Tensor:
    """KL(q(x_{t-1}|x_t,x0) || p(x_{t-1}|x_t)) in bits per dim, decoder NLL at t = 0."""
    schedule = model.schedule
    x0_pred, _ = to_x0_eps(model.prediction_type, schedule, x_t, t, pred)
    if model.clip_range is not None:
        x0_pred = x0_pred.clamp(-model.clip_range, model.clip_range)
    t_prev = t - 1
    true_mean = var.posterior_mean(schedule, t, t_prev, x0, x_t)
    true_logvar = var.log_variance(schedule, t, t_prev, "fixed_small", x_t, clip_first_step=True)
    model_mean = var.posterior_mean(schedule, t, t_prev, x0_pred, x_t)
    model_logvar = var.log_variance(
        schedule, t, t_prev, "learned_range", x_t, model_values=var_values, clip_first_step=True
    )
    dims = tuple(range(1, x0.ndim))
    kl = var.normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean(dim=dims) / math.log(2.0)
    nll = -var.discretized_gaussian_log_likelihood(x0, means=model_mean, log_scales=0.5 * model_logvar)
    nll = nll.mean(dim=dims) / math.log(2.0)
    return torch.where(t == 0, nll, kl).mean()
