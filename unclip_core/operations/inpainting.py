"""Inpainting: repaint a masked region to fit a prompt (a trained inpainting decoder, or RePaint)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from torch import Tensor

from unclip_core.errors import InputError
from unclip_core.images import tensor_to_pil
from unclip_core.inpainting import InpaintRegion, RePaintSampler
from unclip_core.prompts import check_prompts

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports this module
    from unclip_core.pipeline import Pipeline


def inpaint_tensors(
    pipeline: Pipeline,
    image: Image.Image | str | Path | Tensor,
    mask: Image.Image | str | Path | Tensor,
    prompt: str,
    *,
    n: int = 1,
    seed: int = 0,
    resample: int = 1,
) -> Tensor:
    """Repaint the white part of ``mask`` in ``image`` to fit ``prompt``. Returns
    ``[n, 3, H, W]`` in [-1, 1] at the final size, in which the known (black) region is
    the input resized, exactly.

    A decoder that declares ``inpainting`` (trained for it) reads the known image and the
    mask at its size as input channels, and its result's known region is pasted exactly
    before upsampling; any other decoder is run training-free with RePaint (see
    :mod:`unclip_core.inpainting`). Upsampling stages always keep the known region with
    RePaint, and ``resample`` applies to every stage that runs RePaint."""
    if not isinstance(prompt, str):
        raise InputError(f"inpaint takes one prompt (text), got {type(prompt).__name__}")
    check_prompts([prompt])
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    region = InpaintRegion.from_inputs(image, mask)
    trained = bool(pipeline.decoder.declared.inpainting)
    if not trained:
        decoder_sampler = _decoder_repaint(pipeline, region, resample)
    stage_samplers = [
        region.sampler(sampler, int(model.declared.image_size), resample, f"upsamplers.{index}", pipeline.device)
        for index, (model, sampler) in enumerate(pipeline.upsamplers)
    ]
    generator = pipeline.generator(seed)
    text = pipeline.encode_text([prompt] * n)
    image_embed = pipeline.sample_prior(text, generator)
    if trained:
        channels = (region.known(pipeline.base_size), region.repaint_mask(pipeline.base_size).float())
        base = region.paste(pipeline.decode(image_embed, text, generator, inpaint=channels))
    else:
        base = pipeline.decode(image_embed, text, generator, sampler=decoder_sampler)
    return region.paste(pipeline.upsample(base, generator, samplers=stage_samplers).float())


def _decoder_repaint(pipeline: Pipeline, region: InpaintRegion, resample: int) -> RePaintSampler:
    """RePaint for the decoder stage, in pixels or in a latent decoder's latents."""
    if not pipeline.latent:
        return region.sampler(pipeline.decoder_sampler, pipeline.base_size, resample, "decoder", pipeline.device)
    known = pipeline.to_latents(region.known(pipeline.base_size))
    repaint = region.latent_repaint_mask(pipeline.base_size, pipeline.autoencoder.downscale, pipeline.device)
    return RePaintSampler(pipeline.decoder_sampler, known, repaint, resample, stage="decoder")


def inpaint(
    pipeline: Pipeline,
    image: Image.Image | str | Path | Tensor,
    mask: Image.Image | str | Path | Tensor,
    prompt: str,
    *,
    n: int = 1,
    seed: int = 0,
    resample: int = 1,
) -> list[Image.Image]:
    """:meth:`inpaint_tensors` as PIL images: where the mask is black, the pixels are the
    input image's (centre-cropped to a square and resized to the output size) exactly."""
    return tensor_to_pil(pipeline.inpaint_tensors(image, mask, prompt, n=n, seed=seed, resample=resample))
