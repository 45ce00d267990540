"""Shapes inpainting check: erase one object of a two-object scene and ask for it back.

For each scene: render a two-object shapes scene (training split, so no held-out pair) at the
pipeline's output size, mask one object's bounding box dilated by ``--dilate`` (unit
coordinates), inpaint with the scene's full caption, and judge the result with the shapes
checker (SHAPES.md). The kept object is pasted back exactly, so an exact match means the
erased object came back with the right colour and shape on the right side of the other.
Scenes whose dilated box would cut into the kept object are redrawn, so the known region
always holds all of it.

Each method runs on the same scenes, masks and seeds: RePaint with ``--recipe`` (any
decoder, training-free), and the trained inpainting decoder with ``--trained-recipe`` when
that recipe's weights exist (``unclip train train/shapes-inpaint-decoder`` writes them). The
untouched renders are judged too: the checker's ceiling on these scenes.

Usage: ``python bench/inpaint_shapes.py [--scenes 100] [--seed 0] [--threads 2] [--json]``.
At the defaults, about 2 s a scene per method on 2 free cores (~7 min for both methods).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unclip_core.errors import RecipeError
from unclip_core.recipe.assemble import load_pipeline
from unclip_plugins.shapes import Scene, ShapeObject, caption, check, render, sample_scene, score

TRAIN_COMMAND = "unclip train train/shapes-inpaint-decoder"


@dataclass(frozen=True)
class Case:
    """One scene, the index of its erased object, and the box repainted (unit coordinates)."""

    scene: Scene
    erased: int
    box: tuple[float, float, float, float]

    @property
    def caption(self) -> str:
        return caption(self.scene)


def dilated_box(obj: ShapeObject, margin: float) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of ``obj``'s bounding box grown by ``margin`` on each side."""
    half = obj.size / 2 + margin
    return obj.cx - half, obj.cy - half, obj.cx + half, obj.cy + half


def overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_cases(count: int, seed: int, margin: float) -> list[Case]:
    """``count`` two-object scenes, each with one object (chosen at random) to erase."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    while len(cases) < count:
        scene = sample_scene(rng, "train")
        if len(scene.objects) != 2:
            continue
        erased = int(rng.integers(2))
        box = dilated_box(scene.objects[erased], margin)
        if overlaps(box, dilated_box(scene.objects[1 - erased], 0.0)):
            continue
        cases.append(Case(scene, erased, box))
    return cases


def mask_image(box: tuple[float, float, float, float], size: int) -> Image.Image:
    """White (repaint) on every pixel whose square meets the box, black elsewhere."""
    edges = np.arange(size + 1) / size
    cols = (edges[:-1] < box[2]) & (edges[1:] > box[0])
    rows = (edges[:-1] < box[3]) & (edges[1:] > box[1])
    return Image.fromarray((rows[:, None] & cols[None, :]).astype(np.uint8) * 255, mode="L")


def load_if_trained(recipe: str, hint: str = "") -> tuple[Any, str | None]:
    """The recipe's pipeline, or ``None`` and why when the only problem is missing weights."""
    try:
        return load_pipeline(recipe), None
    except RecipeError as error:
        missing = [message for path, message in error.problems if path.endswith("weights") and message.startswith("file not found")]
        if missing and len(missing) == len(error.problems):
            return None, f"{recipe}: {missing[0]}{hint}"
        raise


def method_name(pipeline: Any, resample: int) -> str:
    if pipeline.decoder.declared.inpainting:
        return "trained inpainting decoder"
    return f"RePaint (resample {resample})"


def run_method(pipeline: Any, cases: list[Case], seed: int, resample: int, save: Path | None, label: str) -> dict[str, Any]:
    """Inpaint every case (seed ``seed + index``) and score the results."""
    size = pipeline.image_size
    results, started = [], time.perf_counter()
    for index, case in enumerate(cases):
        image, mask = render(case.scene, size), mask_image(case.box, size)
        (result,) = pipeline.inpaint(image, mask, case.caption, seed=seed + index, resample=resample)
        results.append(check(result, case.caption))
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            result.save(save / f"{index:04d}-{label}.png")
            if not (save / f"{index:04d}-input.png").exists():
                image.save(save / f"{index:04d}-input.png")
                mask.save(save / f"{index:04d}-mask.png")
    seconds = time.perf_counter() - started
    return {"figures": score(results), "seconds_per_scene": seconds / len(cases)}


def table(rows: list[dict[str, Any]]) -> str:
    columns = ("exact", "color", "shape", "count", "relation")
    lines = ["| method | recipe | scenes | " + " | ".join(columns) + " | s / scene |", "|---" * (len(columns) + 4) + "|"]
    for row in rows:
        figures = row["figures"]
        cells = " | ".join(f"{figures[c]:.3f}" if isinstance(figures.get(c), float) else "–" for c in columns)
        timing = f"{row['seconds_per_scene']:.2f}" if row.get("seconds_per_scene") is not None else "–"
        lines.append(f"| {row['method']} | {row['recipe']} | {figures['n']} | {cells} | {timing} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100, help="two-object scenes to inpaint (default 100)")
    parser.add_argument("--recipe", default="shapes", help="recipe run with RePaint (default: shapes)")
    parser.add_argument("--trained-recipe", default="shapes-inpaint",
                        help="recipe with the trained inpainting decoder, run when its weights exist (default: shapes-inpaint)")
    parser.add_argument("--seed", type=int, default=0, help="scene draw seed; scene i inpaints with seed + i")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--resample", type=int, default=1, help="RePaint resampling (default 1)")
    parser.add_argument("--dilate", type=float, default=0.04, help="margin added around the erased object's box, unit coordinates")
    parser.add_argument("--save", type=Path, default=None, help="write inputs, masks and results here")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        parser.error("--scenes must be at least 1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    cases = draw_cases(args.scenes, args.seed, args.dilate)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    pipelines = [(args.recipe, *load_if_trained(args.recipe))]
    if args.trained_recipe and args.trained_recipe != args.recipe:
        pipelines.append((args.trained_recipe, *load_if_trained(args.trained_recipe, f" (train it: {TRAIN_COMMAND})")))
    size = next((p.image_size for _, p, _ in pipelines if p is not None), 64)
    rows.append({"method": "checker on the originals", "recipe": "–", "seconds_per_scene": None,
                 "figures": score([check(render(case.scene, size), case.caption) for case in cases])})
    for recipe, pipeline, why in pipelines:
        if pipeline is None:
            skipped.append(why)
            continue
        torch.set_num_threads(args.threads)  # a recipe's runtime.threads may have changed it
        label = "trained" if pipeline.decoder.declared.inpainting else "repaint"
        result = run_method(pipeline, cases, args.seed, args.resample, args.save, label)
        rows.append({"method": method_name(pipeline, args.resample), "recipe": recipe, **result})
        if not args.json:
            print(f"{rows[-1]['method']}: exact {result['figures']['exact']:.3f}", flush=True)

    report = {"scenes": args.scenes, "seed": args.seed, "threads": args.threads, "dilate": args.dilate,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              "rows": rows, "skipped": skipped}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"\n{args.scenes} two-object scenes (seed {args.seed}), one object erased (box + {args.dilate}), "
              f"{args.threads} threads, {report['machine']}\n")
        print(table(rows))
        for why in skipped:
            print(f"\nskipped {why}")
    return report


if __name__ == "__main__":
    main()
