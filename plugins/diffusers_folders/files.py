"""Reading the parts of a diffusers (or transformers) model folder: their JSON configs, their
weights in whichever of diffusers' and transformers' file layouts they were saved, and a CLIP
tokenizer folder — one error line naming the part for anything unreadable."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from unclip_core.errors import CheckpointError, InputError
from unclip_core.weights import read_safetensors

WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
)
"""Weight files looked for in each part, in order (transformers and diffusers names, sharded
indexes, tensors-only torch files read with ``weights_only=True``, fp16 variants last)."""


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path.parent.name}/: no {path.name}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path.parent.name}/{path.name} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path.parent.name}/{path.name} is not a JSON object")
    return data


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if path.name.endswith(".index.json"):
        index = read_json(path)
        shards = sorted(set((index.get("weight_map") or {}).values()))
        if not shards:
            raise CheckpointError(f"{path.parent.name}/{path.name} lists no weight shards")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_load_file(path.parent / shard))
        return state
    if path.suffix == ".bin":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one error
            raise CheckpointError(f"{path.parent.name}/{path.name} is not a readable tensors-only torch file ({exc})") from None
        return dict(state)
    return read_safetensors(path)


def read_weights(part: Path) -> dict[str, torch.Tensor]:
    """The tensors of one model part (``prior/``, ``decoder/``, ...)."""
    for name in WEIGHT_FILES:
        if (part / name).is_file():
            return _load_file(part / name)
    raise CheckpointError(f"{part.name}/: no weights file (looked for {', '.join(WEIGHT_FILES[:2])}, ...)")


def check_tokenizer(folder: Path) -> None:
    """One-line error unless ``folder`` (a diffusers folder's ``tokenizer/``) holds a CLIP
    tokenizer transformers can load: its files named, its JSON readable."""
    if not (folder / "tokenizer.json").is_file() and not (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    ):
        what = "is empty" if not any(folder.iterdir()) else "holds no tokenizer.json (nor vocab.json with merges.txt)"
        raise InputError(f"{folder.name}/ {what}: expected the tokenizer files of a CLIP tokenizer")
    for name in ("tokenizer.json", "vocab.json"):
        if (folder / name).is_file():
            read_json(folder / name)
    try:
        from transformers import CLIPTokenizer  # optional (the karlo extra); heavy
    except ImportError:  # pragma: no cover - the hf-clip build names the missing package
        return
    try:
        CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever transformers raises is one line
        raise InputError(
            f"{folder.name}/: transformers cannot load it as a CLIP tokenizer ({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from None
