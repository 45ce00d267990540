"""Built-in plugin ``stable_unclip``: Stable unCLIP (Stable Diffusion 2.1 fine-tuned on noised
CLIP image embeddings) — the ``stable-unclip-decoder`` and the ``stable-unclip`` import format
(``unclip import stable-unclip`` turns a diffusers ``StableUnCLIPPipeline`` or
``StableUnCLIPImg2ImgPipeline`` folder into a recipe; :mod:`.importer`).

transformers is an optional dependency (the ``karlo`` extra): imported when a decoder is built.
"""
from __future__ import annotations

from unclip_core import hookimpl

from .config import StableUnclipDecoderConfig
from .importer import StableUnclipImporter, import_stable_unclip
from .model import StableUnclipDecoder

__all__ = ["StableUnclipDecoder", "StableUnclipDecoderConfig", "StableUnclipImporter", "import_stable_unclip"]


@hookimpl
def register_decoders(register) -> None:
    register(
        "stable-unclip-decoder",
        StableUnclipDecoder,
        StableUnclipDecoderConfig,
        summary="Stable unCLIP: SD 2.1's latent UNet reading the noised CLIP image embedding as class label and "
        "SD's caption tokens (diffusers' StableUnCLIPPipeline decoder)",
    )


@hookimpl
def register_importers(register) -> None:
    register("stable-unclip", StableUnclipImporter(), summary=StableUnclipImporter.help)
