"""Built-in plugin ``kandinsky22``: Kandinsky 2.2's decoder (``kandinsky22-decoder``, a latent
decoder over the ``vq`` autoencoder) and the ``kandinsky22`` import format, which turns
diffusers' ``KandinskyV22PriorPipeline`` and ``KandinskyV22Pipeline`` folders into one recipe
(the prior runs on the ``diffusion-prior``, ``hf-clip`` and ``unclip-scheduler`` components
the Karlo import uses)."""
from __future__ import annotations

from unclip_core import hookimpl

from .decoder import Kandinsky22Decoder
from .decoder_config import Kandinsky22DecoderConfig
from .importer import Kandinsky22Importer, import_kandinsky22

__all__ = ["Kandinsky22Decoder", "Kandinsky22DecoderConfig", "Kandinsky22Importer", "import_kandinsky22"]


@hookimpl
def register_decoders(register) -> None:
    register("kandinsky22-decoder", Kandinsky22Decoder, Kandinsky22DecoderConfig,
             summary="Kandinsky 2.2's decoder: diffusers UNet2DConditionModel (addition_embed_type image) in an "
             "autoencoder's latent space, conditioned on the CLIP image embedding alone.")


@hookimpl
def register_importers(register) -> None:
    register("kandinsky22", Kandinsky22Importer(), summary=Kandinsky22Importer.help)
