"""Hard negative captions: minimal edits of a scene's caption that are false for the scene.

CLIP trained only on (image, caption) pairs can match a caption by its bag of words: "a red
circle to the left of a blue square" and "a blue circle to the left of a red square" share
every word, so nothing in the loss asks the text tower to bind each colour to its shape or
to read which object comes first. NegCLIP (Yuksekgonul et al., 2023, "When and why
vision-language models behave like bags-of-words") adds such edited captions to each image's
candidates in the contrastive loss; these are the shapes world's versions:

* two objects: the colours swapped, the shapes swapped, the objects' order swapped under the
  same relation, another relation, one object's colour or shape changed;
* one object: its colour or its shape changed.

Each is false for the scene by construction: the objects are exactly those the caption
names, the relation cones of :func:`~unclip_plugins.shapes.world.relation_holds` do not
overlap, and two objects never share both colour and shape. Negatives that would name a
held-out colour–shape pair are left out, so those pairs stay out of CLIP's training text too.
"""
from __future__ import annotations

import numpy as np

from .captions import describe_object
from .world import COLORS, HELD_OUT_PAIRS, RELATIONS, SHAPES, Scene

Pair = tuple[str, str]


def _caption(objects: tuple[Pair, ...], relation: str | None) -> str:
    first = describe_object(*objects[0])
    return first if relation is None else f"{first} {relation} {describe_object(*objects[1])}"


def _edits(objects: tuple[Pair, ...], relation: str | None) -> list[tuple[tuple[Pair, ...], str | None]]:
    """Every minimal edit of (objects, relation), true or not; filtered by the caller."""
    edits: list[tuple[tuple[Pair, ...], str | None]] = []
    for index, (color, shape) in enumerate(objects):
        for other in COLORS:
            if other != color:
                edits.append((objects[:index] + ((other, shape),) + objects[index + 1 :], relation))
        for other in SHAPES:
            if other != shape:
                edits.append((objects[:index] + ((color, other),) + objects[index + 1 :], relation))
    if relation is not None:
        (c1, s1), (c2, s2) = objects
        edits.append((((c2, s1), (c1, s2)), relation))  # colours swapped
        edits.append((((c1, s2), (c2, s1)), relation))  # shapes swapped
        edits.append(((objects[1], objects[0]), relation))  # order swapped: the relation now reads backwards
        edits.extend((objects, other) for other in RELATIONS if other != relation)
    return edits


def negative_captions(scene: Scene) -> list[str]:
    """Every hard negative of ``scene``'s caption, in a fixed order, without duplicates."""
    objects = scene.pairs
    truth = _caption(objects, scene.relation)
    found: dict[str, None] = {}
    for edited, relation in _edits(objects, scene.relation):
        if any(pair in HELD_OUT_PAIRS for pair in edited):
            continue
        if len(edited) == 2 and edited[0] == edited[1]:
            continue  # two identical objects: no scene of this world shows that
        text = _caption(edited, relation)
        if text != truth:
            found.setdefault(text)
    return list(found)


def draw_negatives(scene: Scene, count: int, rng: np.random.Generator) -> list[str]:
    """``count`` hard negatives of ``scene``: first those with the caption's very words in
    another meaning (swapped colours, shapes or objects — what a bag of words cannot tell
    from the truth), in random order, then random single edits; drawn again (with
    replacement) only when the scene has fewer than ``count``."""
    negatives = negative_captions(scene)
    words = sorted(_caption(scene.pairs, scene.relation).split())
    same = [text for text in negatives if sorted(text.split()) == words]
    edits = [text for text in negatives if sorted(text.split()) != words]
    chosen = [same[i] for i in rng.permutation(len(same))] + [edits[i] for i in rng.permutation(len(edits))]
    chosen = chosen[:count]
    while len(chosen) < count:
        chosen.append(negatives[int(rng.integers(len(negatives)))])
    return chosen
