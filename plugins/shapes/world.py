"""The shapes world's vocabulary, scene model and scene sampler (spec: docs/shapes.md).

Everything a generator, renderer or checker must agree on lives here, once: the palette,
the background, the shapes, the relations, the held-out colour–shape pairs, and the
geometry of one- and two-object scenes in unit coordinates (x to the right, y downward).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from unclip_core.errors import InputError

BACKGROUND: tuple[int, int, int] = (245, 245, 245)

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 60),
    "blue": (30, 70, 220),
    "yellow": (235, 190, 20),
    "purple": (140, 50, 170),
    "orange": (245, 120, 20),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "above", "below")

# Never in a training image or caption, neither alone nor as one of two objects.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("purple", "triangle"), ("orange", "square"), ("green", "circle")}
)

ONE_OBJECT_PROBABILITY = 0.4
SIZE_RANGE = (0.22, 0.34)
ONE_OBJECT_JITTER = 0.1
TWO_OBJECT_OFFSET = 0.22
TWO_OBJECT_JITTER = 0.05

# Unit vector (x, y) pointing from the second object towards the first, per relation.
RELATION_DIRECTIONS: dict[str, tuple[int, int]] = {
    "to the left of": (-1, 0),
    "to the right of": (1, 0),
    "above": (0, -1),
    "below": (0, 1),
}

Split = Literal["train", "all"]
SPLITS: tuple[str, ...] = ("train", "all")


@dataclass(frozen=True)
class ShapeObject:
    """One filled shape: centre ``(cx, cy)`` and bounding-box side ``size``, all in unit coordinates."""

    color: str
    shape: str
    cx: float
    cy: float
    size: float

    def __post_init__(self) -> None:
        if self.color not in PALETTE:
            raise InputError(f"unknown shapes colour {self.color!r}; expected one of {COLORS}")
        if self.shape not in SHAPES:
            raise InputError(f"unknown shape {self.shape!r}; expected one of {SHAPES}")

    @property
    def pair(self) -> tuple[str, str]:
        return (self.color, self.shape)


@dataclass(frozen=True)
class Scene:
    """One or two objects; for two, ``objects[0]`` stands ``relation`` ``objects[1]``."""

    objects: tuple[ShapeObject, ...]
    relation: str | None = None

    def __post_init__(self) -> None:
        if len(self.objects) not in (1, 2):
            raise InputError(f"a scene holds one or two objects, got {len(self.objects)}")
        if len(self.objects) == 1 and self.relation is not None:
            raise InputError(f"a one-object scene has no relation, got {self.relation!r}")
        if len(self.objects) == 2 and self.relation not in RELATIONS:
            raise InputError(f"a two-object scene needs a relation from {RELATIONS}, got {self.relation!r}")

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(obj.pair for obj in self.objects)

    def has_held_out_pair(self) -> bool:
        return any(pair in HELD_OUT_PAIRS for pair in self.pairs)


def relation_holds(first: tuple[float, float], second: tuple[float, float], relation: str) -> bool:
    """Whether centre ``first`` stands ``relation`` centre ``second``.

    Read as: ``first`` lies inside the 90° cone on the named side of ``second``, i.e. the
    displacement along the named direction is positive and larger than the displacement
    across it. Generated scenes always satisfy it by a wide margin (≥ 0.34 along, ≤ 0.1
    across); the cone keeps a diagonal, mostly-vertical layout from counting as "left of".
    """
    if relation not in RELATION_DIRECTIONS:
        raise InputError(f"unknown relation {relation!r}; expected one of {RELATIONS}")
    dir_x, dir_y = RELATION_DIRECTIONS[relation]
    dx, dy = first[0] - second[0], first[1] - second[1]
    along = dx * dir_x + dy * dir_y
    across = abs(dx * dir_y - dy * dir_x)
    return bool(along > across)


def _draw_pairs(rng: np.random.Generator, count: int, split: str) -> list[tuple[str, str]]:
    """Colour–shape pairs, uniform over those allowed: redrawn (only the pairs, so the 40/60
    mixture and the relation stay uniform) when the train split meets a held-out pair or the
    two objects would share both colour and shape."""
    while True:
        pairs = [(COLORS[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))]) for _ in range(count)]
        if split == "train" and any(pair in HELD_OUT_PAIRS for pair in pairs):
            continue
        if len(set(pairs)) < count:
            continue
        return pairs


def sample_scene(rng: np.random.Generator, split: Split = "train") -> Scene:
    """Draw one scene: 40% one object, 60% two objects with a uniform relation.

    ``split="train"`` never yields a held-out colour–shape pair; ``"all"`` may.
    """
    if split not in SPLITS:
        raise InputError(f"unknown shapes split {split!r}; expected one of {SPLITS}")
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"sample_scene needs a numpy.random.Generator, got {type(rng).__name__}")
    if rng.random() < ONE_OBJECT_PROBABILITY:
        return place_objects(_draw_pairs(rng, 1, split), None, rng)
    relation = RELATIONS[rng.integers(len(RELATIONS))]
    return place_objects(_draw_pairs(rng, 2, split), relation, rng)


def place_objects(pairs: list[tuple[str, str]] | tuple[tuple[str, str], ...], relation: str | None,
                  rng: np.random.Generator) -> Scene:
    """A scene of the given colour–shape ``pairs`` (one, or two with ``relation``), placed and
    sized as :func:`sample_scene` places them: e.g. a scene that a given caption describes.
    Draws from ``rng`` in :func:`sample_scene`'s order, so datasets keep their scenes."""
    if len(pairs) == 1:
        (color, shape), = pairs
        cx, cy = 0.5 + rng.uniform(-ONE_OBJECT_JITTER, ONE_OBJECT_JITTER, size=2)
        size = rng.uniform(*SIZE_RANGE)
        return Scene((ShapeObject(color, shape, float(cx), float(cy), float(size)),), None)
    if len(pairs) != 2 or relation not in RELATION_DIRECTIONS:
        raise InputError(f"a scene holds one object, or two with a relation from {RELATIONS}; got {list(pairs)} and {relation!r}")
    dir_x, dir_y = RELATION_DIRECTIONS[relation]
    objects = []
    for (color, shape), sign in zip(pairs, (1, -1)):
        jitter_x, jitter_y = rng.uniform(-TWO_OBJECT_JITTER, TWO_OBJECT_JITTER, size=2)
        cx = 0.5 + sign * TWO_OBJECT_OFFSET * dir_x + jitter_x
        cy = 0.5 + sign * TWO_OBJECT_OFFSET * dir_y + jitter_y
        objects.append(ShapeObject(color, shape, float(cx), float(cy), float(rng.uniform(*SIZE_RANGE))))
    return Scene(tuple(objects), relation)
