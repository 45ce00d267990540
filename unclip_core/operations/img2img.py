"""img2img (SDEdit, as diffusers' img2img pipelines run it): an input image, noised part of
the way along the decoder's chain, denoised towards the prompts' image embeddings."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from torch import Tensor

from unclip_core.errors import InputError
from unclip_core.images import tensor_to_pil
from unclip_core.prompts import check_negative_prompts, check_prompts

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports this module
    from unclip_core.pipeline import Pipeline


def check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength) or not 0 <= strength <= 1:
        raise InputError(f"strength must be a number in [0, 1] (0 keeps the image, 1 redraws it), got {strength!r}")
    return float(strength)


def img2img_tensors(
    pipeline: Pipeline,
    image: Image.Image | str | Path | Tensor,
    prompts: str | Sequence[str],
    strength: float,
    n: int = 1,
    seed: int = 0,
    negative_prompt: str | Sequence[str] | None = None,
) -> Tensor:
    """Images ``[len(prompts)·n, 3, H, W]`` in [-1, 1]: ``image`` (at the decoder's size) in the
    decoder's space — a latent decoder's autoencoder encodes it — noised to the step ``int(steps ·
    strength)`` from the end of the decoder sampler's chain, then denoised conditioned on the
    prompts' image embeddings (the prior runs first, on the same generator, as in diffusers'
    ``KandinskyV22Img2ImgCombinedPipeline``). Strength 0 gives the image back (through the
    autoencoder's round trip), 1 redraws it from noise that still carries a trace of it."""
    prompts = check_prompts(prompts)
    negatives = check_negative_prompts(negative_prompt, len(prompts))
    strength = check_strength(strength)
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    generator = pipeline.generator(seed)
    known = pipeline.image_tensor(image)
    text = pipeline.encode_text(prompts, negatives).repeat_interleave(n)
    image_embed, negative_embed = pipeline.embed_prompts(text, generator)
    base = pipeline.decode(image_embed, text, generator, negative_image_embed=negative_embed, start=(known, strength))
    return pipeline.upsample(base, generator)


def img2img(
    pipeline: Pipeline,
    image: Image.Image | str | Path | Tensor,
    prompts: str | Sequence[str],
    strength: float,
    n: int = 1,
    seed: int = 0,
    negative_prompt: str | Sequence[str] | None = None,
) -> list[Image.Image]:
    """:func:`img2img_tensors` as PIL images."""
    return tensor_to_pil(img2img_tensors(pipeline, image, prompts, strength, n, seed, negative_prompt))
