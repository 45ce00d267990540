"""Reading and writing model weights: safetensors only, checked, written atomically.

Nothing is unpickled. A file that is missing, is not safetensors, or whose tensors do not
fit the model raises a :class:`CheckpointError` naming the file and the first offending
tensors. Writes go to a temporary file in the same folder and are renamed into place, so an
interrupted save never leaves a half-written file where a good one was.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from unclip_core.atomic import atomic_write
from unclip_core.errors import CheckpointError
from safetensors import safe_open


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None


def read_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None


def _listing(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a CheckpointError unless ``state`` has exactly the module's tensors and shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    common = sorted(set(expected) & set(state))
    wrong = [
        f"{name} {tuple(state[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in common
        if tuple(state[name].shape) != tuple(expected[name].shape)
    ]
    parts = []
    if wrong:
        parts.append(f"shape mismatch for {_listing(wrong, 3)}")
    if missing:
        parts.append(f"missing {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected {_listing(unexpected)}")
    if parts:
        raise CheckpointError(f"{source} does not fit the model's config: " + "; ".join(parts))
    # A float tensor stored as integers (or the reverse) would load silently after a cast and
    # draw noise; a NaN anywhere turns every image black. Neither is ever a real weight. The
    # NaN scan reads every weight once (one pass at memory speed), so it comes last.
    kind = [
        f"{name} ({str(state[name].dtype).removeprefix('torch.')} vs model {str(expected[name].dtype).removeprefix('torch.')})"
        for name in common
        if state[name].is_floating_point() != expected[name].is_floating_point()
    ]
    if kind:
        raise CheckpointError(f"{source} stores tensors in the wrong number type: {_listing(kind, 3)}")
    not_a_number, infinite = _non_finite(module, state, common)
    if not_a_number:
        raise CheckpointError(f"{source} holds NaN values (a diverged or corrupt save) in {_listing(not_a_number)}")
    if infinite:
        raise CheckpointError(f"{source} holds infinite values (a diverged or corrupt save) in {_listing(infinite)}")


def _non_finite(module: nn.Module, state: Mapping[str, torch.Tensor], names: list[str]) -> tuple[list[str], list[str]]:
    """The tensors holding NaN, and the parameters holding ±inf. An infinite *parameter* is
    never a trained weight (all-+inf weights drew all-black images, silently); a buffer may
    hold -inf legitimately (an attention mask), so buffers are only checked for NaN."""
    parameters = {name for name, _ in module.named_parameters(remove_duplicate=False)}
    not_a_number, infinite = [], []
    for name in names:
        tensor = state[name]
        if not tensor.is_floating_point() or tensor.device.type == "meta":
            continue
        if bool(torch.isnan(tensor).any()):
            not_a_number.append(name)
        elif name in parameters and bool(torch.isinf(tensor).any()):
            infinite.append(name)
    return not_a_number, infinite


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                   "sparse_")


@contextlib.contextmanager
def random_init_skipped() -> Iterator[None]:
    """Make ``torch.nn.init``'s functions do nothing while a model whose weights come from a
    file is built (what diffusers' ``no_init_weights`` does, without importing diffusers for
    components that do not use it). Parameters keep whatever ``torch.empty`` gave them, so
    only use it when every parameter is loaded next; buffers computed in ``__init__`` are
    unaffected."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS if hasattr(nn.init, name)}

    def skip(tensor, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        return tensor

    for name in saved:
        setattr(nn.init, name, skip)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def load_weights(module: nn.Module, path: str | Path, *, initial: bool = False) -> None:
    """Load a safetensors file into ``module`` after checking every name and shape.

    ``initial=True`` marks the weights a training run starts from: they first go through
    the component's ``adapt_initial_weights`` (e.g. an inpainting decoder widening an
    ordinary decoder's input convolution), and are then checked as strictly."""
    state = read_safetensors(path)
    adapt = getattr(module, "adapt_initial_weights", None)
    if initial and callable(adapt):
        state = adapt(dict(state), str(path))
    check_state_dict(module, state, str(path))
    module.load_state_dict(state, strict=True)


def atomic_save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write tensors to ``path`` via a temporary file and ``os.replace``."""
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    contiguous = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        mode = os.stat(tmp).st_mode & 0o777  # safetensors re-creates the file as 0600: put this back
        save_file(contiguous, str(tmp), metadata=meta)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())

    return atomic_write(path, write)
    return path


def save_weights(module: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Save a module's state dict as safetensors, atomically. Shared tensors are cloned."""
    state = {}
    seen: dict[int, str] = {}
    for name, tensor in module.state_dict().items():
        key = tensor.untyped_storage().data_ptr() if tensor.numel() else id(tensor)
        state[name] = tensor.clone() if key in seen else tensor
        seen.setdefault(key, name)
    return atomic_save_safetensors(state, path, metadata)
