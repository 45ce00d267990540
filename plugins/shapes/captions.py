"""The caption grammar of the shapes world: scene → caption, and caption → what it asserts.

Grammar (lower case, single spaces, no final period)::

    caption  := object | object " " relation " " object
    object   := article " " color " " shape
    article  := "an" before a colour starting with a vowel, else "a"
    relation := "to the left of" | "to the right of" | "above" | "below"

Parsing is strict on purpose: a caption the generator could not have written is not a
prompt the checker can score, and saying so early beats a silent zero.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from unclip_core.errors import InputError, shorten

from .world import COLORS, RELATIONS, SHAPES, Scene

_VOWELS = "aeiou"


def article(color: str) -> str:
    """``"an"`` before a colour that starts with a vowel (``an orange``), else ``"a"``."""
    return "an" if color[:1] in _VOWELS else "a"


def describe_object(color: str, shape: str) -> str:
    return f"{article(color)} {color} {shape}"


def caption(scene: Scene) -> str:
    """The one caption the grammar gives ``scene``."""
    first = describe_object(*scene.objects[0].pair)
    if scene.relation is None:
        return first
    second = describe_object(*scene.objects[1].pair)
    return f"{first} {scene.relation} {second}"


@dataclass(frozen=True)
class CaptionSpec:
    """What a caption asserts: its objects as ``(colour, shape)`` in caption order, and the
    relation of the first to the second (``None`` for a one-object caption)."""

    objects: tuple[tuple[str, str], ...]
    relation: str | None


def _alternatives(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(word) for word in words)


_OBJECT = rf"(an?) ({_alternatives(COLORS)}) ({_alternatives(SHAPES)})"
_CAPTION = re.compile(rf"{_OBJECT}(?: ({_alternatives(RELATIONS)}) {_OBJECT})?")


def parse_caption(text: str) -> CaptionSpec:
    """Read a caption back into a :class:`CaptionSpec`; :class:`InputError` when ``text`` is
    outside the grammar (wrong article, unknown word, extra spaces, capitals, a period) or
    names the same colour and shape twice, which no scene of this world shows."""
    if not isinstance(text, str):
        raise InputError(f"a shapes caption must be a string, got {type(text).__name__}")
    match = _CAPTION.fullmatch(text)
    if match is None:
        raise InputError(
            f"caption {shorten(text)!r} is outside the shapes grammar: expected 'a|an <colour> <shape>' "
            f"optionally followed by ' <relation> a|an <colour> <shape>', colours {COLORS}, "
            f"shapes {SHAPES}, relations {RELATIONS}, lower case, single spaces, no period"
        )
    art1, color1, shape1, relation, art2, color2, shape2 = match.groups()
    for art, color in ((art1, color1), (art2, color2)):
        if color is not None and art != article(color):
            raise InputError(f"caption {shorten(text)!r} is outside the shapes grammar: write {article(color)!r} before {color!r}")
    if relation is None:
        return CaptionSpec(((color1, shape1),), None)
    if (color1, shape1) == (color2, shape2):
        raise InputError(
            f"caption {shorten(text)!r} names the same colour and shape twice; the two objects of a shapes scene always differ"
        )
    return CaptionSpec(((color1, shape1), (color2, shape2)), relation)
