"""Weighted mixes of images and captions (Kandinsky's ``interpolate``): one image embedding,
the weighted sum of each item's — an image's from the encoder, a caption's from the prior —
decoded into an image."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import torch
from PIL import Image
from torch import Tensor

from unclip_core.errors import InputError
from unclip_core.images import load_image, tensor_to_pil

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports this module
    from unclip_core.pipeline import Pipeline

Item = Union[str, Path, Image.Image, Tensor]
"""A caption (``str``), or an image: a path, a PIL image, or ``[1, 3, H, W]`` in [-1, 1]."""


def _check(items: Sequence[Item], weights: Sequence[float]) -> None:
    if isinstance(items, (str, Path)) or not isinstance(items, Sequence) or not items:
        raise InputError("mix needs a list of items (captions or images), at least one")
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) != len(items):
        count = len(weights) if isinstance(weights, Sequence) else "no"
        raise InputError(f"{len(items)} items but {count} weights; give one weight per item")
    for index, weight in enumerate(weights):
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise InputError(f"weight {index} must be a finite number, got {weight!r}")
    for index, item in enumerate(items):
        if isinstance(item, str) and not item.strip():
            raise InputError(f"item {index} is an empty caption")
        if not isinstance(item, (str, Path, Image.Image, Tensor)):
            raise InputError(f"item {index} is {type(item).__name__}; give a caption, an image path, a PIL image or a tensor")


def mix_embedding(pipeline: Pipeline, items: Sequence[Item], weights: Sequence[float], generator: torch.Generator) -> Tensor:
    """``[1, D]``: Σ weightᵢ · embeddingᵢ, captions sampled by the prior in order on ``generator``."""
    _check(items, weights)
    total: Tensor | None = None
    for item, weight in zip(items, weights):
        if isinstance(item, str):
            embed = pipeline.sample_prior(pipeline.encode_text([item]), generator)
        elif isinstance(item, Tensor):
            embed = pipeline.encode_image(item[None] if item.ndim == 3 else item)
        else:
            embed = pipeline.encode_image([load_image(item)])
        part = embed.to(pipeline.device) * float(weight)
        total = part if total is None else total + part
    assert total is not None
    return total


def mix_tensors(
    pipeline: Pipeline, items: Sequence[Item], weights: Sequence[float], seed: int = 0, negative_prompt: str = ""
) -> Tensor:
    """One image ``[1, 3, H, W]`` in [-1, 1] from the weighted sum of the items' image
    embeddings (the caption is unknown, so a caption-reading decoder's is dropped).

    As diffusers' ``KandinskyV22PriorPipeline.interpolate``: for a decoder that declares
    ``negative_image`` the prior then samples ``negative_prompt`` too; its sample is the
    decoder's unconditional image embedding, except for ``""``, where the decoder's null
    one (the zero-image embedding) is read. One generator, seeded once, serves every stage."""
    if not isinstance(negative_prompt, str):
        raise InputError(f"negative_prompt must be text, got {type(negative_prompt).__name__}")
    generator = pipeline.generator(seed)
    image_embed = mix_embedding(pipeline, items, weights, generator)
    negative_embed = None
    if pipeline.decoder.declared.negative_image:
        sampled = pipeline.sample_prior(pipeline.encode_text([negative_prompt]), generator)
        negative_embed = sampled if negative_prompt else None
    elif negative_prompt:
        raise InputError(f"decoder {type(pipeline.decoder).__name__} reads no negative image embedding; mix takes no negative prompt here")
    base = pipeline.decode(image_embed, None, generator, negative_image_embed=negative_embed)
    return pipeline.upsample(base, generator)


def mix(
    pipeline: Pipeline, items: Sequence[Item], weights: Sequence[float], seed: int = 0, negative_prompt: str = ""
) -> list[Image.Image]:
    """:func:`mix_tensors` as a PIL image (a list of one)."""
    return tensor_to_pil(mix_tensors(pipeline, items, weights, seed, negative_prompt))
