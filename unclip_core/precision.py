"""The precisions a pipeline runs in.

* ``fp32``: fp32 throughout.
* ``bf16``: bf16 autocast: convolutions and matrix products take bf16 inputs and return bf16,
  so most activations between them are bf16 too. Fastest where bf16 is native; every bf16
  activation is rounded to 8 significant bits.
* ``bf16-matmul`` (CPU): fp32 tensors throughout, while oneDNN's convolutions and matrix
  products round their operands to bf16 inside the kernel and accumulate and return fp32
  (torch's ``torch.backends.mkldnn.{conv,matmul}.fp32_precision = "bf16"``). The activations,
  norms, residual sums and skip connections stay fp32, which keeps images closer to fp32's than
  autocast does (docs/benchmarks.md, "Two kinds of bf16"). Where oneDNN has no bf16 kernel
  for the CPU (seen on AVX2-only CPUs and on an AVX-512 BF16 CPU without AMX) it ignores the
  setting and computes exact fp32.

Which of them ``runtime.precision: auto`` picks is measured, not read from CPU flags:
:mod:`unclip_core.auto_precision`.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Literal, get_args

import torch

Precision = Literal["fp32", "bf16", "bf16-matmul"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


_ONEDNN_OPS = ("conv", "matmul")


@contextlib.contextmanager
def onednn_bf16_math() -> Iterator[None]:
    """While open, oneDNN's fp32 convolutions and matrix products compute in bf16 (operands
    rounded, fp32 accumulation and output) where the CPU has native bf16; the previous settings
    come back on exit. The settings are process-wide, as torch's backend flags are."""
    backend = torch.backends.mkldnn
    before = {op: getattr(backend, op).fp32_precision for op in _ONEDNN_OPS}
    try:
        for op in _ONEDNN_OPS:
            getattr(backend, op).fp32_precision = "bf16"
        yield
    finally:
        for op, value in before.items():
            getattr(backend, op).fp32_precision = value
