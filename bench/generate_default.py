"""How long the default model takes to generate, and whether bf16 autocast helps.

Runs the shipped ``shapes`` recipe in this process: a warm-up, then 4 images (the README's
promise: under 30 s on a 2-core CPU) in fp32, then the same in bf16 autocast; prints seconds
per stage and the bf16/fp32 ratio. Usage: ``python bench/generate_default.py [--repeats 2]``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast comparison")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    fp32 = load_pipeline("shapes")
    print(f"load: {time.perf_counter() - t0:.2f} s")
    fp32.generate(PROMPTS[:1])  # warm-up: first calls pay for allocation and oneDNN kernel choice
    results = {"fp32": timed(fp32, args.repeats)}
    print(f"4 images in {results['fp32']['total']:.1f} s (fp32; target < 30 s): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in results["fp32"].items() if k != "total"), flush=True)
    if args.no_bf16:
        return
    bf16 = load_pipeline("shapes", ["runtime.precision=bf16"])
    bf16.generate(PROMPTS[:1])
    results["bf16"] = timed(bf16, args.repeats)
    print(f"{'stage':<10} {'fp32 s':>8} {'bf16 s':>8} {'bf16/fp32':>10}")
    for stage in results["fp32"]:
        a, b = results["fp32"][stage], results["bf16"][stage]
        print(f"{stage:<10} {a:>8.2f} {b:>8.2f} {b / a:>10.2f}")


if __name__ == "__main__":
    main()
