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
