"""Resumable training checkpoints in one safetensors file, written atomically.

Layout: tensors ``model/…``, ``ema/…``, ``optim/<param index>/<state key>``, ``rng/torch``,
``rng/train``; JSON metadata ``step``, ``param_groups``, ``recipe_digest``, ``format``.
Nothing is pickled. The file is written to a temporary name and renamed, so a process killed
mid-save leaves the previous checkpoint whole.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unclip_core.errors import CheckpointError
from unclip_core.training.ema import EMA
from unclip_core.weights import atomic_save_safetensors, check_state_dict, read_metadata, read_safetensors

FORMAT = "unclip-train-v1"


@dataclass
class TrainingState:
    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0


def save_checkpoint(path: Path, state: TrainingState, recipe_digest: str = "") -> Path:
    tensors: dict[str, torch.Tensor] = {}
    for name, value in state.model.state_dict().items():
        tensors[f"model/{name}"] = value
    for name, value in state.ema.state_dict().items():
        tensors[f"ema/{name}"] = value
    optim = state.optimizer.state_dict()
    for index, entries in optim["state"].items():
        for key, value in entries.items():
            tensors[f"optim/{index}/{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    tensors["rng/torch"] = torch.get_rng_state()
    tensors["rng/train"] = state.generator.get_state()
    metadata = {
        "format": FORMAT,
        "step": str(state.step),
        "param_groups": json.dumps(optim["param_groups"]),
        "recipe_digest": recipe_digest,
    }
    return atomic_save_safetensors(tensors, path, metadata)


def load_checkpoint(path: Path, state: TrainingState) -> int:
    """Restore everything in ``state`` from ``path``; returns the step to continue from."""
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an unclip training checkpoint (format {metadata.get('format')!r})")
    tensors = read_safetensors(path)

    def section(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    model_state = section("model/")
    check_state_dict(state.model, model_state, f"{path} (model)")
    state.model.load_state_dict(model_state)
    state.ema.load_state_dict(section("ema/"))
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in section("optim/").items():
        index, name = key.split("/", 1)
        optim_state.setdefault(int(index), {})[name] = value
    try:
        state.optimizer.load_state_dict({"state": optim_state, "param_groups": json.loads(metadata["param_groups"])})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: optimiser state does not fit this model ({exc})") from None
    torch.set_rng_state(tensors["rng/torch"])
    state.generator.set_state(tensors["rng/train"])
    state.step = int(metadata["step"])
    return state.step
