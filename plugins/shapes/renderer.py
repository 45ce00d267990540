"""Rasterise a scene at any resolution, anti-aliased by exact area coverage.

Each pixel gets the fraction of its area the shape covers, and that fraction blends the
shape's colour over the canvas (box-filter anti-aliasing, what drawing at high resolution
and box-downsampling converges to). Each pixel row is cut into ``subrows`` horizontal
bands; in a band the shape is an interval in x (half-width taken at the band's midpoint,
the band clipped to the shape's vertical extent), and its overlap with every pixel column
is computed exactly. Squares and triangles come out exact (their width is linear in y, so
the midpoint is exact); circles are within 0.1% of their area at 32 px. All geometry stays
in unit coordinates, so 32, 64 or 256 pixels show the same scene without half-pixel
conventions of a raster library.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from unclip_core.errors import InputError

from .world import BACKGROUND, PALETTE, Scene, ShapeObject

DEFAULT_SUBROWS = 8


def _half_widths(obj: ShapeObject, dy: np.ndarray) -> np.ndarray:
    """Half-width of ``obj`` at vertical offsets ``dy`` from its centre (``|dy| ≤ size/2``)."""
    half = obj.size / 2
    if obj.shape == "square":
        return np.full_like(dy, half)
    if obj.shape == "circle":
        return np.sqrt(half * half - dy * dy)
    # Triangle, apex up: apex (cx, cy - s/2), base (cx ± s/2, cy + s/2); the half-width grows
    # from 0 at the apex to s/2 at the base over a height of s.
    return (dy + half) / 2


def _coverage(obj: ShapeObject, size: int, subrows: int) -> tuple[np.ndarray, slice, slice] | None:
    """Covered fraction of each pixel of ``obj``'s bounding box, or ``None`` off canvas."""
    half = obj.size / 2
    x0 = max(0, math.floor((obj.cx - half) * size))
    x1 = min(size, math.ceil((obj.cx + half) * size))
    y0 = max(0, math.floor((obj.cy - half) * size))
    y1 = min(size, math.ceil((obj.cy + half) * size))
    if x1 <= x0 or y1 <= y0:
        return None
    bands = np.arange(y0 * subrows, y1 * subrows + 1) / (size * subrows)
    top = np.maximum(bands[:-1], obj.cy - half)
    bottom = np.minimum(bands[1:], obj.cy + half)
    band_fraction = np.clip((bottom - top) * size * subrows, 0.0, 1.0)
    dy = np.clip((top + bottom) / 2 - obj.cy, -half, half)
    half_width = _half_widths(obj, dy)
    left = ((obj.cx - half_width) * size)[:, None]
    right = ((obj.cx + half_width) * size)[:, None]
    columns = np.arange(x0, x1)[None, :]
    overlap = np.clip(np.minimum(right, columns + 1) - np.maximum(left, columns), 0.0, 1.0)
    overlap *= band_fraction[:, None]
    coverage = overlap.reshape(y1 - y0, subrows, x1 - x0).mean(axis=1)
    return coverage.astype(np.float32), slice(y0, y1), slice(x0, x1)


def render_array(scene: Scene, size: int = 64, subrows: int = DEFAULT_SUBROWS) -> np.ndarray:
    """``scene`` as a ``uint8`` array ``[size, size, 3]``."""
    for name, value in (("size", size), ("subrows", subrows)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"render {name} must be a positive integer, got {value!r}")
    size, subrows = int(size), int(subrows)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[:] = BACKGROUND
    for obj in scene.objects:
        covered = _coverage(obj, size, subrows)
        if covered is None:
            continue
        coverage, rows, cols = covered
        region = canvas[rows, cols]
        region += coverage[..., None] * (np.asarray(PALETTE[obj.color], dtype=np.float32) - region)
    return np.rint(canvas).astype(np.uint8)


def render(scene: Scene, size: int = 64, subrows: int = DEFAULT_SUBROWS) -> Image.Image:
    """``scene`` as an RGB :class:`PIL.Image.Image` of ``size`` × ``size`` pixels."""
    return Image.fromarray(render_array(scene, size, subrows))
