"""The unCLIP paper's conditioning ablations, reproduced on the shapes world: one command.

Every row uses the same decoder, decoder sampler and guidance, the same seeds and the prompt
sets of ``unclip eval shapes`` (70 seen one-object, 70 seen two-object, 70 held-out prompts;
eight of them drawn four times for diversity). Rows differ only in the image embedding the
decoder is given:

- ``caption-only``: none — the decoder reads its learned null embedding (what classifier-free
  dropout trained it on), so it draws from the caption alone: GLIDE-like.
- ``zero-embedding``: z_i set to the zero vector, the literal reading of "image embedding
  zeroed" (a vector the decoder never saw in training, kept as a contrast).
- ``text-embedding``: the CLIP *text* embedding z_t passed as if it were an image embedding.
- ``oracle``: CLIP's image embedding of a rendered scene the caption describes — a perfect
  prior; where it fails, the decoder is what fails.
- ``diffusion-prior-1`` / ``-2``: the shipped diffusion prior, best of 1 and of 2 by z_i·z_t.
- ``ar-prior-1`` / ``-2``: the autoregressive prior (slot file ``shapes-prior-ar.yaml``).
- ``decoder-best-of-2`` / ``-4``: the shipped prior, and each image the best of 2 or 4
  decoded draws by CLIP similarity to its caption (``decoder.candidates``).

Prior time is the prior stage's own wall time per image (0 where there is no prior).
``--base-only`` judges the decoder's 32×32 output (the upsampler sees no text and is the same
in every row, so it cannot change the ranking; it is the slowest stage, so this makes the run
about half as long). Writes a Markdown report (default ``docs/ablations.md``: a table and the
run's details between markers, the prose around them is kept) and prints the table.

Usage: ``python bench/ablations.py [--base-only] [--rows a,b,...] [--threads 2] [--write PATH]``.
About 1.2 min (Intel Xeon with AMX) to 3 min (AMD EPYC) per row base-only on 2 free cores; a decoder best-of-N row takes about N times as long (docs/ablations.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unclip_core.atomic import atomic_write
from unclip_core.evaluation import run_evaluation
from unclip_core.images import tensor_to_pil
from unclip_core.operations.classify import decode_best_of
from unclip_core.pipeline import Pipeline
from unclip_core.recipe.assemble import load_pipeline
from unclip_core.recipe.files import load_recipe
from unclip_core.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- ablation table: begin (written by bench/ablations.py) -->", "<!-- ablation table: end -->"


ROWS: dict[str, dict[str, Any]] = {
    "caption-only": {"label": "caption only (learned null z_i)", "source": "null", "overrides": []},
    "zero-embedding": {"label": "z_i = 0", "source": "zero", "overrides": []},
    "text-embedding": {"label": "z_t used as z_i", "source": "text", "overrides": []},
    "oracle": {"label": "oracle: z_i of a rendered scene of the caption", "source": "scene", "overrides": []},
    "diffusion-prior-1": {"label": "diffusion prior, best of 1", "source": "prior", "overrides": ["prior.candidates=1"]},
    "diffusion-prior-2": {"label": "diffusion prior, best of 2", "source": "prior", "overrides": ["prior.candidates=2"]},
    "ar-prior-1": {"label": "AR prior, best of 1", "source": "prior", "overrides": ["prior=shapes-prior-ar.yaml", "prior.candidates=1"]},
    "ar-prior-2": {"label": "AR prior, best of 2", "source": "prior", "overrides": ["prior=shapes-prior-ar.yaml", "prior.candidates=2"]},
    "decoder-best-of-2": {"label": "diffusion prior best of 2, decoder best of 2 (CLIP reranking)", "source": "prior",
                          "overrides": ["prior.candidates=2", "decoder.candidates=2"]},
    "decoder-best-of-4": {"label": "diffusion prior best of 2, decoder best of 4 (CLIP reranking)", "source": "prior",
                          "overrides": ["prior.candidates=2", "decoder.candidates=4"]},
}


def make_generate(pipeline: Pipeline, source: str, timing: dict[str, float], upsample: bool) -> Callable[[list[str], int, int], list[Image.Image]]:
    """``generate(prompts, n, seed)`` that feeds the decoder the row's image embedding.

    Mirrors :meth:`Pipeline.generate_tensors` (same generator, same order of draws) so the
    prior rows reproduce ``unclip eval shapes`` exactly; ``timing["prior_s"]`` accumulates the
    prior's wall time."""

    def generate(prompts: list[str], n: int, seed: int) -> list[Image.Image]:
        generator = pipeline.generator(seed)
        text = pipeline.encode_text(prompts).repeat_interleave(n)
        drop_image = False
        if source == "prior":
            started = time.perf_counter()
            image_embed = pipeline.sample_prior(text, generator)
            timing["prior_s"] += time.perf_counter() - started
        elif source == "text":
            image_embed = torch.nn.functional.normalize(text.embed.float(), dim=-1)
        elif source == "scene":  # a perfect prior: CLIP's embedding of a true picture, one per image
            image_embed = pipeline.encode_image(scene_pictures(prompts, n, seed))
        else:  # "zero" and "null": the values are zeros; "null" has the decoder ignore them
            image_embed = torch.zeros_like(text.embed, dtype=torch.float32)
            drop_image = source == "null"
        if drop_image:
            images = pipeline.decode(image_embed, text, generator, drop_image=True)
        else:  # the recipe's decoder.candidates: best of N by CLIP similarity, as generate does
            images = decode_best_of(pipeline, image_embed, text, generator)
        if upsample:
            images = pipeline.upsample(images, generator)
        return tensor_to_pil(images)

    return generate


def scene_pictures(prompts: list[str], n: int, seed: int) -> list[Image.Image]:
    """For each prompt, ``n`` rendered scenes it describes (placed as the training data places
    objects, from a generator seeded by ``seed``): the oracle row's source of z_i."""
    from unclip_plugins.shapes import parse_caption, place_objects, render

    rng = np.random.default_rng(seed)
    pictures = []
    for prompt in prompts:
        spec = parse_caption(prompt)
        pictures += [render(place_objects(spec.objects, spec.relation, rng), 64) for _ in range(n)]
    return pictures


def run_row(name: str, recipe: str, extra: list[str], args: argparse.Namespace) -> dict[str, Any]:
    row = ROWS[name]
    pipeline = load_pipeline(recipe, [*row["overrides"], *extra])
    torch.set_num_threads(args.threads)  # a recipe's runtime.threads may have changed it
    spec = default_registry().get("evaluation", "shapes")
    evaluation = spec.build(spec.config_model.model_validate({"failures_listed": 0}))
    timing = {"prior_s": 0.0}
    generate = make_generate(pipeline, row["source"], timing, upsample=not args.base_only)
    generate(["a red circle"], 1, 0)  # warm-up: allocation and kernel choice
    timing["prior_s"] = 0.0
    started = time.perf_counter()
    report = run_evaluation(generate, evaluation, seed=args.seed, batch_size=args.batch_size)
    images = report["run"]["images"]
    return {
        "row": name,
        "label": row["label"],
        "overrides": [*row["overrides"], *extra],
        "groups": report["groups"],
        "overall": report["overall"],
        "diversity": report["diversity"],
        "prior_ms_per_image": 1000 * timing["prior_s"] / images if row["source"] == "prior" else None,
        "total_s": time.perf_counter() - started,
        "digest": pipeline.recipe.digest if pipeline.recipe is not None else None,
    }


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def markdown(results: list[dict[str, Any]]) -> str:
    header = ("| z_i given to the decoder | exact: seen one | seen two | held-out | colour | shape | relation "
              "| diversity | prior ms/image |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        g = r["groups"]
        held = [g[k] for k in ("heldout_one", "heldout_two") if k in g]
        held_exact = sum(x["exact"] * x["n"] for x in held) / max(1, sum(x["n"] for x in held)) if held else None
        prior = "—" if r["prior_ms_per_image"] is None else f"{r['prior_ms_per_image']:.1f}"
        lines.append(
            f"| {r['label']} | {_pct(g.get('seen_one', {}).get('exact'))} | {_pct(g.get('seen_two', {}).get('exact'))} "
            f"| {_pct(held_exact)} | {_pct(r['overall']['color'])} | {_pct(r['overall']['shape'])} "
            f"| {_pct(r['overall']['relation'])} | {r['diversity']:.3f} | {prior} |"
        )
    return "\n".join(lines)


def write_report(path: Path, table: str, details: str) -> None:
    """Put the table between the markers of ``path`` (created if missing), atomically."""
    block = f"{BEGIN}\n{table}\n\n{details}\n{END}"
    text = path.read_text() if path.exists() else f"# Ablations\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="shapes", help="recipe file or shipped recipe name (default: shapes)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"rows to run, comma-separated (default: all of {', '.join(ROWS)})")
    parser.add_argument("--base-only", action="store_true", help="judge the decoder's output, skip the upsamplers")
    parser.add_argument("--seed", type=int, default=0, help="first seed (batch k uses seed + k), as unclip eval")
    parser.add_argument("--batch-size", type=int, default=32, help="images generated at once (default 32, as unclip eval)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--write", default=str(ROOT / "docs" / "ablations.md"), help="Markdown file to update ('-': none)")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument("overrides", nargs="*", help="recipe overrides applied to every row, e.g. decoder.guidance_scale=2")
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; known: {', '.join(ROWS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    registry = default_registry()
    for name in rows:  # every recipe (weights included) is validated before the long part starts
        load_recipe(args.recipe, [*ROWS[name]["overrides"], *args.overrides], registry)
    results = []
    for name in rows:
        result = run_row(name, args.recipe, list(args.overrides), args)
        results.append(result)
        print(f"{name}: seen one {_pct(result['groups']['seen_one']['exact'])}, seen two {_pct(result['groups']['seen_two']['exact'])}, "
              f"diversity {result['diversity']:.3f}, {result['total_s'] / 60:.1f} min", flush=True)
    table = markdown(results)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    details = (
        f"Command: `python bench/ablations.py{' --base-only' if args.base_only else ''}"
        f"{'' if args.rows == ','.join(ROWS) else ' --rows ' + args.rows}"
        f"{''.join(' ' + o for o in args.overrides)}` — recipe `{args.recipe}` (digest {results[0]['digest']}), "
        f"seed {args.seed}, batch {args.batch_size}, {args.threads} threads, {machine}, "
        f"{time.strftime('%Y-%m-%d')}. Images judged at "
        f"{'the decoder’s base size (no upsampler)' if args.base_only else 'the final size'}. "
        f"Exact match in %; colour/shape/relation over all 210 prompts; held-out mixes one- and two-object prompts."
    )
    print("\n" + table + "\n\n" + details)
    if args.write != "-":
        write_report(Path(args.write), table, details)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
