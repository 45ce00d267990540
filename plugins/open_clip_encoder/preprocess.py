"""Images into the pixel tensor an open_clip image tower expects.

Two doors: PIL images go through open_clip's own eval transform (resize the short side,
centre-crop, RGB, normalise), so results match open_clip exactly; tensors in the stack's
``[-1, 1]`` convention go through the same steps written with torch ops
(:mod:`unclip_core.clip_pixels`, shared with other CLIP encoders).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from unclip_core import InputError
from unclip_core.clip_pixels import check_image_tensor, is_pil_image, tensor_batch

__all__ = ["check_image_tensor", "is_pil_image", "pil_batch", "tensor_batch"]


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
