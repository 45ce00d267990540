"""What every prior shares: unCLIP's best-of-N, and a diffusion prior's sampling as a
:class:`~unclip_core.stage.Stage` run.

Best-of-N lives here once so ``candidates`` means the same thing whichever prior a recipe
names (a plugin must not import another plugin to get it). A prior trained as a diffusion
model over embeddings derives from :class:`DiffusionPrior` and says only how its sampled
variable becomes an embedding; the autoregressive kind keeps its own sampling behind
:meth:`Prior.sample` and calls :func:`best_of` with it.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Generic

import torch
from torch import Tensor

from unclip_core.errors import InputError, UnclipError
from unclip_core.interfaces import (
    ConfigT,
    DiffusionModel,
    Prior,
    PriorCondition,
    Sampler,
    StepCallback,
    TextEncoding,
    map_tensors,
)
from unclip_core.stage import Stage


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


def best_of(
    prior: Prior, text: TextEncoding, candidates: int, draw: Callable[[PriorCondition], Tensor]
) -> Tensor:
    """``[B, D]``: ``draw`` gets every caption ``candidates`` times in one batch (caption-major,
    on the prior's device) and returns one embedding per row; per caption, the one closest
    to the caption's embedding is kept (unCLIP's best of N by z_i·z_t)."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise InputError(f"{type(prior).__name__}: candidates must be at least 1, got {candidates}")
    text = map_tensors(text, lambda tensor: tensor.to(prior.device))
    embeds = draw(PriorCondition.from_text(text.repeat_interleave(candidates)))
    return select_best_candidates(embeds, text.embed, candidates)


def training_inputs(prior: Prior, batch: dict, name: str, embed_dim: int, dtype: torch.dtype) -> tuple[TextEncoding, Tensor]:
    """A prior's training batch checked and on its device: ``(text, image_embed [B, D])``, or a
    one-line error naming ``name`` and what is missing or mis-shaped."""
    missing = [key for key in ("image_embed", "text") if key not in batch]
    if missing:
        raise InputError(f"{name}: training batch lacks {', '.join(repr(k) for k in missing)}")
    text: TextEncoding = map_tensors(batch["text"], lambda tensor: tensor.to(prior.device))
    image_embed = batch["image_embed"].to(device=prior.device, dtype=dtype)
    if image_embed.ndim != 2 or image_embed.shape != (len(text), embed_dim):
        raise InputError(
            f"{name}: training batch has image_embed {list(image_embed.shape)} for {len(text)} captions; "
            f"expected [{len(text)}, {embed_dim}]"
        )
    return text, image_embed


class DiffusionPrior(Prior[ConfigT], DiffusionModel[ConfigT, PriorCondition], Generic[ConfigT]):
    """A prior that is a diffusion model over (normalised) image embeddings."""

    def check_text(self, text: TextEncoding) -> None:
        """A one-line error unless ``text`` has the sizes this prior reads (override)."""

    @abstractmethod
    def to_embedding(self, x: Tensor) -> Tensor:
        """The sampled variable ``[B, D]`` as CLIP image embeddings."""

    def sample(
        self,
        text: TextEncoding,
        *,
        sampler: Sampler | None,
        generator: torch.Generator,
        guidance_scale: float = 1.0,
        candidates: int = 1,
        callback: StepCallback | None = None,
    ) -> Tensor:
        if sampler is None:
            raise UnclipError(f"{type(self).__name__}: a diffusion prior needs a sampler; give the prior stage one")
        return self.sample_in(Stage("prior", self, sampler, guidance_scale), text, generator, candidates, callback)

    def sample_in(
        self, stage: Stage, text: TextEncoding, generator: torch.Generator, candidates: int = 1,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """:meth:`sample` run by ``stage`` (the pipeline's, with its precision and progress)."""
        self.check_text(text)

        def draw(cond: PriorCondition) -> Tensor:
            shape = (len(cond.drop_text), int(self.declared.embed_dim or cond.text_embed.shape[-1]))
            return self.to_embedding(stage.sample(cond, shape, generator, callback=callback))

        return best_of(self, text, candidates, draw)
