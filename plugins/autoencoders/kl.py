"""``kl``: diffusers' ``AutoencoderKL`` as an :class:`~unclip_core.interfaces.Autoencoder`
(Stable Diffusion's VAE). The diffusers model is kept whole as ``self.model``, so a folder's
weights load under their own names."""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from torch import Tensor

from unclip_core.interfaces import Autoencoder

from .config import KLConfig


class KLAutoencoder(Autoencoder[KLConfig]):
    """Encoding samples the posterior with the generator given (diffusers' img2img
    pipelines do), or takes its mean without one."""

    def __init__(self, config: KLConfig):
        super().__init__(config)
        self.model = AutoencoderKL(**config.diffusers_kwargs())

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        posterior = self.model.encode(images.to(device=self.device, dtype=self.dtype)).latent_dist
        latents = posterior.mode() if generator is None else posterior.sample(generator)
        if self.config.shift_factor is not None:
            latents = latents - self.config.shift_factor
        return latents * self.config.scaling_factor

    def decode(self, latents: Tensor) -> Tensor:
        latents = latents.to(device=self.device, dtype=self.dtype) / self.config.scaling_factor
        if self.config.shift_factor is not None:
            latents = latents + self.config.shift_factor
        return self.model.decode(latents).sample
