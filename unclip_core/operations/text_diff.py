"""Text diffs (unCLIP §3.3): edit an image towards a caption change."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from unclip_core.diffusion.slerp import slerp, text_diff_direction
from unclip_core.errors import InputError
from unclip_core.images import tensor_to_pil
from unclip_core.prompts import check_prompts

if TYPE_CHECKING:  # pragma: no cover - the pipeline imports this module
    from unclip_core.pipeline import Pipeline


def text_diff(
    pipeline: Pipeline,
    image: Image.Image | str | Path,
    from_caption: str,
    to_caption: str,
    thetas: Sequence[float] = (0.0, 0.25, 0.5),
    seed: int = 0,
) -> list[Image.Image]:
    """Edit an image towards a caption change (unCLIP §3.3): z_d = normalize(z_t1 − z_t0),
    decode slerp(z_i, z_d, θ) from the image's fixed DDIM-inverted latent."""
    check_prompts(
        [from_caption, to_caption], names=["from_caption", "to_caption"], hint="describe the image before and after the edit"
    )
    thetas = [float(theta) for theta in thetas]
    if not thetas:
        raise InputError("text_diff needs at least one theta")
    if any(not 0 <= theta <= 1 for theta in thetas):  # also refuses nan
        raise InputError(f"thetas must be numbers in [0, 1], got {thetas}")
    z_i, x_T = pipeline.invert(image)
    text = pipeline.encode_text([from_caption, to_caption])
    z_d = text_diff_direction(text.embed[0:1].float(), text.embed[1:2].float())
    embeds = torch.cat([slerp(z_i, z_d, float(theta)) for theta in thetas])
    return tensor_to_pil(pipeline.decode_latent(embeds, x_T.repeat(len(thetas), 1, 1, 1), seed=seed))
