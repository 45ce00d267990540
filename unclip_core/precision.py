"""Which precision a pipeline runs in when its recipe says ``runtime.precision: auto``.

bf16 autocast pays only where the hardware multiplies bf16 natively: CUDA GPUs that support it,
and CPUs with AMX tiles or AVX-512 BF16 dot products. Elsewhere torch emulates bf16 and the same
generation runs several times *slower* than in fp32 (3.6-6x on an AVX2-only CPU, see
docs/benchmarks.md), so ``auto`` picks fp32 there. The choice is made once, when the pipeline
is built, and recorded with the images it makes so that ``unclip generate --from`` redraws an
image in the precision it was drawn in.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch

Precision = Literal["fp32", "bf16"]


def _cpu_feature(name: str) -> bool:
    """A ``torch.cpu._is_*_supported`` probe (private in torch; absent means unsupported)."""
    probe: Callable[[], bool] | None = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # a probe that cannot run says nothing about the CPU
        return False


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware (not by emulation)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_feature("_is_amx_tile_supported") or _cpu_feature("_is_avx512_bf16_supported")
    return False


def resolve_precision(setting: str, device: str | torch.device) -> Precision:
    """The recipe's ``runtime.precision`` made concrete: ``auto`` becomes bf16 on hardware with
    native bf16 and fp32 elsewhere; ``fp32`` and ``bf16`` are kept as written."""
    if setting == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if setting not in ("fp32", "bf16"):
        raise ValueError(f"runtime.precision must be fp32, bf16 or auto, not {setting!r}")
    return setting  # type: ignore[return-value]
