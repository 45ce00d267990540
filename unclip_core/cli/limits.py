"""The documented limits of the command line's numbers and texts, checked in one place.

Every command's parsed arguments pass through :func:`check_arguments` before its handler runs,
so ``--seed 2**64`` or ``--resample 100000`` is one line naming the flag and its range, for
every command alike, before any model loads. The limits are listed in docs/recipes.md
("Limits"); change both together.
"""
from __future__ import annotations

import argparse
from typing import Any

from unclip_core.errors import InputError

SEED_MAX = 2**63 - 1
"""Seeds are whole numbers 0 … 2**63 − 1. torch's generators take 64-bit seeds; keeping the top
bit free leaves room for ``unclip eval``'s per-batch ``seed + k``."""

COUNT_LIMITS: dict[str, tuple[str, int]] = {
    "n": ("-n", 256),
    "steps": ("--steps", 256),
    "resample": ("--resample", 100),
    "batch_size": ("--batch-size", 4096),
}
"""Most a count-like option may ask for: attribute → (flag, maximum). Far above any useful
value (RePaint uses 10–20 resamplings; a 256-image grid is already 16 × 16), low enough that
a typo cannot start a run that never ends."""

MAX_THETAS = 256
"""Most ``--thetas`` a textdiff may draw (one image each, like ``-n``)."""

MAX_ITEMS = 256
"""Most items a ``mix`` may weigh (a caption each costs a prior run)."""

TEXT_ARGUMENTS: dict[str, str] = {
    "prompt": "the prompt", "from_caption": "the from-caption", "to_caption": "the to-caption", "negative": "--negative",
}
"""Arguments that are text for a model (not file names, which may hold any bytes)."""


def check_seed(seed: Any, where: str = "--seed") -> int:
    """``seed`` if it is a whole number in 0 … SEED_MAX, else one line naming ``where``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise InputError(f"{where} must be a whole number from 0 to 2**63-1 ({SEED_MAX}), got {_short_number(seed)}")
    return seed


def check_count(value: int, flag: str, maximum: int) -> int:
    if value > maximum:
        raise InputError(f"{flag} must be at most {maximum} (see docs/recipes.md, Limits), got {_short_number(value)}")
    return value


def check_text(text: str, what: str) -> str:
    """Refuse text that holds bytes which are not UTF-8 (Python hands them over as lone
    surrogates): a tokenizer, a PNG's metadata or a terminal would fail on them later."""
    if any("\ud800" <= char <= "\udfff" for char in text):
        raise InputError(f"{what} holds bytes that are not UTF-8 text")
    return text


def check_arguments(args: argparse.Namespace) -> None:
    """Every limit above, for whichever of these options the command has."""
    if getattr(args, "seed", None) is not None:
        check_seed(args.seed)
    for attribute, (flag, maximum) in COUNT_LIMITS.items():
        value = getattr(args, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool):
            check_count(value, flag, maximum)
    for attribute, what in TEXT_ARGUMENTS.items():
        value = getattr(args, attribute, None)
        if isinstance(value, str):
            check_text(value, what)
    for index, label in enumerate(getattr(args, "labels", None) or [], start=1):
        check_text(label, f"label {index}")


def _short_number(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:12]}…({len(text)} digits)"
