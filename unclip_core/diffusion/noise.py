"""The one way a sampler draws its Gaussian noise, and x_T: every sampler, built-in or not,
draws the same numbers from the same generator (so a seed means one image whichever sampler
or device runs it, and parity with diffusers' ``randn_tensor`` holds)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from unclip_core.diffusion.row_generators import RowGenerators
from unclip_core.errors import InputError


def gaussian(shape: Sequence[int], generator: torch.Generator, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """Standard normal noise drawn on the generator's own device (so a CPU generator gives the
    same numbers whatever the model runs on), then moved to ``device``: diffusers' ``randn_tensor``.
    A :class:`~unclip_core.diffusion.row_generators.RowGenerators` (a batch of ``unclip serve``
    requests) draws each request's rows from its own seed."""
    if isinstance(generator, RowGenerators):
        return generator.randn(shape, dtype).to(device)
    return torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=dtype).to(device)


def initial_noise(shape: Sequence[int], denoiser: Any, generator: torch.Generator, x_T: Tensor | None) -> Tensor:
    """x_T: the caller's (checked against ``shape``) or a fresh draw from ``generator``, on the
    denoiser's device and in its dtype."""
    if x_T is None:
        return gaussian(shape, generator, denoiser.dtype, denoiser.device)
    if tuple(x_T.shape) != tuple(shape):
        raise InputError(f"x_T has shape {tuple(x_T.shape)} but the sampler was asked for {tuple(shape)}")
    return x_T.to(device=denoiser.device, dtype=denoiser.dtype)
