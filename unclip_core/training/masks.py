"""Repaint masks for training an inpainting decoder: rectangles, brush strokes, whole images.

GLIDE fine-tunes its inpainting model by "randomly erasing sections of training examples";
two shapes of erasure cover what users paint: axis-aligned **rectangles** (a box around an
object, the shapes benchmark's masks) and free-form **brush strokes** (thick polylines, as in
Yu et al. 2019's free-form masks). A fixed share of masks is the **whole image**: then
nothing is known and the decoder learns plain generation from the same weights, which
``generate``, variations and training previews still ask of it.

Every draw comes from the ``torch.Generator`` the caller passes — the training loop's own,
whose state is checkpointed — so masks are a pure function of that state and a resumed run
draws exactly the masks the uninterrupted run would. Geometry is in unit coordinates (pixel
centres at ``(i + 0.5) / size``), so the same draws give the same masks at any size.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

WHOLE_IMAGE_PROBABILITY = 0.25
"""Share of all-repaint masks (Stable Diffusion's inpainting fine-tune also keeps a quarter)."""
RECTANGLE_PROBABILITY = 0.375
"""Share of rectangles; the rest (0.375) are brush strokes."""
RECTANGLE_SIDE = (0.1, 0.7)
"""Range of a rectangle's width and height, as a fraction of the image side."""
STROKES = (1, 3)
"""Brush strokes per mask, inclusive."""
STROKE_SEGMENTS = (1, 4)
"""Straight segments per stroke, inclusive."""
SEGMENT_LENGTH = (0.1, 0.35)
STROKE_WIDTH = (0.06, 0.16)


def _uniform(generator: torch.Generator, low: float, high: float, count: int = 1) -> Tensor:
    return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)


def _integer(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform on ``low..high`` inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _centres(size: int) -> tuple[Tensor, Tensor]:
    """``(x [1, size], y [size, 1])`` pixel centres in unit coordinates."""
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    return centres[None, :], centres[:, None]


def rectangle_mask(size: int, generator: torch.Generator) -> Tensor:
    """``[size, size]`` bool: one axis-aligned rectangle, sides in :data:`RECTANGLE_SIDE`,
    placed uniformly wholly inside the image."""
    width, height = _uniform(generator, *RECTANGLE_SIDE, count=2).tolist()
    left, top = float(_uniform(generator, 0.0, 1.0 - width)), float(_uniform(generator, 0.0, 1.0 - height))
    x, y = _centres(size)
    return (x >= left) & (x < left + width) & (y >= top) & (y < top + height)


def _segment_distance(x: Tensor, y: Tensor, start: Tensor, end: Tensor) -> Tensor:
    """Distance of every pixel centre to the segment ``start``–``end`` (unit coordinates)."""
    direction = end - start
    length2 = float(direction.pow(2).sum())
    dx, dy = x - start[0], y - start[1]
    along = ((dx * direction[0] + dy * direction[1]) / max(length2, 1e-12)).clamp(0, 1)
    return torch.hypot(dx - along * direction[0], dy - along * direction[1])


def brush_mask(size: int, generator: torch.Generator) -> Tensor:
    """``[size, size]`` bool: a few thick polylines (a random walk of straight segments of
    random heading, kept on the canvas), each with its own brush width."""
    x, y = _centres(size)
    mask = torch.zeros(size, size, dtype=torch.bool)
    for _ in range(_integer(generator, *STROKES)):
        radius = float(_uniform(generator, *STROKE_WIDTH)) / 2
        point = _uniform(generator, 0.0, 1.0, count=2)
        for _ in range(_integer(generator, *STROKE_SEGMENTS)):
            angle = float(_uniform(generator, 0.0, 2 * math.pi))
            length = float(_uniform(generator, *SEGMENT_LENGTH))
            step = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64) * length
            end = (point + step).clamp(0.0, 1.0)
            mask |= _segment_distance(x, y, point, end) <= radius
            point = end
    return mask


def random_masks(count: int, size: int, generator: torch.Generator) -> Tensor:
    """``[count, 1, size, size]`` float32 repaint masks (1 = repaint): per mask, the whole
    image with :data:`WHOLE_IMAGE_PROBABILITY`, else a rectangle or brush strokes."""
    masks = torch.empty(count, 1, size, size)
    for index in range(count):
        kind = float(torch.rand(1, generator=generator, dtype=torch.float64))
        if kind < WHOLE_IMAGE_PROBABILITY:
            masks[index, 0] = 1.0
        elif kind < WHOLE_IMAGE_PROBABILITY + RECTANGLE_PROBABILITY:
            masks[index, 0] = rectangle_mask(size, generator).float()
        else:
            masks[index, 0] = brush_mask(size, generator).float()
    return masks
