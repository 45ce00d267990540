"""Stable unCLIP's noise augmentation of the CLIP image embedding (diffusers'
``StableUnCLIPPipeline.noise_image_embeddings``), which turns the embedding into the UNet's
class label.

The embedding is standardised with the image normaliser's mean and std (statistics of the
CLIP embedder, learned with the model), noised to ``noise_level`` by the image-noising
scheduler's ``add_noise``, un-standardised, and followed by the sinusoidal embedding of the
noise level itself, so the UNet knows how much to trust it: ``[B, D]`` → ``[B, 2D]``. The
noise is drawn from the call's generator even at level 0 (where it still moves the embedding
by √(1−ᾱ₀)), between the prior's draws and the decoder's x_T, as diffusers draws it.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from unclip_core.diffusion.noise import gaussian


def noising_scheduler(settings: dict[str, Any]) -> Any:
    """The image-noising scheduler (a diffusers ``DDPMScheduler``) from its saved settings."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(settings)


def noise_image_embeddings(
    image_embed: Tensor, noise_level: int, normalizer: Any, scheduler: Any, generator: torch.Generator
) -> Tensor:
    """``[B, 2D]``: ``image_embed`` ``[B, D]`` noised to ``noise_level``, then the level's timestep embedding."""
    from diffusers.models.embeddings import get_timestep_embedding

    noise = gaussian(image_embed.shape, generator, image_embed.dtype, image_embed.device)
    levels = torch.tensor([noise_level] * image_embed.shape[0], device=image_embed.device)
    scaled = normalizer.scale(image_embed)
    noised = normalizer.unscale(scheduler.add_noise(scaled, timesteps=levels, noise=noise))
    level_embed = get_timestep_embedding(
        timesteps=levels, embedding_dim=noised.shape[-1], flip_sin_to_cos=True, downscale_freq_shift=0
    ).to(noised.dtype)
    return torch.cat((noised, level_embed), 1)
