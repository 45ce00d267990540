"""Captions to token ids and a padding mask, with open_clip's bundled BPE tokenizer.

The tokenizer is open_clip's own ``SimpleTokenizer`` (the vocabulary ships inside the
package), never one fetched from a hub. Token id 0 pads *and* is a real token ("!"), so the
mask is taken from the position of the end-of-text token rather than from ``ids != 0``.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from unclip_core import InputError

_SHOWN_PROMPT_CHARS = 60


@dataclass
class Tokenized:
    ids: Tensor
    """``[B, L]`` long token ids: SOT, the caption, EOT, then zeros."""
    mask: Tensor
    """``[B, L]`` bool, True from SOT to EOT inclusive."""


@functools.lru_cache(maxsize=8)
def _cached_tokenizer(context_length: int, kwargs: tuple[tuple[str, Any], ...]):
    import open_clip.tokenizer  # heavy (seconds): imported only when captions are tokenised

    shared = getattr(open_clip.tokenizer, "_tokenizer", None)
    if not kwargs and isinstance(shared, open_clip.tokenizer.SimpleTokenizer):
        # open_clip builds this default tokenizer when it is imported; building a second one
        # would read and split the 49k BPE merges again (0.15 s of every `unclip generate`).
        # Only its default context length differs, and tokenize() always passes its own.
        return shared
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length, **dict(kwargs))


def bpe_tokenizer(context_length: int, tokenizer_kwargs: dict[str, Any] | None = None):
    """open_clip's BPE tokenizer as ``open_clip.get_tokenizer`` configures it for non-HF models
    (the config's ``tokenizer_kwargs`` such as ``clean``), cached: loading the merges takes a
    noticeable fraction of a second."""
    return _cached_tokenizer(context_length, tuple(sorted((tokenizer_kwargs or {}).items())))


def check_prompts(prompts: Sequence[str] | str) -> list[str]:
    """A list of captions, or an :class:`InputError` naming the offending item."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, Sequence):
        raise InputError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise InputError("prompts is empty; give at least one caption ('' is the unconditional one)")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputError(f"prompt {index} must be a string, got {type(prompt).__name__}: {prompt!r:.60}")
    return list(prompts)


def tokenize(tokenizer, prompts: list[str], context_length: int) -> Tokenized:
    """Tokenise with open_clip's tokenizer, warning for every caption it has to shorten."""
    for prompt in prompts:
        length = len(tokenizer.encode(prompt)) + 2  # + SOT and EOT
        if length > context_length:
            shown = prompt if len(prompt) <= _SHOWN_PROMPT_CHARS else prompt[:_SHOWN_PROMPT_CHARS] + "…"
            warnings.warn(
                f"prompt {shown!r} is {length} tokens long; truncated to the encoder's context of "
                f"{context_length}",
                UserWarning,
                stacklevel=3,
            )
    ids = tokenizer(prompts, context_length=context_length)
    eot_position = (ids == tokenizer.eot_token_id).int().argmax(dim=1, keepdim=True)
    mask = torch.arange(ids.shape[1]).unsqueeze(0) <= eot_position
    return Tokenized(ids, mask)
