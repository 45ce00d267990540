"""bf16-matmul's arithmetic reproduced on any CPU, for measuring how close it stays to fp32.

Where oneDNN computes ``bf16-matmul`` in exact fp32 (no bf16 kernel for the CPU), its images
cannot be measured by running it; this emulation rounds the same operands to bf16 and
computes in fp32, so ``bench/generate_default.py`` and ``bench/karlo_vs_diffusers.py`` can give
its PSNR anywhere. Measurement only: it patches torch process-wide while open. (It lived in
``unclip_core.precision`` until the core stopped carrying code that only benchmarks and tests
use.)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


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
