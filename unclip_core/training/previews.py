"""Periodic looks at a stage in training: sample grids for image stages, a figure for the rest.

Previews use the EMA weights (what gets exported) and a fixed batch, so successive grids of
one run are comparable. An inpainting decoder's preview repaints the right half of each
image (the same mask every time), so the grid shows whether it continues the known half.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from unclip_core.images import make_grid, resize_tensor, save_png, tensor_to_pil
from unclip_core.interfaces import DecoderCondition, Sampler, UpsamplerCondition
from unclip_core.stage import Stage

PREVIEW_STEPS = 25


@torch.no_grad()
def preview(
    stage: str, model: Any, batch: dict[str, Any], out: Path, step: int, sampler: Sampler | None, seed: int = 0,
    autoencoder: Any = None,
) -> dict[str, float]:
    """Write ``out/samples/step-N.png`` for image stages; return figures for the log.
    ``sampler`` (the recipe's ``output.preview_sampler``) drives the diffusion stages; without
    one they get no preview. A latent decoder's samples are decoded by ``autoencoder``."""
    generator = torch.Generator().manual_seed(seed)
    if stage == "autoencoder":
        model.eval()
        try:
            truth = batch["image"]
            rebuilt = model.decode(model.encode(truth)).clamp(-1, 1)
        finally:
            model.train()
        _grid(out, step, torch.cat([truth, rebuilt]), columns=truth.shape[0])
        return {"preview_mse": float(F.mse_loss(rebuilt, truth))}
    diffusion = stage in ("decoder", "upsampler") or (stage == "prior" and model.declared.needs_sampler is not False)
    if diffusion and sampler is None:
        return {}
    model.eval()
    try:
        if stage == "decoder":
            cond = DecoderCondition.build(batch["image_embed"], batch["text"])
            size = int(model.declared.image_size)
            side = size // autoencoder.downscale if model.declared.latent else size
            shape = (cond.image_embed.shape[0], model.in_channels, side, side)
            truth = batch["image"]
            shown = [truth]
            if model.declared.inpainting:
                cond.inpaint_image = truth
                cond.inpaint_mask = torch.zeros(truth.shape[0], 1, size, size)
                cond.inpaint_mask[..., size // 2 :] = 1.0
                shown.append(truth * (1 - cond.inpaint_mask))
            samples = Stage("decoder", model, sampler, 3.0).sample(cond, shape, generator)
            if model.declared.latent:
                samples = autoencoder.decode(samples)
            samples = samples.clamp(-1, 1)
            _grid(out, step, torch.cat([*shown, samples]), columns=truth.shape[0])
            return {"preview_mse": float(F.mse_loss(samples, truth))}
        if stage == "upsampler":
            truth = batch["image"]
            low = resize_tensor(truth, int(model.declared.input_size))
            shape = truth.shape
            samples = Stage("upsampler", model, sampler).sample(UpsamplerCondition(low), shape, generator).clamp(-1, 1)
            nearest = F.interpolate(low, size=truth.shape[-2:], mode="nearest")
            _grid(out, step, torch.cat([nearest, samples, truth]), columns=truth.shape[0])
            return {"preview_mse": float(F.mse_loss(samples, truth))}
        if stage == "prior":
            sampler = None if model.declared.needs_sampler is False else sampler  # an AR prior samples by itself
            z = model.sample(batch["text"], sampler=sampler, generator=generator, guidance_scale=1.0, candidates=1)
            target = F.normalize(batch["image_embed"].float(), dim=-1)
            return {"preview_cosine": float((F.normalize(z.float(), dim=-1) * target).sum(-1).mean())}
        if stage == "encoder":
            z_i = model.encode_image(batch["image"])
            z_t = model.encode_text(list(batch["caption"])).embed
            hits = (z_i @ z_t.T).argmax(dim=1) == torch.arange(z_i.shape[0])
            return {"preview_retrieval": float(hits.float().mean())}
    finally:
        model.train()
    return {}


def _grid(out: Path, step: int, images: torch.Tensor, columns: int) -> None:
    grid = make_grid(tensor_to_pil(images.float()), columns=columns)
    save_png(grid, out / "samples" / f"step-{step:06d}.png")
