"""Operations on conditioning dataclasses (text encodings, prior/decoder/upsampler conditions)
that need no knowledge of what the fields mean: apply a function to every tensor, stack two
batches. Kept apart from :mod:`unclip_core.interfaces` so that guidance, which stacks the
conditional and unconditional batches, can be imported by it without a cycle."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

CondT = TypeVar("CondT")


def map_tensors(obj: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor field of a conditioning dataclass, and to those of a
    dataclass held in a field (the empty caption's encoding); ``None`` stays."""
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor):
            changes[f.name] = fn(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes[f.name] = map_tensors(value, fn)
    return dataclasses.replace(obj, **changes)


def concat_conditions(first: CondT, second: CondT) -> CondT:
    """Stack two conditionings of the same type along the batch (for batched CFG)."""
    changes = {}
    for f in dataclasses.fields(first):  # type: ignore[arg-type]
        a, b = getattr(first, f.name), getattr(second, f.name)
        if isinstance(a, Tensor):
            changes[f.name] = torch.cat([a, b], dim=0)
        elif dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and not isinstance(a, type):
            changes[f.name] = concat_conditions(a, b)
    return dataclasses.replace(first, **changes)  # type: ignore[type-var]
