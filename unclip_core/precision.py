"""The precisions a pipeline runs in, and which one ``runtime.precision: auto`` picks.

* ``fp32``: fp32 throughout.
* ``bf16``: bf16 autocast: convolutions and matrix products take bf16 inputs and return bf16,
  so most activations between them are bf16 too. Fastest where bf16 is native; every bf16
  activation is rounded to 8 significant bits.
* ``bf16-matmul`` (CPU): fp32 tensors throughout, while oneDNN's convolutions and matrix
  products round their operands to bf16 inside the kernel and accumulate and return fp32
  (torch's ``torch.backends.mkldnn.{conv,matmul}.fp32_precision = "bf16"``). The activations,
  norms, residual sums and skip connections stay fp32, which keeps images closer to fp32's than
  autocast does (docs/benchmarks.md, "Two kinds of bf16": Karlo's medium config, random
  weights, 31.6 dB against autocast's 28.7 dB, emulated). On CPUs without native bf16 oneDNN ignores the
  setting and computes exact fp32.

bf16 arithmetic pays only where the hardware multiplies bf16 natively: CUDA GPUs that support
it, and CPUs with AMX tiles or AVX-512 BF16 dot products. Elsewhere torch emulates bf16 autocast
and the same generation runs several times *slower* than in fp32 (3.6-6x on an AVX2-only CPU,
see docs/benchmarks.md). So ``auto`` picks ``bf16-matmul`` on a CPU with native bf16, ``bf16``
on a GPU with it and ``fp32`` elsewhere. The choice is made once, when the pipeline is built,
and recorded with the images it makes so that ``unclip generate --from`` redraws an image in
the precision it was drawn in.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Literal, get_args

import torch

Precision = Literal["fp32", "bf16", "bf16-matmul"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


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
    """The recipe's ``runtime.precision`` made concrete: ``auto`` becomes ``bf16-matmul`` on a
    CPU with native bf16, ``bf16`` on another device with it and ``fp32`` elsewhere; the others
    are kept as written (``bf16-matmul`` only on the CPU, the one device whose kernels take it)."""
    device_type = torch.device(device).type
    if setting == "auto":
        if not native_bf16(device):
            return "fp32"
        return "bf16-matmul" if device_type == "cpu" else "bf16"
    if setting not in PRECISIONS:
        raise ValueError(f"runtime.precision must be one of {', '.join(PRECISIONS)} or auto, not {setting!r}")
    if setting == "bf16-matmul" and device_type != "cpu":
        raise ValueError(
            f"runtime.precision bf16-matmul is oneDNN's, for the CPU; on {device_type} use bf16 (autocast) or fp32"
        )
    return setting  # type: ignore[return-value]


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


def _to_bf16_and_back(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.bfloat16().to(tensor.dtype) if tensor.dtype == torch.float32 else tensor


@contextlib.contextmanager
def emulated_onednn_bf16() -> Iterator[None]:
    """While open, fp32 2-D convolutions, linear layers and scaled-dot-product attention round
    their operands to bf16 and compute in fp32: what ``bf16-matmul`` draws on a CPU with bf16
    units, reproduced (slowly, to within accumulation order) on any CPU, so that its closeness
    to fp32 can be measured where oneDNN would compute exact fp32. Attention's two products
    are rounded too, which is the cautious reading: whether oneDNN's setting reaches torch's
    own attention kernels depends on the build. For measurement only; process-wide while open."""
    functional = torch.nn.functional
    conv_forward, linear_forward = torch.nn.Conv2d._conv_forward, torch.nn.Linear.forward
    attention = functional.scaled_dot_product_attention
    rounded = _to_bf16_and_back

    def conv(self, input, weight, bias):  # noqa: A002 - torch's own parameter names
        return conv_forward(self, rounded(input), rounded(weight), bias)

    def linear(self, input):  # noqa: A002
        return functional.linear(rounded(input), rounded(self.weight), self.bias)

    def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if dropout_p or enable_gqa:
            raise NotImplementedError("emulated_onednn_bf16 measures inference: no attention dropout or grouped queries")
        scale = query.shape[-1] ** -0.5 if scale is None else scale
        scores = (rounded(query) @ rounded(key).transpose(-2, -1)) * scale
        if is_causal:
            causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
        return rounded(scores.softmax(-1)) @ rounded(value)

    torch.nn.Conv2d._conv_forward, torch.nn.Linear.forward = conv, linear  # type: ignore[method-assign]
    functional.scaled_dot_product_attention = scaled_dot_product_attention
    try:
        yield
    finally:
        torch.nn.Conv2d._conv_forward, torch.nn.Linear.forward = conv_forward, linear_forward  # type: ignore[method-assign]
        functional.scaled_dot_product_attention = attention
