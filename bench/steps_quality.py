"""Steps against quality for the decoder's sampler: exact match and time at 5 to 100 steps.

For a recipe (default: the shipped ``shapes``), the shapes evaluation
(:func:`unclip_core.evaluation.run_evaluation` with the ``shapes`` evaluation) of a prompt
subset — by default 40 prompts of seen colour–shape pairs, 16 one-object and 24 two-object
(the training mixture's 40/60) — with the decoder's sampler replaced by DDPM, DDIM and
DPM-Solver++ (each with its default settings) at 5, 10, 25, 50 and 100 steps. The prior and
the upsamplers keep the recipe's settings, and batch ``k`` uses seed ``seed + k`` in every
row, so the prior draws the same image embeddings each time: rows differ only in the
decoder's sampler. Time is the decoder's own (seconds per image, inside its sampler) and the
whole generation's; a warm-up call comes first.

Prints a Markdown table for docs/benchmarks.md (``--json``: every figure).
Usage: ``python bench/steps_quality.py [--prompts 40] [--threads 2] [--json]``. At the
defaults (15 runs of 40 images) about 20–25 min on 2 free cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import torch

from unclip_core.evaluation import run_evaluation
from unclip_core.recipe.assemble import load_pipeline
from unclip_core.registry import default_registry
from unclip_plugins.shapes import prompt_set

STEPS = (5, 10, 25, 50, 100)
SAMPLERS = ("ddpm", "ddim", "dpm-solver++")
ONE_OBJECT_SHARE = 0.4


class TimedSampler:
    """A sampler that adds the seconds spent in ``sample`` to ``seconds`` (all else passes through)."""

    def __init__(self, inner: Any):
        self.inner, self.seconds = inner, 0.0

    def sample(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        started = time.perf_counter()
        try:
            return self.inner.sample(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def seen_prompts(count: int, seed: int) -> list[str]:
    """``count`` prompts of seen pairs: 40% one-object, 60% two-object."""
    one = round(ONE_OBJECT_SHARE * count)
    return prompt_set("seen_one", one, seed) + prompt_set("seen_two", count - one, seed)


def build_sampler(name: str, steps: int) -> Any:
    spec = default_registry().get("sampler", name)
    return spec.build(spec.config_model.model_validate({"steps": steps}))


def evaluate(pipeline: Any, sampler: Any, prompts: list[str], seed: int, batch_size: int) -> dict[str, Any]:
    """The shapes report for ``prompts`` with ``sampler`` in the decoder slot, plus timings."""
    spec = default_registry().get("evaluation", "shapes")
    evaluation = spec.build(spec.config_model.model_validate({"diversity_prompts": 0, "failures_listed": 0}))
    timed = TimedSampler(sampler)
    original = pipeline.decoder_sampler
    pipeline.decoder_sampler = timed
    try:
        started = time.perf_counter()
        report = run_evaluation(lambda batch, n, s: pipeline.generate(batch, n=n, seed=s), evaluation, prompts,
                                seed=seed, batch_size=batch_size)
        total = time.perf_counter() - started
    finally:
        pipeline.decoder_sampler = original
    images = report["run"]["images"]
    return {"overall": report["overall"], "groups": report["groups"],
            "decoder_s_per_image": timed.seconds / images, "total_s_per_image": total / images}


def markdown(results: list[dict[str, Any]], samplers: list[str], steps: list[int]) -> str:
    """Rows: decoder steps; per sampler, exact match and the decoder's seconds per image."""
    by_key = {(r["sampler"], r["steps"]): r for r in results}
    header = "| decoder steps | " + " | ".join(f"{s} exact | {s} s/img" for s in samplers) + " |"
    lines = [header, "|---" * (1 + 2 * len(samplers)) + "|"]
    for n in steps:
        cells = []
        for s in samplers:
            r = by_key[(s, n)]
            cells.append(f"{r['overall']['exact']:.3f} | {r['decoder_s_per_image']:.3f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="shapes", help="recipe file or shipped recipe name (default: shapes)")
    parser.add_argument("--prompts", type=int, default=40, help="seen prompts, 40%% one-object (default 40)")
    parser.add_argument("--steps", default=",".join(map(str, STEPS)), help="decoder step counts, comma-separated")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="decoder samplers, comma-separated registry names")
    parser.add_argument("--seed", type=int, default=0, help="prompt draw and generation seed (batch k: seed + k)")
    parser.add_argument("--batch-size", type=int, default=40, help="images generated at once (default 40)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.prompts < 1:
        parser.error("--prompts must be at least 1")
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    pipeline = load_pipeline(args.recipe)
    torch.set_num_threads(args.threads)  # a recipe's runtime.threads may have changed it
    prompts = seen_prompts(args.prompts, args.seed)
    for name in samplers:  # every setting is checked before the long part starts
        build_sampler(name, max(steps))
    pipeline.generate(prompts[:1], seed=args.seed)  # warm-up: allocation and kernel choice
    results = []
    for n in steps:
        for name in samplers:
            result = {"sampler": name, "steps": n, **evaluate(pipeline, build_sampler(name, n), prompts, args.seed, args.batch_size)}
            results.append(result)
            if not args.json:
                print(f"{name:>13} {n:>4} steps: exact {result['overall']['exact']:.3f}, "
                      f"decoder {result['decoder_s_per_image']:.3f} s/img, total {result['total_s_per_image']:.3f} s/img", flush=True)

    report = {"recipe": str(pipeline.recipe.source) if pipeline.recipe is not None else args.recipe,
              "digest": pipeline.recipe.digest if pipeline.recipe is not None else None,
              "prompts": len(prompts), "seed": args.seed, "threads": args.threads,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"\n{args.recipe} (digest {report['digest']}), {len(prompts)} seen prompts "
              f"({round(ONE_OBJECT_SHARE * len(prompts))} one-object), seed {args.seed}, {args.threads} threads, "
              f"{report['machine']}; prior and upsamplers as the recipe says\n")
        print(markdown(results, samplers, steps))
    return report


if __name__ == "__main__":
    main()
