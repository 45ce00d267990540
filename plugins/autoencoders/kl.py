"""``kl``: diffusers' ``AutoencoderKL`` as an :class:`~unclip_core.interfaces.Autoencoder`
(Stable Diffusion's VAE). The diffusers model is kept whole as ``self.model``, so a folder's
weights load under their own names."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unclip_core.errors import InputError
from unclip_core.interfaces import Autoencoder

from .config import KLConfig


class KLAutoencoder(Autoencoder[KLConfig]):
    """Encoding samples the posterior with the generator given (diffusers' img2img
    pipelines do), or takes its mean without one."""

    def __init__(self, config: KLConfig):
        super().__init__(config)
        from diffusers import AutoencoderKL  # here, not at discovery: diffusers' autoencoders package costs ~0.1 s to import

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

    def training_loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        """L1 reconstruction of ``batch["image"]`` ``[B, 3, H, W]`` in [-1, 1] from a sample of
        the posterior (drawn with ``generator``), plus ``kl_weight`` × its KL divergence from
        N(0, I) per latent value. L1, not a perceptual or adversarial loss: the images this
        was chosen for (flat-coloured shapes) are judged by the colour of every pixel, which
        L1's median-seeking keeps exact at edges where MSE would blur them."""
        image = batch.get("image")
        if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != self.config.in_channels:
            got = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise InputError(f"kl: training images must be [B, {self.config.in_channels}, H, W], got {got}")
        image = image.to(device=self.device, dtype=self.dtype)
        posterior = self.model.encode(image).latent_dist
        rebuilt = self.model.decode(posterior.sample(generator)).sample
        kl = posterior.kl().sum() / posterior.mean.numel()
        return F.l1_loss(rebuilt, image) + self.config.kl_weight * kl
