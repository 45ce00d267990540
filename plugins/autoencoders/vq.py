"""``vq``: diffusers' ``VQModel`` as an :class:`~unclip_core.interfaces.Autoencoder` (MoVQ,
the autoencoder of Kandinsky 2.2). The diffusers model is kept whole as ``self.model``, so a
folder's weights load under their own names."""
from __future__ import annotations

import torch
from torch import Tensor

from unclip_core.interfaces import Autoencoder

from .config import VQConfig


class VQAutoencoder(Autoencoder[VQConfig]):
    """Encoding is deterministic (the encoder's pre-quantisation latents, as Kandinsky's
    img2img takes them); decoding skips the codebook unless ``quantize`` is set."""

    def __init__(self, config: VQConfig):
        super().__init__(config)
        from diffusers import VQModel  # here, not at discovery: diffusers' autoencoders package costs ~0.1 s to import

        self.model = VQModel(**config.diffusers_kwargs())

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        latents = self.model.encode(images.to(device=self.device, dtype=self.dtype)).latents
        return latents * self.config.latent_scale

    def decode(self, latents: Tensor) -> Tensor:
        latents = latents.to(device=self.device, dtype=self.dtype) / self.config.latent_scale
        return self.model.decode(latents, force_not_quantize=not self.config.quantize).sample
