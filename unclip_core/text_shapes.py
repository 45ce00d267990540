"""One shape check for a caption's encoding, shared by every component that reads one.

Priors (diffusion and autoregressive alike) take the same ``(embed, tokens, mask)`` triple
from the text encoder; a mismatch there almost always means an encoder and a prior from
different recipes, so the error names both the offending tensor and the settings it is
measured against.
"""
from __future__ import annotations

from torch import Tensor

from unclip_core.errors import InputError


def check_text_shapes(
    component: str, embed: Tensor, tokens: Tensor, mask: Tensor, what: str,
    *, embed_dim: int, context_length: int, text_width: int,
) -> None:
    """Raise a one-line :class:`InputError` unless the triple is ``[B, D]``, ``[B, L, W]``, ``[B, L]``."""
    batch = embed.shape[0]
    expected = {
        "embedding": (tuple(embed.shape), (batch, embed_dim)),
        "tokens": (tuple(tokens.shape), (batch, context_length, text_width)),
        "mask": (tuple(mask.shape), (batch, context_length)),
    }
    for name, (got, want) in expected.items():
        if got != want:
            raise InputError(
                f"{component}: {what} {name} has shape {list(got)}, expected {list(want)} "
                f"(embed_dim={embed_dim}, context_length={context_length}, text_width={text_width})"
            )
