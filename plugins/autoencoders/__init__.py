"""Built-in plugin ``autoencoders``: the autoencoders a latent decoder denoises in, named by a
recipe's ``decoder.autoencoder`` slot — ``vq`` (diffusers ``VQModel``, Kandinsky 2.2's MoVQ)
and ``kl`` (diffusers ``AutoencoderKL``, Stable Diffusion's VAE)."""
from __future__ import annotations

from unclip_core import hookimpl

from .config import KLConfig, VQConfig
from .kl import KLAutoencoder
from .vq import VQAutoencoder

__all__ = ["KLAutoencoder", "KLConfig", "VQAutoencoder", "VQConfig"]


@hookimpl
def register_autoencoders(register) -> None:
    register("vq", VQAutoencoder, VQConfig,
             summary="diffusers VQModel (MoVQ, Kandinsky 2.2's autoencoder); latents unscaled by default, decoded without the codebook.")
    register("kl", KLAutoencoder, KLConfig,
             summary="diffusers AutoencoderKL (Stable Diffusion's VAE), latents times scaling_factor.")
