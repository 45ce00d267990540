"""Interpolation (unCLIP §3.2): slerp between two images' CLIP embeddings."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from PIL import Image

from unclip_core.diffusion.slerp import slerp
from unclip_core.errors import InputError
from unclip_core.images import load_image, tensor_to_pil

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports this module
    from unclip_core.pipeline import Pipeline


def interpolate(
    pipeline: Pipeline,
    image_a: Image.Image | str | Path,
    image_b: Image.Image | str | Path,
    steps: int = 5,
    x_T: Literal["fixed", "slerp"] = "fixed",
    seed: int = 0,
) -> list[Image.Image]:
    """Slerp between two images' CLIP embeddings (unCLIP §3.2). ``x_T="fixed"`` shares one
    random decoder latent along the path; ``"slerp"`` slerps the two DDIM-inverted latents,
    so the endpoints are the inputs' reconstructions."""
    if steps < 2:
        raise InputError(f"interpolate needs at least 2 steps, got {steps}")
    if x_T not in ("fixed", "slerp"):
        raise InputError(f"x_T must be 'fixed' or 'slerp', got {x_T!r}")
    thetas = torch.linspace(0, 1, steps)
    if x_T == "slerp":
        (z_a, xa), (z_b, xb) = pipeline.invert(image_a), pipeline.invert(image_b)
        flat_a, flat_b = xa.flatten(1), xb.flatten(1)
        latents = [slerp(flat_a, flat_b, float(t)).reshape(xa.shape) for t in thetas]
    else:
        z_a = pipeline.encode_image([load_image(image_a)])
        z_b = pipeline.encode_image([load_image(image_b)])
        noise = torch.randn(
            pipeline.decoder_shape(1),
            generator=pipeline.generator(seed),
            device=pipeline.device,
        )
        latents = [noise] * steps
    embeds = torch.cat([slerp(z_a, z_b, float(t)) for t in thetas])
    return tensor_to_pil(pipeline.decode_latent(embeds, torch.cat(latents), seed=seed))
