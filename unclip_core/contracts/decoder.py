"""The decoder's contract: a diffusion model whose drop flags swap in its null inputs."""
from __future__ import annotations

from unclip_core.contracts._support import _generator
from unclip_core.contracts.diffusion_model import check_diffusion_model
from unclip_core.contracts.inputs import _diffusion_inputs
from unclip_core.interfaces import Decoder


def check_decoder(decoder: Decoder) -> None:
    """:func:`check_diffusion_model` on a decoder: ``drop_image`` (and ``drop_text`` when it
    reads captions) must change the prediction, and guidance must be the CFG formula."""
    x_t, t, cond = _diffusion_inputs(decoder, _generator(8))
    flags = ("drop_image", "drop_text") if cond.text_embed is not None else ("drop_image",)
    check_diffusion_model(decoder, x_t, t, cond, drop_flags=flags)
