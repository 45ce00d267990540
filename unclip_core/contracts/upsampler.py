"""The upsampler's contract: a diffusion model that really reads its low-resolution image."""
from __future__ import annotations

import torch

from unclip_core.contracts._support import _differ, _generator, _label, _require
from unclip_core.contracts.diffusion_model import check_diffusion_model
from unclip_core.contracts.inputs import _diffusion_inputs
from unclip_core.interfaces import Upsampler, UpsamplerCondition


def check_upsampler(upsampler: Upsampler) -> None:
    """:func:`check_diffusion_model` on an upsampler, which must also actually read its
    low-resolution condition."""
    label = _label(upsampler)
    x_t, t, cond = _diffusion_inputs(upsampler, _generator(9))
    check_diffusion_model(upsampler, x_t, t, cond, drop_flags=())
    with torch.no_grad():
        out = upsampler(x_t, t, cond)
        other = upsampler(x_t, t, UpsamplerCondition(-cond.low_res))
    _require(_differ(out, other), label, "its prediction does not depend on the low-resolution condition")
