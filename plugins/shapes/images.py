"""One door for every image form the shapes tools accept.

Generated images arrive as PIL images (from a pipeline's output), ``uint8`` arrays (from a
file or the renderer) or float tensors in the stack's convention (``[3, H, W]`` in
``[-1, 1]``); the checker and the metrics all read them through :func:`as_rgb_float`.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from PIL import Image

from unclip_core.errors import InputError

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]


def as_rgb_float(image: ImageLike) -> np.ndarray:
    """``image`` as a ``float32`` array ``[H, W, 3]`` in ``[0, 255]``.

    Accepts a PIL image (any mode, converted to RGB), a ``uint8`` array ``[H, W, 3]``, or a
    floating-point tensor ``[3, H, W]`` in ``[-1, 1]`` (clamped to it).
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(
                f"a shapes image array must be uint8 [H, W, 3], got {image.dtype} {list(image.shape)}"
            )
        return image.astype(np.float32)
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point() or image.ndim != 3 or image.shape[0] != 3:
            raise InputError(
                f"a shapes image tensor must be float [3, H, W] in [-1, 1], got {image.dtype} {list(image.shape)}"
            )
        pixels = (image.detach().to("cpu", torch.float32).clamp(-1, 1) + 1) * 127.5
        return pixels.permute(1, 2, 0).numpy()
    raise InputError(
        f"a shapes image must be a PIL image, a uint8 [H, W, 3] array or a float [3, H, W] tensor, "
        f"got {type(image).__name__}"
    )
