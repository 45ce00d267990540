"""Read a shapes image back and judge it against its caption (docs/shapes.md, "Reading an image back").

1. Every pixel is labelled with the nearest palette colour (Euclidean RGB), or background
   when it is strictly nearer to the background colour than to every palette colour.
2. Connected regions of one label, under **4-connectivity**, covering at least 1.5% of the
   canvas are objects. 4-connectivity is chosen because anti-aliased edges blend into
   other palette colours (a half-covered red pixel is nearest to orange): those fringe
   pixels form thin lines that touch diagonally, and 4-connectivity keeps them in short
   pieces far below the area threshold instead of joining them into a ring.
3. An object's shape is the nearest of square (fill 1.0), circle (π/4) and triangle (0.5)
   by the fraction of its bounding box it fills; its centre is its bounding-box centre,
   the same centre the scene geometry uses.
4. The verdict, :class:`CheckResult`, separates the ways an image can fail.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .captions import CaptionSpec, parse_caption
from .images import ImageLike, as_rgb_float
from .world import BACKGROUND, COLORS, PALETTE, relation_holds

MIN_OBJECT_FRACTION = 0.015
SHAPE_FILL_RATIOS: dict[str, float] = {"square": 1.0, "circle": math.pi / 4, "triangle": 0.5}

BACKGROUND_LABEL = -1
# Palette first, background last: on an exact tie argmin picks the palette colour, so a
# pixel is background only when strictly nearer to it than to every palette colour.
_REFERENCE_COLORS = np.array([PALETTE[name] for name in COLORS] + [BACKGROUND], dtype=np.float32)
_REFERENCE_SQUARED_NORMS = (_REFERENCE_COLORS**2).sum(axis=1)


@dataclass(frozen=True)
class DetectedObject:
    """One object read from an image; ``cx``, ``cy`` (bounding-box centre) and ``area`` (fraction
    of the canvas) are in unit coordinates; ``fill`` is the fraction of its bounding box it covers."""

    color: str
    shape: str
    cx: float
    cy: float
    area: float
    fill: float

    @property
    def pair(self) -> tuple[str, str]:
        return (self.color, self.shape)


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one image, with partial criteria so failures can be told apart.

    * ``exact``: the detected ``(colour, shape)`` pairs are exactly the caption's (as a
      multiset) and, for two objects, ``relation`` holds.
    * ``color``: the multiset of detected colours equals the caption's.
    * ``shape``: the multiset of detected shapes equals the caption's.
    * ``count``: as many objects as the caption names.
    * ``relation``: ``None`` for a one-object caption; otherwise ``True`` when each caption
      object is detected exactly once by colour *and* shape and the first centre stands in
      the stated relation to the second (:func:`~.world.relation_holds`), else ``False``.

    Right colours on the wrong shapes (attribute binding errors) show as ``color`` and
    ``shape`` true but ``exact`` false.
    """

    exact: bool
    color: bool
    shape: bool
    count: bool
    relation: bool | None
    objects: tuple[DetectedObject, ...]
    caption: str


def label_pixels(rgb: np.ndarray) -> np.ndarray:
    """Label image ``[H, W]`` (int8): palette index per :data:`COLORS`, or ``-1`` for background."""
    # Nearest reference colour by squared distance; |pixel|² is common to all, so dropped.
    scores = _REFERENCE_SQUARED_NORMS - 2.0 * (rgb @ _REFERENCE_COLORS.T)
    labels = scores.argmin(axis=-1).astype(np.int8)
    labels[labels == len(COLORS)] = BACKGROUND_LABEL
    return labels


def connected_regions(labels: np.ndarray) -> np.ndarray:
    """Region id per pixel (4-connectivity, same label, background excluded).

    Vectorised union-find: every edge between equal-label neighbours hooks the larger of its
    two roots onto the smaller, then pointer jumping flattens the forest; repeat until
    every edge joins one root. Ids are the flat index of each region's smallest pixel;
    background pixels keep their own index and must be masked by the caller.
    """
    height, width = labels.shape
    flat = labels.ravel()
    index = np.arange(flat.size).reshape(height, width)
    same_right = (labels[:, :-1] == labels[:, 1:]) & (labels[:, :-1] != BACKGROUND_LABEL)
    same_down = (labels[:-1, :] == labels[1:, :]) & (labels[:-1, :] != BACKGROUND_LABEL)
    u = np.concatenate([index[:, :-1][same_right], index[:-1, :][same_down]])
    v = np.concatenate([index[:, 1:][same_right], index[1:, :][same_down]])
    parent = np.arange(flat.size)
    while u.size:
        root_u, root_v = parent[u], parent[v]
        apart = root_u != root_v
        if not apart.any():
            break
        u, v, root_u, root_v = u[apart], v[apart], root_u[apart], root_v[apart]
        np.minimum.at(parent, np.maximum(root_u, root_v), np.minimum(root_u, root_v))
        while True:
            grandparent = parent[parent]
            if np.array_equal(grandparent, parent):
                break
            parent = grandparent
    return parent.reshape(height, width)


def _shape_from_fill(fill: float) -> str:
    return min(SHAPE_FILL_RATIOS, key=lambda shape: abs(SHAPE_FILL_RATIOS[shape] - fill))


def detect_objects(image: ImageLike) -> tuple[DetectedObject, ...]:
    """The objects in ``image``, in raster order of their first pixel."""
    rgb = as_rgb_float(image)
    height, width = rgb.shape[:2]
    labels = label_pixels(rgb)
    regions = connected_regions(labels).ravel()
    foreground = np.flatnonzero(labels.ravel() != BACKGROUND_LABEL)
    region_of_pixel = regions[foreground]
    sizes = np.bincount(region_of_pixel, minlength=labels.size)
    min_pixels = MIN_OBJECT_FRACTION * height * width
    objects = []
    for region in np.flatnonzero(sizes >= min_pixels):
        pixels = foreground[region_of_pixel == region]
        ys, xs = np.divmod(pixels, width)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        fill = pixels.size / float((x1 - x0) * (y1 - y0))
        objects.append(
            DetectedObject(
                color=COLORS[labels.flat[region]],
                shape=_shape_from_fill(fill),
                cx=float(x0 + x1) / 2 / width,
                cy=float(y0 + y1) / 2 / height,
                area=pixels.size / float(height * width),
                fill=float(fill),
            )
        )
    return tuple(objects)


def _relation_verdict(spec: CaptionSpec, objects: tuple[DetectedObject, ...]) -> bool | None:
    if spec.relation is None:
        return None
    matches = [[obj for obj in objects if obj.pair == pair] for pair in spec.objects]
    if any(len(found) != 1 for found in matches):
        return False
    (first,), (second,) = matches
    return bool(relation_holds((first.cx, first.cy), (second.cx, second.cy), spec.relation))


def check(image: ImageLike, caption: str) -> CheckResult:
    """Judge ``image`` against ``caption`` (see :class:`CheckResult` for each criterion).

    Raises :class:`~unclip_core.errors.InputError` for a caption outside the grammar or an
    image in an unsupported form.
    """
    spec = parse_caption(caption)
    objects = detect_objects(image)
    relation = _relation_verdict(spec, objects)
    pairs_match = Counter(obj.pair for obj in objects) == Counter(spec.objects)
    return CheckResult(
        exact=pairs_match and relation is not False,
        color=Counter(obj.color for obj in objects) == Counter(color for color, _ in spec.objects),
        shape=Counter(obj.shape for obj in objects) == Counter(shape for _, shape in spec.objects),
        count=len(objects) == len(spec.objects),
        relation=relation,
        objects=objects,
        caption=caption,
    )
