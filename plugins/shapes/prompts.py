"""Evaluation prompt sets: captions the model has seen the kind of, and compositions it has not.

* ``seen_one``: one-object captions without a held-out pair (15 distinct).
* ``seen_two``: two-object captions without a held-out pair (840 distinct).
* ``heldout``: captions with at least one held-out pair: one-object (3 distinct) and
  two-object (384 distinct), mixed 40/60 like the training data.

Prompts are dealt from shuffled copies of the full list, reshuffled each time it runs out,
so a set larger than the list covers every caption evenly rather than by chance.
"""
from __future__ import annotations

import itertools
from typing import Literal

import numpy as np

from unclip_core.errors import InputError

from .captions import describe_object
from .world import COLORS, HELD_OUT_PAIRS, ONE_OBJECT_PROBABILITY, RELATIONS, SHAPES

PromptGroup = Literal["seen_one", "seen_two", "heldout"]
PROMPT_GROUPS: tuple[str, ...] = ("seen_one", "seen_two", "heldout")

_ALL_PAIRS = tuple(itertools.product(COLORS, SHAPES))


def _one_object(held_out: bool) -> list[str]:
    return [describe_object(*pair) for pair in _ALL_PAIRS if (pair in HELD_OUT_PAIRS) == held_out]


def _two_object(held_out: bool) -> list[str]:
    captions = []
    for first, second in itertools.permutations(_ALL_PAIRS, 2):
        if (first in HELD_OUT_PAIRS or second in HELD_OUT_PAIRS) != held_out:
            continue
        for relation in RELATIONS:
            captions.append(f"{describe_object(*first)} {relation} {describe_object(*second)}")
    return captions


def _deal(captions: list[str], n: int, rng: np.random.Generator) -> list[str]:
    dealt: list[str] = []
    while len(dealt) < n:
        order = rng.permutation(len(captions))
        dealt.extend(captions[i] for i in order[: n - len(dealt)])
    return dealt


def all_prompts(group: PromptGroup) -> list[str]:
    """Every distinct caption of ``group``, in a fixed order."""
    if group == "seen_one":
        return _one_object(held_out=False)
    if group == "seen_two":
        return _two_object(held_out=False)
    if group == "heldout":
        return _one_object(held_out=True) + _two_object(held_out=True)
    raise InputError(f"unknown prompt group {group!r}; expected one of {PROMPT_GROUPS}")


def prompt_set(group: PromptGroup, n: int, seed: int = 0) -> list[str]:
    """``n`` captions of ``group``, the same for the same ``seed``."""
    if group not in PROMPT_GROUPS:
        raise InputError(f"unknown prompt group {group!r}; expected one of {PROMPT_GROUPS}")
    if not isinstance(n, int) or n < 0:
        raise InputError(f"prompt_set needs a non-negative integer n, got {n!r}")
    rng = np.random.default_rng(seed)
    if group != "heldout":
        return _deal(all_prompts(group), n, rng)
    n_one = round(ONE_OBJECT_PROBABILITY * n)
    prompts = _deal(_one_object(held_out=True), n_one, rng) + _deal(_two_object(held_out=True), n - n_one, rng)
    return [prompts[i] for i in rng.permutation(n)]
