"""Converting between what a model predicts (eps, x0 or v) and what samplers need.

With ``x_t = sqrt(ᾱ) x0 + sqrt(1-ᾱ) eps`` and ``v = sqrt(ᾱ) eps - sqrt(1-ᾱ) x0``
(Salimans & Ho 2022), any one prediction together with ``x_t`` gives the other two.
"""
from __future__ import annotations

import torch
from torch import Tensor

from unclip_core.diffusion.schedule import NoiseSchedule


def _broadcast(values: Tensor, like: Tensor) -> Tensor:
    """Shape per-sample scalars ``[B]`` (or a scalar) to broadcast against ``like``."""
    values = values.to(device=like.device, dtype=like.dtype)
    if values.ndim == 0:
        return values
    return values.reshape(values.shape[0], *([1] * (like.ndim - 1)))


def alpha_sigma(schedule: NoiseSchedule, t: Tensor | int, like: Tensor) -> tuple[Tensor, Tensor]:
    """``(sqrt(ᾱ_t), sqrt(1-ᾱ_t))`` broadcast against ``like``."""
    abar = schedule.alpha_bar(torch.as_tensor(t).cpu())
    return _broadcast(abar.sqrt(), like), _broadcast((1 - abar).sqrt(), like)


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Draw x_t from q(x_t | x0) with the given noise."""
    a, s = alpha_sigma(schedule, t, x0)
    return a * x0 + s * noise


def training_target(prediction_type: str, schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """What a model of ``prediction_type`` should output for ``x_t = q_sample(x0, t, noise)``."""
    if prediction_type == "eps":
        return noise
    if prediction_type == "x0":
        return x0
    if prediction_type == "v":
        a, s = alpha_sigma(schedule, t, x0)
        return a * noise - s * x0
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def to_x0_eps(prediction_type: str, schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, out: Tensor) -> tuple[Tensor, Tensor]:
    """``(x0, eps)`` implied by the model output ``out`` at ``(x_t, t)``."""
    a, s = alpha_sigma(schedule, t, x_t)
    if prediction_type == "eps":
        return (x_t - s * out) / a, out
    if prediction_type == "x0":
        return out, (x_t - a * out) / s
    if prediction_type == "v":
        x0 = a * x_t - s * out
        eps = s * x_t + a * out
        return x0, eps
    raise ValueError(f"unknown prediction type {prediction_type!r}")


def eps_from_x0(schedule: NoiseSchedule, x_t: Tensor, t: Tensor | int, x0: Tensor) -> Tensor:
    a, s = alpha_sigma(schedule, t, x_t)
    return (x_t - a * x0) / s
