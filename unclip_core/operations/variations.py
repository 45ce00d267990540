"""Variations (unCLIP §3.1): images that keep an input's CLIP image embedding."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from unclip_core.errors import InputError
from unclip_core.images import load_image, tensor_to_pil
from unclip_core.operations.inversion import inversion_sampler

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports this module
    from unclip_core.pipeline import Pipeline


def variations(
    pipeline: Pipeline, image: Image.Image | str | Path, n: int = 4, seed: int = 0, eta: float = 1.0
) -> list[Image.Image]:
    """Images that keep the input's CLIP image embedding: DDIM with η > 0 from that embedding
    (unCLIP §3.1), caption unknown so the decoder's text input is dropped."""
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    if not 0 <= eta <= 1:  # also refuses nan
        raise InputError(f"eta must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {eta}")
    generator = pipeline.generator(seed)
    image_embed = pipeline.encode_image([load_image(image)]).repeat(n, 1)
    base = pipeline.decode(image_embed, None, generator, sampler=inversion_sampler(pipeline, eta))
    return tensor_to_pil(pipeline.upsample(base, generator))
