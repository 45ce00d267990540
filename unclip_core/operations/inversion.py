"""DDIM inversion (unCLIP §3): an image's bipartite latent (z_i, x_T), and its deterministic decode."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import Tensor

from unclip_core.errors import InputError
from unclip_core.images import load_image, pil_to_tensor, resize_tensor
from unclip_core.interfaces import Sampler

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports this module
    from unclip_core.pipeline import Pipeline


def inversion_sampler(pipeline: Pipeline, eta: float = 0.0) -> Sampler:
    """The recipe's inversion sampler (``decoder.inversion_sampler``) at noise scale ``eta``;
    one the recipe did not name follows the decoder sampler's steps and timestep spacing."""
    sampler = pipeline.inversion_sampler
    if sampler is None:
        raise InputError("this recipe has no inversion sampler and no plugin registers one; set decoder.inversion_sampler")
    fields = type(sampler.config).model_fields
    changes: dict[str, Any] = {"eta": eta} if "eta" in fields else {}
    if pipeline.inversion_follows_decoder:
        for key in ("steps", "timestep_spacing"):
            value = getattr(pipeline.decoder_sampler.config, key, None)
            if value is not None and key in fields:
                changes[key] = value
    if eta and "eta" not in fields:
        raise InputError(f"decoder.inversion_sampler ({type(sampler).__name__}) has no eta setting; variations need one")
    if not changes:
        return sampler
    config = type(sampler.config).model_validate({**sampler.config.model_dump(), **changes})
    return type(sampler)(config)


def image_tensor(pipeline: Pipeline, image: Image.Image | str | Path | Tensor, size: int | None = None) -> Tensor:
    """``[1, 3, s, s]`` in [-1, 1] at the decoder's size (or ``size``)."""
    size = size or pipeline.base_size
    if isinstance(image, Tensor):
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[1] != 3:
            raise InputError(f"image tensor must be [B, 3, H, W], got {tuple(image.shape)}")
        return resize_tensor(image.float(), size).to(pipeline.device)
    return pil_to_tensor([load_image(image)], size).to(pipeline.device)


def invert(pipeline: Pipeline, image: Image.Image | str | Path | Tensor) -> tuple[Tensor, Tensor]:
    """The bipartite latent (z_i, x_T): CLIP image embedding, and the decoder noise that
    DDIM (η = 0, no guidance) maps back to the image (unCLIP §3)."""
    x0 = pipeline.image_tensor(image)
    if isinstance(image, Tensor):
        z_i = pipeline.encode_image(x0)
    else:
        z_i = pipeline.encode_image([load_image(image)])
    x_T = pipeline.stage("decoder").invert(pipeline.decoder_condition(z_i, None), pipeline.to_latents(x0), inversion_sampler(pipeline))
    return z_i, x_T.float()


def decode_latent(pipeline: Pipeline, image_embed: Tensor, x_T: Tensor, *, upsample: bool = True, seed: int = 0) -> Tensor:
    """Deterministic decode of a bipartite latent: DDIM η = 0, no guidance (inverse of
    :meth:`invert`). Upsamplers, if any and asked for, run with ``seed``.

    A latent decodes to the same image wherever it sits in the batch: every row's
    upsampling draws its noise afresh from ``seed``. Otherwise each interpolation frame
    would get different upsampler noise (flicker), and the last frame would not be the
    end image's own reconstruction."""
    base = pipeline.decode(image_embed, None, pipeline.generator(seed), x_T=x_T, sampler=inversion_sampler(pipeline), guidance_scale=1.0)
    if not (upsample and pipeline.upsamplers):
        return base
    return torch.cat([pipeline.upsample(row[None], pipeline.generator(seed)) for row in base])
