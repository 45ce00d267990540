"""unCLIP's GLIDE-style decoder, registered as ``unclip-decoder``."""
from __future__ import annotations

from unclip_core import hookimpl
from unclip_plugins.unclip_decoder.config import UnclipDecoderConfig
from unclip_plugins.unclip_decoder.model import UnclipDecoder
from unclip_plugins.unclip_decoder.text_projection import ClipConditioningProjection

__all__ = ["ClipConditioningProjection", "UnclipDecoder", "UnclipDecoderConfig"]


@hookimpl
def register_decoders(register):
    register(
        "unclip-decoder",
        UnclipDecoder,
        UnclipDecoderConfig,
        summary="unCLIP's GLIDE-style decoder (diffusers UNet2DConditionModel): the CLIP image "
        "embedding is added to the timestep embedding and projected into 4 extra context tokens",
    )
