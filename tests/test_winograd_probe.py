"""bench/winograd_probe.py: the Winograd convolution it times is the convolution it stands in for."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture
def bench(load_bench_script):
    return load_bench_script("winograd_probe")


def test_winograd_in_float64_is_the_convolution(bench):
    """In float64 F(4x4, 3x3) is exact algebra: it must agree with torch's direct convolution to
    float64 rounding, on a non-square input with different in and out channel counts."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 8, 12, generator=gen, dtype=torch.float64).to(memory_format=torch.channels_last)
    weight = torch.randn(7, 5, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(7, generator=gen, dtype=torch.float64)
    got = bench.winograd_conv(x, bench.transform_filters(weight), bias)
    torch.testing.assert_close(got, F.conv2d(x, weight, bias, padding=1), rtol=0, atol=1e-12)


def test_a_centred_delta_kernel_copies_its_input(bench):
    """Hand-computed: the kernel with a single 1 at its centre maps each channel to itself."""
    x = torch.arange(2 * 4 * 4, dtype=torch.float64).reshape(1, 2, 4, 4).to(memory_format=torch.channels_last)
    weight = torch.zeros(2, 2, 3, 3, dtype=torch.float64)
    weight[0, 0, 1, 1] = weight[1, 1, 1, 1] = 1
    got = bench.winograd_conv(x, bench.transform_filters(weight), torch.tensor([0.5, -1.0], dtype=torch.float64))
    torch.testing.assert_close(got, x + torch.tensor([0.5, -1.0], dtype=torch.float64).view(1, 2, 1, 1), rtol=0, atol=1e-12)


def test_probe_reports_float32_error_against_float64(bench):
    """The probe's error column is Winograd's fp32 error: small but above direct convolution's."""
    result = bench.probe(1, 16, 16, 8, repeats=1)
    assert 0 < result["error"] < 1e-4
    assert set(result) >= {"direct", "winograd", "products", "gflops"}
