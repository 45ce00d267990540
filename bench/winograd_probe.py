"""Could a Winograd convolution find the fp32 speed oneDNN's direct convolution leaves?

Issue 5 asks for Karlo ≥ 2× faster than diffusers' fp32 on the medium config; on a CPU without
bf16 units that would have to come from fp32 itself, and most of the time is in 3 × 3
convolutions that oneDNN already runs near this CPU's fp32 peak (docs/benchmarks.md). Winograd's
F(4×4, 3×3) algorithm computes a 3 × 3 convolution with 4× fewer multiplications: each 6 × 6
input tile is transformed (adds only), the 36 transformed positions become 36 independent matrix
products over channels, and each product tile is transformed back to a 4 × 4 output tile.

This script times, for the convolution shapes of the medium config and of Karlo's real models
(channels-last, stride 1, padding 1, as unclip runs them), in one process:

- ``direct``: ``F.conv2d`` (oneDNN), the reference every ratio is against;
- ``winograd``: F(4×4, 3×3) with the transforms written as torch ops on strided views — what
  can be had without a compiled kernel;
- ``products only``: the 36 batched matrix products alone, i.e. Winograd with transforms that
  cost nothing — the ceiling a fused C++ transform kernel could approach.

It also prints each Winograd result's largest difference from a float64 reference convolution.
Usage: ``python bench/winograd_probe.py [--repeats 5] [--sizes medium,real]``.
"""
from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

# Lavin & Gray (2016), F(4x4, 3x3) with interpolation points 0, ±1, ±2 and infinity.
G = torch.tensor(
    [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
    dtype=torch.float64,
)
"""Filter transform: a 3 x 3 kernel becomes the 6 x 6 ``G k G^T``."""

SHAPES = {
    # (batch, in channels, out channels, side): the medium config's 3x3 convolutions
    "medium": [(4, 64, 64, 64), (4, 128, 128, 32), (4, 256, 256, 16), (1, 32, 32, 256), (1, 64, 64, 128), (1, 128, 128, 64)],
    # Karlo's real decoder (guided batch 2, 64 px) and super-resolution (batch 1, 256 px) levels
    "real": [(2, 320, 320, 64), (2, 640, 640, 32), (2, 960, 960, 16), (2, 1280, 1280, 8),
             (1, 320, 320, 256), (1, 640, 640, 128), (1, 960, 960, 64), (1, 1280, 1280, 32)],
}


def transform_filters(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3) kernels to the (36, in, out) matrices the 36 products multiply by."""
    g = G.to(weight.dtype)
    u = torch.einsum("ai,ocij,bj->abco", g, weight, g)
    return u.reshape(36, weight.shape[1], weight.shape[0]).contiguous()


def _input_transform(d: list[torch.Tensor], out: torch.Tensor) -> None:
    """``B^T d`` along one axis: six strided slices in, six rows of ``out`` written, adds only."""
    d0, d1, d2, d3, d4, d5 = d
    torch.add(d4, d2, alpha=-4, out=out[1])
    t = torch.add(d3, d1, alpha=-4)
    torch.sub(out[1], t, out=out[2])
    out[1].add_(t)
    torch.sub(d4, d2, out=out[3])
    t = torch.sub(d3, d1).mul_(2)
    torch.sub(out[3], t, out=out[4])
    out[3].add_(t)
    torch.add(d4, d2, alpha=-5, out=out[0]).add_(d0, alpha=4)
    torch.add(d5, d3, alpha=-5, out=out[5]).add_(d1, alpha=4)


def _output_transform(m: list[torch.Tensor], out: list[torch.Tensor]) -> None:
    """``A^T m`` along one axis: six slices in, four outputs written."""
    m0, m1, m2, m3, m4, m5 = m
    a, b = m1 + m2, m1 - m2
    c, e = m3 + m4, m3 - m4
    torch.add(a, c, out=out[0]).add_(m0)
    torch.add(b, e, alpha=2, out=out[1])
    torch.add(a, c, alpha=4, out=out[2])
    torch.add(b, e, alpha=8, out=out[3]).add_(m5)


def winograd_conv(x: torch.Tensor, filters: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """3 x 3, stride 1, padding 1 convolution of channels-last ``x`` (sides a multiple of 4)."""
    n, c, h, w = x.shape
    th, tw = h // 4, w // 4
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (n, h+2, w+2, c), contiguous
    rows = x.new_empty(6, n, th, w + 2, c)
    _input_transform([padded[:, i:i + 4 * th:4] for i in range(6)], rows)
    v = x.new_empty(6, 6, n, th, tw, c)
    for a in range(6):
        _input_transform([rows[a][:, :, j:j + 4 * tw:4] for j in range(6)], v[a])
    k = filters.shape[2]
    m = torch.bmm(v.view(36, n * th * tw, c), filters).view(6, 6, n, th, tw, k)
    cols = x.new_empty(4, 6, n, th, tw, k)
    _output_transform([m[i] for i in range(6)], list(cols))
    y = x.new_empty(n, th, 4, tw, 4, k)
    for i in range(4):
        _output_transform([cols[i][j] for j in range(6)], [y[:, :, i, :, j] for j in range(4)])
    return (y.view(n, h, w, k) + bias).permute(0, 3, 1, 2)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run round-robin so that the machine's drift (this is a
    shared VM) falls on all of them alike; one untimed warm-up round first."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def probe(batch: int, cin: int, cout: int, side: int, repeats: int) -> dict[str, float]:
    """Seconds of the three ways, Winograd's largest error, and the direct convolution's GFLOP/s."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cin, side, side, generator=gen).to(memory_format=torch.channels_last)
    weight = torch.randn(cout, cin, 3, 3, generator=gen) / (9 * cin) ** 0.5
    bias = torch.randn(cout, generator=gen)
    filters = transform_filters(weight.double()).float()
    reference = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    weight = weight.to(memory_format=torch.channels_last)
    products = torch.randn(36, batch * (side // 4) ** 2, cin, generator=gen)
    seconds = interleaved_medians({
        "direct": lambda: F.conv2d(x, weight, bias, padding=1),
        "winograd": lambda: winograd_conv(x, filters, bias),
        "products": lambda: torch.bmm(products, filters),
    }, repeats)
    return dict(
        **seconds,
        error=(winograd_conv(x, filters, bias).double() - reference).abs().max().item(),
        direct_error=(F.conv2d(x, weight, bias, padding=1).double() - reference).abs().max().item(),
        gflops=2 * 9 * cin * cout * batch * side * side / seconds["direct"] / 1e9,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="medium,real", help="any of " + ", ".join(SHAPES))
    args = parser.parse_args()
    unknown = [size for size in args.sizes.split(",") if size not in SHAPES]
    if unknown:
        parser.error(f"--sizes: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(SHAPES)}")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("shape (batch, in, out, side) | direct ms (GFLOP/s) | winograd / direct | products only / direct | max error: winograd, direct")
    for size in args.sizes.split(","):
        print(f"-- {size}")
        for shape in SHAPES[size]:
            r = probe(*shape, repeats=args.repeats)
            print(f"{shape} | {r['direct'] * 1e3:.1f} ({r['gflops']:.0f}) | {r['winograd'] / r['direct']:.2f} | "
                  f"{r['products'] / r['direct']:.2f} | {r['error']:.1e}, {r['direct_error']:.1e}", flush=True)


if __name__ == "__main__":
    main()
