"""A CLIP image tower's pixels from images in the stack's ``[-1, 1]`` convention, with torch
ops so gradients flow back to whatever produced the image (CLIP-guided training, reranking
with gradients). Shared by every CLIP-style encoder: the steps are torchvision's eval
transform (bicubic resize of the short side with antialiasing, centre crop, normalise).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unclip_core.errors import InputError


def is_pil_image(obj: Any) -> bool:
    return isinstance(obj, Image.Image)


def check_image_tensor(images: Tensor) -> None:
    """An :class:`InputError` unless ``images`` is a float ``[B, 3, H, W]`` batch."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(
            f"images must be a float tensor [B, 3, H, W] in [-1, 1], got shape {list(images.shape)}"
        )
    if not images.is_floating_point():
        raise InputError(
            f"images must be a float tensor in [-1, 1], got dtype {images.dtype} "
            "(convert uint8 with x / 127.5 - 1)"
        )
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise InputError(f"images is empty: shape {list(images.shape)}")


def tensor_batch(images: Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``[-1, 1]`` images to normalised pixels at ``size``: the steps of open_clip's eval
    transform (bicubic resize of the short side with antialiasing, centre crop, normalise)
    as differentiable torch ops."""
    check_image_tensor(images)
    x = (images + 1) / 2
    height, width = x.shape[-2:]
    if (height, width) != (size, size):
        # torchvision's Resize(size) and CenterCrop(size) arithmetic, as open_clip uses them
        short, long = min(height, width), max(height, width)
        long = int(size * long / short)
        resized = (size, long) if height <= width else (long, size)
        x = F.interpolate(x, size=resized, mode="bicubic", antialias=True, align_corners=False)
        top, left = int(round((resized[0] - size) / 2)), int(round((resized[1] - size) / 2))
        x = x[..., top : top + size, left : left + size]
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t
