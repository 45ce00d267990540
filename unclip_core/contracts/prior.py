"""The prior's contract: finite embeddings of the right size, and best-of-N that really picks the best."""
from __future__ import annotations

import torch
from torch import Tensor

from unclip_core.contracts._support import _close, _generator, _label, _require, _sampler_for, _sizes, _to
from unclip_core.contracts.diffusion_model import check_diffusion_model
from unclip_core.contracts.inputs import _timesteps, make_text_encoding
from unclip_core.interfaces import DiffusionModel, Prior, PriorCondition, Sampler


def check_prior(prior: Prior, *, sampler: Sampler | None = None, captions: int = 32, candidates: int = 8) -> None:
    """``sample`` gives finite ``[B, D]`` embeddings, for any ``candidates``; more candidates
    bring the embeddings closer to their captions (unCLIP's best of N by z_i·z_t) — or, for a
    prior whose samples do not depend on the seed, change nothing. A prior that is also a
    :class:`DiffusionModel` passes :func:`check_diffusion_model` (``drop_text``)."""
    label = _label(prior)
    embed_dim, length, width, _ = _sizes(prior.declared)
    sampler = _sampler_for(prior, sampler)
    text = _to(make_text_encoding(captions, embed_dim, length, width, _generator(1000)), prior)

    def sample(seed: int, n: int) -> Tensor:
        with torch.no_grad():
            return prior.sample(text, sampler=sampler, generator=_generator(seed), guidance_scale=2.0, candidates=n)

    singles = [sample(seed, 1) for seed in range(4)]
    single, other, best = singles[0], singles[1], sample(0, candidates)
    for what, z in (("candidates=1", single), (f"candidates={candidates}", best)):
        _require(
            tuple(z.shape) == (captions, embed_dim),
            label,
            f"sample with {what} for {captions} captions must give [{captions}, {embed_dim}], got {list(z.shape)}",
        )
        _require(z.is_floating_point() and bool(torch.isfinite(z).all()), label, f"sample with {what} gave non-finite or non-float values")
    if torch.equal(single, other):
        _require(
            _close(best, single),
            label,
            f"its samples do not depend on the seed, so candidates={candidates} must give the same embeddings as candidates=1",
        )
    else:
        def scores(z: Tensor) -> Tensor:
            return (z.float() * text.embed.float()).sum(-1)

        # The best of 8 draws beats a typical one by ~1.4 standard deviations of a caption's
        # scores; averaged over the captions, 0.6 of a deviation separates it from sampling noise.
        single_scores = torch.stack([scores(z) for z in singles])
        typical, spread = float(single_scores.mean()), float(single_scores.std(dim=0).mean())
        gained = float(scores(best).mean()) - typical
        _require(
            gained > 0.6 * spread,
            label,
            f"with candidates={candidates} the embeddings are no closer to their captions than with one "
            f"(mean z_i·z_t up by {gained:.4f}, where a caption's scores spread by {spread:.4f}); sample() "
            "must draw `candidates` embeddings per caption and keep the one with the highest dot product with z_t",
        )
    if isinstance(prior, DiffusionModel):
        generator = _generator(6)
        x_t = torch.randn(3, embed_dim, generator=generator).to(prior.device)
        cond = PriorCondition.from_text(_to(make_text_encoding(3, embed_dim, length, width, generator), prior))
        check_diffusion_model(prior, x_t, _timesteps(prior.schedule, 3, prior.device), cond, drop_flags=("drop_text",))
