"""unCLIP's best-of-N for priors: per caption, keep the sample most similar to the caption.

Shared by every prior (diffusion and autoregressive) so ``candidates`` means the same thing
whichever prior a recipe names; a plugin must not import another plugin to get it.
"""
from __future__ import annotations

import torch
from torch import Tensor


def select_best_candidates(candidates: Tensor, text_embed: Tensor, per_caption: int) -> Tensor:
    """Per caption, the candidate with the highest dot product with z_t.

    ``candidates`` is ``[B·N, D]`` with caption ``b``'s candidates in rows ``b·N … b·N+N−1``
    (the order :meth:`TextEncoding.repeat_interleave` gives); returns ``[B, D]``.
    """
    batch = text_embed.shape[0]
    grouped = candidates.reshape(batch, per_caption, candidates.shape[-1])
    scores = torch.einsum("bnd,bd->bn", grouped.float(), text_embed.to(grouped.device).float())
    best = scores.argmax(dim=1)
    return grouped[torch.arange(batch, device=grouped.device), best]
