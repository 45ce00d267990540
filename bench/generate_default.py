"""How long the default model takes to generate, and what the memory layout and bf16 change.

Runs the shipped ``shapes`` recipe in this process: a warm-up, then 4 images (the README's
promise: under 30 s on a 2-core CPU) as shipped (fp32, channels-last weights), then the same
with ``runtime.memory_format=contiguous`` (torch's default layout), in bf16 autocast and, on a
CPU where oneDNN really computes in bf16, in ``bf16-matmul`` (elsewhere its images are emulated); prints
seconds per stage, each variant's ratio to the default and the PSNR of its images against the
default's. ``--set KEY=VALUE`` (repeatable) applies a recipe override to every variant, e.g.
``--set decoder.guidance_scale=8`` to see what bf16 does to a trained model under strong
guidance.
Usage: ``python bench/generate_default.py [--repeats 2] [--no-bf16] [--set KEY=VALUE ...]``.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch

from bf16_emulation import emulated_onednn_bf16

from unclip_core.auto_precision import onednn_bf16_rounds
from unclip_core.recipe.assemble import load_pipeline

PROMPTS = ["a red circle", "a blue square above a yellow triangle", "a green square", "an orange circle below a purple square"]


def timed(pipeline, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` seconds for each stage and the whole generate call."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        generator = pipeline.generator(0)
        t0 = time.perf_counter()
        text = pipeline.encode_text(PROMPTS)
        t1 = time.perf_counter()
        z = pipeline.sample_prior(text, generator)
        t2 = time.perf_counter()
        base = pipeline.decode(z, text, generator)
        t3 = time.perf_counter()
        pipeline.upsample(base, generator)
        t4 = time.perf_counter()
        run = {"encode": t1 - t0, "prior": t2 - t1, "decoder": t3 - t2, "upsampler": t4 - t3, "total": t4 - t0}
        best = {k: min(v, best.get(k, v)) for k, v in run.items()}
    return best


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] against a reference, both read as [0, 1] images."""
    mse = float((((images.float() - reference.float()) * 0.5) ** 2).mean())
    return math.inf if mse == 0 else -10 * math.log10(mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast comparison")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override applied to every variant (repeatable)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads" + (f"; overrides {' '.join(args.set)}" if args.set else ""))
    t0 = time.perf_counter()
    default = load_pipeline("shapes", args.set)
    print(f"load: {time.perf_counter() - t0:.2f} s")
    default.generate(PROMPTS[:1])  # warm-up: first calls pay for allocation and oneDNN kernel choice
    results = {"fp32": timed(default, args.repeats)}
    print(f"4 images in {results['fp32']['total']:.1f} s (default: fp32, channels-last; target < 30 s): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in results["fp32"].items() if k != "total"), flush=True)
    reference = default.generate_tensors(PROMPTS)
    variants = {"contiguous": ["runtime.memory_format=contiguous"]}
    if not args.no_bf16:
        variants["bf16"] = ["runtime.precision=bf16"]
        if onednn_bf16_rounds():  # elsewhere oneDNN computes bf16-matmul in exact fp32: emulated below
            variants["bf16-matmul"] = ["runtime.precision=bf16-matmul"]
    closeness = {}
    for name, overrides in variants.items():
        pipeline = load_pipeline("shapes", [*args.set, *overrides])
        pipeline.generate(PROMPTS[:1])
        results[name] = timed(pipeline, args.repeats)
        images = pipeline.generate_tensors(PROMPTS)
        closeness[name] = f"{psnr(images, reference):.1f} dB (per image {', '.join(f'{psnr(a, b):.1f}' for a, b in zip(images, reference))})"
    header = "".join(f"{name + ' s':>14} {name + '/default':>18}" for name in variants)
    print(f"{'stage':<10} {'default s':>10}{header}")
    for stage, seconds in results["fp32"].items():
        row = "".join(f"{results[name][stage]:>14.2f} {results[name][stage] / seconds:>18.2f}" for name in variants)
        print(f"{stage:<10} {seconds:>10.2f}{row}")
    for name, text in closeness.items():
        print(f"PSNR of the {name} images against the default's: {text}")
    if not args.no_bf16 and not onednn_bf16_rounds():
        with emulated_onednn_bf16():
            images = default.generate_tensors(PROMPTS)
        print(f"PSNR of bf16-matmul's images, emulated (oneDNN computes exact fp32 on this CPU): {psnr(images, reference):.1f} dB")


if __name__ == "__main__":
    main()
