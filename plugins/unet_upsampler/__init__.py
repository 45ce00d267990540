"""unCLIP's diffusion upsamplers, registered as ``unet-upsampler``."""
from __future__ import annotations

from unclip_core import hookimpl
from unclip_plugins.unet_upsampler.config import UnetUpsamplerConfig
from unclip_plugins.unet_upsampler.model import UnetUpsampler

__all__ = ["UnetUpsampler", "UnetUpsamplerConfig"]


@hookimpl
def register_upsamplers(register):
    register(
        "unet-upsampler",
        UnetUpsampler,
        UnetUpsamplerConfig,
        summary="unCLIP's diffusion upsampler (diffusers UNet2DModel) reading the noisy image next to "
        "the upsampled low-resolution one; trained on crops of blur- or BSR-degraded conditions",
    )
