"""Classifier-free guidance as a denoiser wrapper, so every sampler gets it for free."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from unclip_core.conditions import concat_conditions


def guide(cond_out: Tensor, uncond_out: Tensor, guidance_scale: float, variance_type: str) -> Tensor:
    """``uncond + s · (cond − uncond)`` on the prediction. With a learned variance the
    second half of the channels is the variance: it is taken from the conditional branch
    unguided, as GLIDE and Karlo do."""
    if variance_type == "learned_range":
        half = cond_out.shape[1] // 2
        pred_c, var_c = cond_out[:, :half], cond_out[:, half:]
        pred_u = uncond_out[:, :half]
        return torch.cat([pred_u + guidance_scale * (pred_c - pred_u), var_c], dim=1)
    return uncond_out + guidance_scale * (cond_out - uncond_out)


class BoundDenoiser:
    """``model(x_t, t, cond)`` with ``cond`` fixed; guided when ``guidance_scale != 1``.

    The conditional and unconditional branches run as one doubled batch: one large matrix
    product is cheaper than two small ones on every backend we measured. The unconditional
    half comes first, as in diffusers' pipelines, so that every row sits where it sits in
    diffusers' batch and the Karlo parity (docs/karlo.md) does not rest on a kernel computing
    a row the same wherever it lies in the batch.
    """

    def __init__(self, model: Any, cond: Any, guidance_scale: float = 1.0):
        self.model = model
        self.cond = cond
        self.guidance_scale = float(guidance_scale)
        self.prediction_type = model.prediction_type
        self.variance_type = model.variance_type
        self.schedule = model.schedule
        self.clip_range = model.clip_range
        self.device = model.device
        self.dtype = model.dtype
        self._doubled = None
        if self.guidance_scale != 1.0:
            self._doubled = concat_conditions(cond.unconditional(), cond)

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=x_t.device).long().expand(x_t.shape[0])
        if self._doubled is None:
            return self.model(x_t, t, self.cond)
        # In x_t's precision: under bf16 autocast the model returns bf16, and the difference of
        # two close predictions times the scale (8 for Karlo's decoder) would carry bf16's
        # rounding of each, multiplied (docs/benchmarks.md, "Choosing a precision").
        out = self.model(torch.cat([x_t, x_t]), torch.cat([t, t]), self._doubled).to(x_t.dtype)
        uncond_out, cond_out = out.chunk(2, dim=0)
        return guide(cond_out, uncond_out, self.guidance_scale, self.variance_type)


def bind_denoiser(model: Any, cond: Any, guidance_scale: float = 1.0) -> BoundDenoiser:
    return BoundDenoiser(model, cond, guidance_scale)
