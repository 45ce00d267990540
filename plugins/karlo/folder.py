"""A diffusers unCLIP (Karlo) folder: which parts it must have (its JSON configs and weights are
read with :mod:`unclip_plugins.diffusers_folders.files`)."""
from __future__ import annotations

from pathlib import Path

from unclip_core.errors import InputError

MODEL_PARTS = ("text_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last")
SCHEDULER_PARTS = ("prior_scheduler", "decoder_scheduler", "super_res_scheduler")
PARTS = ("text_encoder", "tokenizer", "prior", "text_proj", "decoder", "super_res_first", "super_res_last", *SCHEDULER_PARTS)
"""The sub-folders of a diffusers unCLIP (Karlo) folder; ``image_encoder/`` is optional."""


def check_folder(source: Path) -> None:
    """One-line error unless ``source`` holds every part of a diffusers unCLIP folder."""
    if source.exists() and not source.is_dir():
        raise InputError(f"{source} is a file, not a Karlo folder (give the folder that holds text_encoder/, prior/, ...)")
    if not source.is_dir():
        raise InputError(f"Karlo folder not found: {source}")
    missing = [f"{part}/" for part in PARTS if not (source / part).is_dir()]
    if len(missing) == len(PARTS):
        raise InputError(
            f"{source} is not a Karlo (diffusers unCLIP) folder: it has none of {', '.join(missing)}"
        )
    if missing:
        raise InputError(
            f"{source} is not a complete Karlo (diffusers unCLIP) folder: missing {', '.join(missing)} "
            f"(expected {', '.join(p + '/' for p in PARTS)})"
        )
