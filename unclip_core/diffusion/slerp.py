"""Spherical interpolation of CLIP embeddings: unCLIP's interpolations and text diffs (§3.2–3.3).

CLIP embeddings live on the unit sphere, so moving between two of them along a straight
line would pass through shorter vectors the decoder never saw in training; slerp moves
along the great circle instead and keeps unit norm all the way.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from unclip_core.errors import InputError

_PARALLEL = 1e-6
"""Below this sin(Ω) the two directions are treated as equal and slerp falls back to lerp."""


def _as_weights(theta: Tensor | float, like: Tensor) -> Tensor:
    """θ as a tensor broadcasting over the vectors' last axis: scalar stays, ``[B]`` → ``[B, 1]``."""
    theta = torch.as_tensor(theta, device=like.device, dtype=like.dtype)
    return theta.unsqueeze(-1) if theta.ndim > 0 else theta


def slerp(a: Tensor, b: Tensor, theta: Tensor | float) -> Tensor:
    """Spherical interpolation from ``a`` (θ = 0) to ``b`` (θ = 1) along the last axis.

    ``a``, ``b``: ``[..., D]`` (typically ``[B, D]``); ``theta``: a scalar or ``[B]``.
    The angle Ω is measured between the directions of ``a`` and ``b``; the result is
    ``sin((1−θ)Ω)/sin Ω · a + sin(θΩ)/sin Ω · b``, so for unit inputs it stays unit-norm.
    Where ``a`` and ``b`` (nearly) coincide the weights tend to ``1−θ`` and ``θ``, which is
    used directly (no division by ~0). Antipodal inputs have no unique great circle.
    """
    out_dtype = a.dtype
    work = torch.promote_types(a.dtype, torch.float32)  # the arccos needs more than half precision
    a, b = a.to(work), b.to(work)
    t = _as_weights(theta, a)
    cos_omega = (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos_omega)
    sin_omega = torch.sin(omega)
    parallel = sin_omega < _PARALLEL
    safe_sin = torch.where(parallel, torch.ones_like(sin_omega), sin_omega)
    weight_a = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / safe_sin)
    weight_b = torch.where(parallel, t * torch.ones_like(omega), torch.sin(t * omega) / safe_sin)
    return (weight_a * a + weight_b * b).to(out_dtype)


def text_diff_direction(z_t0: Tensor, z_t1: Tensor) -> Tensor:
    """The unit "text diff" z_d = normalize(z_t1 − z_t0) that turns caption 0's meaning into caption 1's."""
    diff = z_t1 - z_t0
    norm = diff.norm(dim=-1, keepdim=True)
    if bool((norm <= 1e-8).any()):
        raise InputError("text diff: the two captions have the same embedding, so their difference has no direction")
    return diff / norm


def text_diff(z_i: Tensor, z_d: Tensor, theta: Tensor | float) -> Tensor:
    """Image embedding edited by a text diff: ``slerp(z_i, z_d, θ)`` (unCLIP uses θ ∈ [0, 0.5])."""
    return slerp(z_i, z_d, theta)
