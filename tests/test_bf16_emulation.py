"""bench/bf16_emulation.py: bf16-matmul's arithmetic reproduced on any CPU, which the benchmarks
use to give its PSNR where oneDNN computes exact fp32."""
from __future__ import annotations

import pytest
import torch

from unclip_core.auto_precision import onednn_bf16_rounds
from unclip_core.precision import onednn_bf16_math


@pytest.fixture
def emulated_onednn_bf16(load_bench_script):
    return load_bench_script("bf16_emulation").emulated_onednn_bf16


def test_the_emulation_rounds_operands_and_nothing_else(emulated_onednn_bf16):
    """``emulated_onednn_bf16``: operands already representable in bf16 give exactly fp32's
    result; others are rounded (the result moves); torch's own functions come back on exit."""
    originals = (torch.nn.Conv2d._conv_forward, torch.nn.Linear.forward, torch.nn.functional.scaled_dot_product_attention)
    torch.manual_seed(0)
    conv, linear = torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Linear(16, 8)
    image, rows = torch.randn(2, 8, 6, 6), torch.randn(4, 16)
    with torch.no_grad():
        for module in (conv, linear):
            module.weight.copy_(module.weight.bfloat16().float())
        exact_conv, exact_linear = conv(image.bfloat16().float()), linear(rows.bfloat16().float())
        with emulated_onednn_bf16():
            assert torch.equal(conv(image.bfloat16().float()), exact_conv)
            assert torch.equal(linear(rows.bfloat16().float()), exact_linear)
            moved = conv(image)
        assert not torch.equal(moved, conv(image))
        torch.testing.assert_close(moved, conv(image), atol=5e-2, rtol=0)
    assert (torch.nn.Conv2d._conv_forward, torch.nn.Linear.forward, torch.nn.functional.scaled_dot_product_attention) == originals


@pytest.mark.parametrize("mask", ["none", "bool", "additive", "causal"])
def test_the_emulated_attention_is_torchs_up_to_bf16_rounding(mask, emulated_onednn_bf16):
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    kwargs: dict = {}
    if mask == "bool":
        kwargs["attn_mask"] = torch.rand(5, 5) > 0.3
        kwargs["attn_mask"][:, 0] = True  # no row fully masked
    elif mask == "additive":
        kwargs["attn_mask"] = torch.randn(5, 5)
    elif mask == "causal":
        kwargs["is_causal"] = True
    sdpa = torch.nn.functional.scaled_dot_product_attention
    reference = sdpa(q, k, v, **kwargs)
    with emulated_onednn_bf16():
        emulated = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
    assert torch.nn.functional.scaled_dot_product_attention is sdpa
    torch.testing.assert_close(emulated, reference, atol=3e-2, rtol=0)
    assert not torch.equal(emulated, reference)


@pytest.mark.skipif(not onednn_bf16_rounds(), reason="oneDNN computes exact fp32 under bf16-matmul on this CPU (a probe says)")
def test_the_emulation_matches_onednn_where_the_cpu_has_bf16(emulated_onednn_bf16):

    torch.manual_seed(2)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    image = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        with onednn_bf16_math():
            native = conv(image)
        with emulated_onednn_bf16():
            emulated = conv(image)
        fp32 = conv(image)
    # the two agree to fp32 accumulation order, far closer than either is to fp32
    assert float((native - emulated).abs().max()) < float((native - fp32).abs().max()) / 10
