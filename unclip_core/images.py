"""Images at the edges of the stack: files and PIL in, PNG/GIF out.

Inside the stack images are float tensors ``[B, 3, H, W]`` in ``[-1, 1]``; this module is the
only place that converts. Inputs are checked so a user gets one clear line ("x.txt is not an
image") instead of a PIL traceback; outputs are written atomically and carry their generation
settings in PNG text chunks so they can be reproduced.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from unclip_core.atomic import Writer, atomic_write
from unclip_core.errors import InputError

MAX_PIXELS = 64 * 1024 * 1024
"""Refuse larger inputs: a 64-megapixel image is already far beyond any model input here."""

METADATA_KEY = "unclip"

T = TypeVar("T")


def load_image(source: str | Path | Image.Image) -> Image.Image:
    """An RGB PIL image from a path or a PIL image (grayscale, 16-bit, palette and alpha
    converted; transparent pixels are composited onto white)."""
    if isinstance(source, Image.Image):
        image = source
        name = "image"
    else:
        image = _read_image_file(source)
        name = str(source)
    if image.width * image.height > MAX_PIXELS:
        raise InputError(f"{name} is too large ({image.width}×{image.height} pixels)")
    if image.width < 1 or image.height < 1:
        raise InputError(f"{name} is empty")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit grayscale (PNG): PIL's own conversion clips at 255, turning it all white.
        levels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(levels.round().clip(0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _read_image_file(source: str | Path) -> Image.Image:
    """Decode an image file (see :func:`_decode`)."""

    def pixels(handle: Image.Image) -> Image.Image:
        handle.load()
        return handle.copy()

    return _decode(source, pixels)


def _decode(source: str | Path, read: Callable[[Image.Image], T]) -> T:
    """``read(opened image)``, refusing oversized files from their header before any pixel
    is decoded (PIL's own bomb check is a global setting and only a warning below 2× its
    limit), and turning every way a file can fail to decode into one line naming it."""
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path} is a folder, not an image" if path.is_dir() else f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as handle:
                width, height = handle.size
                if width * height > MAX_PIXELS:
                    raise InputError(
                        f"{path} is too large ({width}×{height} pixels; the limit is {MAX_PIXELS // 2**20} megapixels)"
                    )
                return read(handle)
    except Image.DecompressionBombError:
        raise InputError(f"{path} is too large (over {MAX_PIXELS // 2**20} megapixels)") from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image (no image format PIL knows)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{path} is a truncated or corrupt image ({detail})") from None


def pil_to_tensor(images: Sequence[Image.Image] | Image.Image, size: int) -> torch.Tensor:
    """``[B, 3, size, size]`` in [-1, 1]: centre-cropped to a square, resized with antialiasing."""
    if isinstance(images, Image.Image):
        images = [images]
    out = []
    for image in images:
        image = load_image(image)
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        if side != size:
            image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        out.append(torch.from_numpy(array).permute(2, 0, 1))
    return torch.stack(out)


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """PIL images from ``[B, 3, H, W]`` in [-1, 1] (values outside are clipped)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"expected images shaped [B, 3, H, W], got {tuple(images.shape)}")
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in array]


def resize_tensor(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def make_grid(images: Sequence[Image.Image], columns: int | None = None, padding: int = 2) -> Image.Image:
    """Tile images (all the same size) on a white background."""
    if not images:
        raise InputError("no images to put in a grid")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * w + (columns - 1) * padding, rows * h + (rows - 1) * padding), "white")
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        grid.paste(image, (col * (w + padding), row * (h + padding)))
    return grid


def save_png(image: Image.Image, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a PNG atomically, with ``metadata`` as JSON in the ``unclip`` text chunk."""
    return atomic_write(Path(path), png_writer(image, metadata))


def png_writer(image: Image.Image, metadata: Mapping[str, Any] | None = None) -> Writer:
    """What :func:`save_png` writes, as a writer for :func:`~unclip_core.atomic.atomic_write_all`
    (several files of one command: all or none)."""
    info = PngImagePlugin.PngInfo()
    if metadata:
        info.add_text(METADATA_KEY, json.dumps(metadata, sort_keys=True, default=str))
    return lambda tmp: image.save(tmp, format="PNG", pnginfo=info)


def read_png_metadata(path: str | Path) -> dict[str, Any]:
    """The generation settings a PNG written by :func:`save_png` carries."""
    text = _read_text_chunks(path)
    if METADATA_KEY not in text:
        raise InputError(f"{path} carries no unclip generation settings (was it written by `unclip generate`?)")
    try:
        return json.loads(text[METADATA_KEY])
    except json.JSONDecodeError:
        raise InputError(f"{path}: its unclip settings chunk is not valid JSON") from None


def _read_text_chunks(path: str | Path) -> dict[str, str]:
    def text(image: Image.Image) -> dict[str, str]:
        image.load()  # text chunks after the pixels are read with them
        return dict(getattr(image, "text", None) or image.info)

    return _decode(path, text)


def save_gif(frames: Sequence[Image.Image], path: str | Path, duration_ms: int = 120) -> Path:
    """An animated GIF that plays the trajectory forwards and back."""
    return atomic_write(Path(path), gif_writer(frames, duration_ms))


def gif_writer(frames: Sequence[Image.Image], duration_ms: int = 120) -> Writer:
    """What :func:`save_gif` writes, as a writer (see :func:`png_writer`)."""
    if not frames:
        raise InputError("no frames for the GIF")
    loop = list(frames) + list(frames[-2:0:-1])
    return lambda tmp: loop[0].save(tmp, format="GIF", save_all=True, append_images=loop[1:], duration=duration_ms, loop=0)
