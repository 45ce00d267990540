"""Prompts as a pipeline takes them: text, or a list of texts, none empty."""
from __future__ import annotations

from collections.abc import Sequence

from unclip_core.errors import InputError


def check_prompts(
    prompts: str | Sequence[str], what: str = "prompt", names: Sequence[str] | None = None, hint: str = ""
) -> list[str]:
    """The prompts as a list, or a one-line error naming the one that is not text or is
    empty: ``what`` and its index (``label 1``), or ``names[index]`` where given."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, Sequence):  # None, a number, a set: nothing with an order
        raise InputError(f"prompts must be text or a list of texts, got {type(prompts).__name__}")
    prompts = list(prompts)
    if not prompts:
        raise InputError("no prompt given")
    for index, prompt in enumerate(prompts):
        name = names[index] if names is not None else f"{what} {index}"
        if not isinstance(prompt, str):
            raise InputError(f"{name} is {type(prompt).__name__}, not text")
        if not prompt.strip():
            raise InputError(f"{name} is empty; {hint or 'describe the image to generate'}")
    return prompts


def check_negative_prompts(negative: str | Sequence[str] | None, count: int) -> list[str] | None:
    """Negative prompts, one per prompt (a single text serves all ``count``), or None. Unlike
    a prompt, a negative prompt may be empty: ``""`` is the usual unconditional caption."""
    if negative is None:
        return None
    if isinstance(negative, str):
        return [negative] * count
    if not isinstance(negative, Sequence):
        raise InputError(f"negative_prompt must be text or a list of texts, got {type(negative).__name__}")
    negative = list(negative)
    if len(negative) != count:
        raise InputError(f"{len(negative)} negative prompts for {count} prompts; give one per prompt (or one text for all)")
    for index, text in enumerate(negative):
        if not isinstance(text, str):
            raise InputError(f"negative prompt {index} is {type(text).__name__}, not text")
    return negative
