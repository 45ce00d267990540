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
    """Restore everything in ``state`` from ``path``; returns the step to continue from.

    The whole checkpoint is checked against the run first (:func:`check_checkpoint`), so a
    corrupt or foreign file is one line naming the entry and ``state`` is left untouched."""
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an unclip training checkpoint (format {metadata.get('format')!r})")
    tensors = read_safetensors(path)
    step, model_state, ema_state, optimizer_state = check_checkpoint(path, state, metadata, tensors)
    state.model.load_state_dict(model_state)
    state.ema.load_state_dict(ema_state)
    state.optimizer.load_state_dict(optimizer_state)
    torch.set_rng_state(tensors["rng/torch"])
    state.generator.set_state(tensors["rng/train"])
    state.step = step
    return state.step


def check_checkpoint(
    path: Path, state: TrainingState, metadata: dict[str, str], tensors: dict[str, torch.Tensor]
) -> tuple[int, dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Every entry of a checkpoint checked against the run that resumes from it: the step, the
    model and EMA tensors (names, shapes, number type, no NaN or inf), the optimiser's state
    (which parameter, which shape, finite) and groups, and both random states. Returns the
    step, the model's and the EMA's tensors and the optimiser's state dict, ready to load."""

    def bad(entry: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{path}: checkpoint entry {entry} {problem}")

    raw_step = metadata.get("step")
    if raw_step is None or not raw_step.isdigit():
        raise bad("step", f"should be a whole number ≥ 0, got {raw_step!r}")
    step = int(raw_step)

    def section(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    model_state = section("model/")
    check_state_dict(state.model, model_state, f"{path} (model)")
    ema_state = section("ema/")
    check_state_dict(state.model, ema_state, f"{path} (ema)")

    parameters = [p for group in state.optimizer.param_groups for p in group["params"]]
    try:
        groups = json.loads(metadata.get("param_groups", ""))
        sizes = [len(group["params"]) for group in groups]
    except (ValueError, TypeError, KeyError):
        raise bad("param_groups", "is not the optimiser's groups as JSON") from None
    if sizes != [len(group["params"]) for group in state.optimizer.param_groups]:
        raise bad("param_groups", f"holds groups of {sizes} parameters; this run's optimiser has "
                  f"{[len(group['params']) for group in state.optimizer.param_groups]}")
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in section("optim/").items():
        entry = f"optim/{key}"
        index, _, name = key.partition("/")
        if not index.isdigit() or int(index) >= len(parameters) or not name:
            raise bad(entry, f"names no parameter of this run's optimiser ({len(parameters)} parameters)")
        parameter = parameters[int(index)]
        if value.ndim > 0 and tuple(value.shape) != tuple(parameter.shape):
            raise bad(entry, f"has shape {tuple(value.shape)}, its parameter {tuple(parameter.shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise bad(entry, "holds NaN or infinite values (a diverged or corrupt save)")
        optim_state.setdefault(int(index), {})[name] = value
    optimizer_state = {"state": optim_state, "param_groups": groups}
    try:  # the real load must not fail half-way through: try it on a stand-in optimiser first
        trial = type(state.optimizer)([torch.nn.Parameter(torch.empty_like(p)) for p in parameters])
    except TypeError:
        trial = None  # an optimiser that needs settings to be built: only the checks above apply
    if trial is not None:
        try:
            trial.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise bad("optim", f"does not fit this run's optimiser ({' '.join(str(exc).split())})") from None

    for entry, reference in (("rng/torch", torch.get_rng_state()), ("rng/train", state.generator.get_state())):
        value = tensors.get(entry)
        if value is None:
            raise bad(entry, "is missing")
        if value.dtype != reference.dtype or tuple(value.shape) != tuple(reference.shape):
            raise bad(entry, f"is not a random-generator state ({str(value.dtype).removeprefix('torch.')} "
                      f"{tuple(value.shape)}, expected {str(reference.dtype).removeprefix('torch.')} {tuple(reference.shape)})")
        try:
            torch.Generator().set_state(value)
        except (RuntimeError, ValueError) as exc:
            raise bad(entry, f"is not a usable random-generator state ({' '.join(str(exc).split())})") from None
    return step, model_state, ema_state, optimizer_state
