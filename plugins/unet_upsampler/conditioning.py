"""Preparing the low-resolution condition the upsampler's UNet reads next to the noisy image.

Training and sampling must feed the UNet the same kind of input, so both go through
:func:`upsample_condition` — the resize Karlo's pipeline applies (bicubic, antialiased) —
and training crops the *upsampled* condition, never the low-resolution one, so a crop's
border pixels see the same bicubic neighbourhood they see in a full-size image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def upsample_condition(low_res: Tensor, size: tuple[int, int] | int) -> Tensor:
    """``low_res`` resized to ``size`` (bicubic, antialiased, as diffusers' unCLIP pipeline)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(low_res.shape[-2:]) == size:
        return low_res
    return F.interpolate(low_res, size=size, mode="bicubic", align_corners=False, antialias=True)


def paired_random_crop(
    target: Tensor, condition: Tensor, crop_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """The same random ``crop_size`` square from ``target`` and ``condition`` (both
    ``[B, C, H, W]`` of one spatial size), at an independent position per sample."""
    if target.shape[-2:] != condition.shape[-2:]:
        raise ValueError(f"target {list(target.shape)} and condition {list(condition.shape)} differ in size")
    height, width = target.shape[-2:]
    if crop_size >= min(height, width):
        return target, condition
    batch = target.shape[0]
    tops = torch.randint(0, height - crop_size + 1, (batch,), generator=generator, device=generator.device).tolist()
    lefts = torch.randint(0, width - crop_size + 1, (batch,), generator=generator, device=generator.device).tolist()
    windows = list(zip(tops, lefts))

    def crop(images: Tensor) -> Tensor:
        return torch.stack(
            [image[:, top : top + crop_size, left : left + crop_size] for image, (top, left) in zip(images, windows)]
        )

    return crop(target), crop(condition)
