"""Images into the pixel tensor an open_clip image tower expects.

Two doors: PIL images go through open_clip's own eval transform (resize the short side,
centre-crop, RGB, normalise), so results match open_clip exactly; tensors in the stack's
``[-1, 1]`` convention go through the same steps written with torch ops, so gradients flow
back to whatever produced the image (CLIP-guided training, reranking with gradients).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from unclip_core import InputError


def is_pil_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
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


def pil_batch(images: Sequence[Any], transform) -> Tensor:
    """Stack PIL images, converted to RGB (so grayscale, palette and RGBA images work),
    through open_clip's eval ``transform``."""
    if len(images) == 0:
        raise InputError("images is empty; give at least one image")
    for index, image in enumerate(images):
        if not is_pil_image(image):
            raise InputError(
                f"image {index} is a {type(image).__name__}, not a PIL image; give PIL images "
                "or one float tensor [B, 3, H, W] in [-1, 1]"
            )
    # Convert before resizing: PIL resizes RGBA with premultiplied alpha, which would tint the
    # colours by a transparency that the RGB image then drops anyway.
    return torch.stack([transform(image.convert("RGB")) for image in images])


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
