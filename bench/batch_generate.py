"""What batching lines buys ``unclip generate --prompts``: images/s drawing a prompt file one
line per model call (``--batch-size 1``: what one ``unclip generate PROMPT`` per line draws,
minus each process's start-up) against several lines per call, in this process.

Each run is the real command (``unclip generate --prompts FILE --out-dir DIR -q``, PNGs and
manifest written) into a fresh folder, with one pipeline loaded beforehand so load time is
not counted (``load_pipeline`` is wrapped to hand it out). Runs alternate between the batch
sizes, ``--repeats`` rounds, so a load change on a shared machine hits each alike; the best
round of each is kept and printed as images/s and as a ratio to batch size 1.
Usage: ``python bench/batch_generate.py [--lines 16] [--batch-sizes 1,4,8,16] [--repeats 2] [--set KEY=VALUE ...]``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from unclip_core.cli.main import main
from unclip_core.recipe import assemble

PROMPTS = ["a red circle", "a blue square above a yellow triangle", "a green square", "an orange circle below a purple square",
           "a purple triangle", "a yellow circle to the left of a red square", "a blue circle", "a green triangle above an orange square"]


def run(prompts: Path, batch_size: int, overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the manifest's path, once per run
            status = main(["generate", "--prompts", str(prompts), "--out-dir", out, "--batch-size", str(batch_size), "-q", *overrides])
        seconds = time.perf_counter() - started
        assert status == 0
    return seconds


def bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=16, help="prompt file lines, one image each")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--recipe", default="shapes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (repeatable)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    overrides = ["-r", args.recipe, *args.set]
    pipeline = assemble.load_pipeline(args.recipe, args.set)
    assemble_load = assemble.load_pipeline
    assemble.load_pipeline = lambda *a, **k: pipeline  # the command's own load: the one pipeline, already built
    with tempfile.TemporaryDirectory() as folder:
        prompts = Path(folder) / "prompts.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": PROMPTS[i % len(PROMPTS)], "seed": i}) + "\n" for i in range(args.lines)))
        run(prompts, max(sizes), overrides)  # warm-up: first-call kernel choices
        best = {size: float("inf") for size in sizes}
        for _ in range(args.repeats):
            for size in sizes:
                best[size] = min(best[size], run(prompts, size, overrides))
    assemble.load_pipeline = assemble_load
    print(f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"recipe {args.recipe} {' '.join(args.set)}, {args.lines} lines x 1 image, best of {args.repeats}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'batch size':>10} {'images/s':>9} {'vs 1':>6}")
    for size in sizes:
        print(f"{size:>10} {args.lines / best[size]:>9.3f} {best[sizes[0]] / best[size]:>5.2f}x")


if __name__ == "__main__":
    bench()
