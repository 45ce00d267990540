"""Reading a diffusers Stable unCLIP folder: which of the two pipelines it holds and whether
every part is there (weights and JSON are read with :mod:`unclip_plugins.diffusers_folders.files`)."""
from __future__ import annotations

import json
from pathlib import Path

from unclip_core.errors import InputError

DECODER_PARTS = ("image_normalizer", "image_noising_scheduler", "tokenizer", "text_encoder", "unet", "scheduler", "vae")
"""What both pipelines' folders hold: the noise augmentation, SD's caption encoder, UNet, scheduler and VAE."""
PRIOR_PARTS = ("prior_tokenizer", "prior_text_encoder", "prior", "prior_scheduler")
"""A ``StableUnCLIPPipeline`` folder's prior (text to CLIP image embedding)."""
IMAGE_PARTS = ("feature_extractor", "image_encoder")
"""A ``StableUnCLIPImg2ImgPipeline`` folder's image encoder (image to CLIP image embedding)."""

TEXT_TO_IMAGE = "StableUnCLIPPipeline"
IMAGE_TO_IMAGE = "StableUnCLIPImg2ImgPipeline"


def _declared_class(source: Path) -> str | None:
    try:
        index = json.loads((source / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return index.get("_class_name") if isinstance(index, dict) else None


def folder_kind(source: Path) -> str:
    """``StableUnCLIPPipeline`` or ``StableUnCLIPImg2ImgPipeline``, after checking every part
    of that pipeline is there; a one-line error otherwise."""
    if source.exists() and not source.is_dir():
        raise InputError(f"{source} is a file, not a Stable unCLIP folder (give the folder that holds unet/, vae/, ...)")
    if not source.is_dir():
        raise InputError(f"Stable unCLIP folder not found: {source}")
    declared = _declared_class(source)
    if declared not in (TEXT_TO_IMAGE, IMAGE_TO_IMAGE, None):
        raise InputError(f"{source} holds a {declared} (model_index.json), not a {TEXT_TO_IMAGE} or {IMAGE_TO_IMAGE}")
    if declared is None:
        declared = TEXT_TO_IMAGE if (source / "prior").is_dir() else IMAGE_TO_IMAGE
    expected = DECODER_PARTS + (PRIOR_PARTS if declared == TEXT_TO_IMAGE else IMAGE_PARTS)
    missing = [f"{part}/" for part in expected if not (source / part).is_dir()]
    if len(missing) == len(expected):
        raise InputError(f"{source} is not a Stable unCLIP (diffusers) folder: it has none of {', '.join(missing)}")
    if missing:
        raise InputError(
            f"{source} is not a complete {declared} folder: missing {', '.join(missing)} "
            f"(expected {', '.join(p + '/' for p in expected)})"
        )
    return declared
