"""Zero-shot classification and CLIP reranking: the encoder alone, no sampling."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import Tensor

from unclip_core.errors import InputError
from unclip_core.images import load_image
from unclip_core.prompts import check_prompts

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports this module
    from unclip_core.interfaces import StepCallback, TextEncoding
    from unclip_core.pipeline import Pipeline


def classify(pipeline: Pipeline, image: Image.Image | str | Path, labels: Sequence[str]) -> dict[str, float]:
    """Zero-shot classification: softmax over CLIP similarities to each label."""
    labels = check_prompts(labels, what="label", hint="each label is a caption to score the image against")
    if len(labels) < 2:  # a softmax over one label is 100% whatever the image
        raise InputError("give at least two labels to choose between")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:  # the result maps label → probability, so a repeat would hide its share
        raise InputError(f"each label must be given once; repeated: {', '.join(map(repr, repeated))}")
    z_i = pipeline.encode_image([load_image(image)])
    z_t = pipeline.encode_text(labels).embed.float()
    logits = pipeline.encoder.logit_scale.float().to(z_i.device) * z_i @ z_t.T
    probs = logits.softmax(dim=-1)[0]
    return {label: float(p) for label, p in zip(labels, probs)}


def rerank(pipeline: Pipeline, images: Sequence[Image.Image | str | Path], prompt: str) -> list[tuple[int, float]]:
    """``(index, cosine similarity)`` of each image to the prompt, best first (unCLIP's
    CLIP reranking of samples)."""
    check_prompts([prompt])
    if not images:
        raise InputError("no images to rerank")
    z_i = pipeline.encode_image([load_image(image) for image in images])
    z_t = pipeline.encode_text([prompt]).embed.float()
    scores = (z_i @ z_t.T)[:, 0].tolist()
    return sorted(enumerate(scores), key=lambda item: -item[1])


def decode_best_of(
    pipeline: Pipeline, image_embed: Tensor, text: TextEncoding, generator: torch.Generator,
    callback: StepCallback | None = None, negative_image_embed: Tensor | None = None,
) -> Tensor:
    """Base images ``[B, 3, s, s]``, each the best of ``settings.decoder_candidates`` draws
    (``negative_image_embed``: as :meth:`Pipeline.decode` takes it).

    The decoder draws every image that many times (one batch, the candidates of an image
    side by side, from ``generator``); the encoder embeds the draws and, for each image, keeps
    the one most similar to its caption's embedding — the paper's and DALL·E's CLIP
    reranking, done at the decoder's size so the upsamplers run once per kept image. With one
    candidate this is :meth:`Pipeline.decode`, draw for draw."""
    count = pipeline.settings.decoder_candidates
    if count == 1:
        return pipeline.decode(image_embed, text, generator, callback=callback, negative_image_embed=negative_image_embed)
    negative = None if negative_image_embed is None else negative_image_embed.repeat_interleave(count, dim=0)
    drawn = pipeline.decode(image_embed.repeat_interleave(count, dim=0), text.repeat_interleave(count), generator,
                            callback=callback, negative_image_embed=negative)
    similarity = pipeline.encode_image(drawn).view(len(text), count, -1) @ text.embed.float().unsqueeze(-1)
    best = similarity.squeeze(-1).argmax(dim=1)
    return drawn.view(len(text), count, *drawn.shape[1:])[torch.arange(len(text)), best]
