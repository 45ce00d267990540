"""The settings of transformers' CLIP towers as a diffusers folder saves them (``config.json``
of a ``CLIPTextModel(WithProjection)`` or ``CLIPVisionModelWithProjection``): which keys describe
the architecture, unknown keys named with a suggestion, and what a tokenizer folder must hold."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

TEXT_KEYS = frozenset(
    {
        "vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
        "num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps",
        "attention_dropout", "dropout", "initializer_range", "initializer_factor", "pad_token_id",
        "bos_token_id", "eos_token_id",
    }
)
"""``CLIPTextConfig`` settings that describe the text tower (the rest of a transformers
config.json is bookkeeping or generation settings, which the importer leaves out)."""

VISION_KEYS = frozenset(
    {
        "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads",
        "num_channels", "image_size", "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout",
        "dropout", "initializer_range", "initializer_factor",
    }
)
"""``CLIPVisionConfig`` settings that describe the image tower."""


def tokenizer_files_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a CLIP tokenizer folder, or None if it is one."""
    if not folder.is_dir():
        return f"tokenizer folder not found: {folder}"
    if (folder / "tokenizer.json").is_file() or ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()):
        return None
    return f"tokenizer folder {folder} holds neither tokenizer.json nor vocab.json with merges.txt"


def unknown_keys(given: dict[str, Any], allowed: frozenset[str], where: str) -> list[str]:
    """One problem line per key of ``given`` not in ``allowed``, with the closest allowed key."""
    problems = []
    for key in sorted(set(given) - allowed):
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        problems.append(f"{where}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return problems
