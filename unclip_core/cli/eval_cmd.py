"""``unclip eval NAME [-r RECIPE] [--prompts FILE] [--json] [--seed S] [-s KEY=VALUE] [--save DIR]``.

Generates an evaluation's prompt set with a recipe's pipeline and prints the evaluation's
figures: a table by default, the full report with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from unclip_core.errors import InputError, shorten
from unclip_core.output_paths import check_writable


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score a recipe's images with a registered evaluation, or score folders (eval folder DIR…)")
    p.add_argument("evaluation", help="registered evaluation name (see `unclip plugins`), or 'folder' to score folders "
                   "written by unclip generate --prompts")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides, e.g. decoder.guidance_scale=2")
    p.add_argument("-r", "--recipe", default=None, help="recipe file or shipped recipe name (default: shapes)")
    p.add_argument("--prompts", default=None, help="text file, one prompt per line (default: the evaluation's own set)")
    p.add_argument("-s", "--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="evaluation setting, e.g. -s prompts_per_group=20 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="first seed (batch k uses seed + k)")
    p.add_argument("--batch-size", type=int, default=32, help="images generated at once")
    p.add_argument("--save", default=None, help="also write every image to this folder")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--judge", action="append", default=None, metavar="NAME",
                   help="eval folder: evaluation to judge with (repeatable; 'none': CLIP score only; default: every one that can)")
    p.set_defaults(handler=run_eval)


def _settings(items: list[str]) -> dict[str, Any]:
    """``-s KEY=VALUE`` settings, values parsed as YAML within the recipes' limits."""
    from unclip_core.recipe.safe_yaml import YamlLimitError, describe_yaml_error, load_yaml

    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"evaluation setting {shorten(item)!r} is not KEY=VALUE")
        try:
            settings[key] = load_yaml(value)
        except (yaml.YAMLError, YamlLimitError) as exc:
            raise InputError(f"evaluation setting {shorten(item)!r}{describe_yaml_error(exc)}") from None
    return settings


def _read_prompts(path: str) -> tuple[list[str], list[int]]:
    """Non-blank, non-``#`` lines of ``path`` and their line numbers."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"prompts file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read prompts file {path}: {exc}") from None
    prompts, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            prompts.append(line.strip())
            lines.append(number)
    if not prompts:
        raise InputError(f"prompts file {path} holds no prompt (one per line)")
    return prompts, lines


def build_evaluation(name: str, settings: dict[str, Any]):
    from pydantic import ValidationError

    from unclip_core.registry import default_registry

    spec = default_registry().get("evaluation", name)
    try:
        config = spec.config_model.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"evaluation {name!r} settings: {problems}") from None
    return spec.build(config)


def run_eval(args: argparse.Namespace) -> int:
    if args.evaluation == FOLDER:
        return run_eval_folder(args)
    from unclip_core.cli.generate_cmd import _pipeline
    from unclip_core.evaluation import run_evaluation

    evaluation = build_evaluation(args.evaluation, _settings(args.setting))
    prompts = None
    if args.prompts is not None:
        prompts, lines = _read_prompts(args.prompts)
        try:
            evaluation.cases(prompts)
        except InputError as exc:
            index = getattr(exc, "index", None)
            if index is None:
                raise InputError(f"{args.prompts}: {exc}") from None
            raise InputError(f"{args.prompts}:{lines[index]}: {getattr(exc, 'detail', exc)}") from None
    save = check_writable(args.save, "--save folder", folder=True) if args.save is not None else None
    pipeline = _pipeline(args)
    pipeline.progress = None  # one bar for the whole run instead of one per stage
    total = sum(case.samples for case in evaluation.cases(prompts))
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"eval {args.evaluation}", unit="img", file=sys.stderr)
    collected: list[tuple[list[str], int, list]] = []

    def generate(batch: list[str], n: int, seed: int):
        images = pipeline.generate(batch, n=n, seed=seed)
        if save is not None:
            collected.append((batch, n, images))
        return images

    try:
        report = run_evaluation(generate, evaluation, prompts, seed=args.seed, batch_size=args.batch_size,
                                progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    resolved = pipeline.recipe
    report["recipe"] = {"source": str(resolved.source), "digest": resolved.digest} if resolved is not None else None
    if save is not None:
        _save_images(save, collected)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


FOLDER = "folder"
"""``unclip eval folder DIR…``: score folders of generated images (not an evaluation's name)."""


def run_eval_folder(args: argparse.Namespace) -> int:
    """CLIP score and judges' figures for each folder, all scored with one encoder."""
    from unclip_core.batch.scoring import clip_score, judge_reports, read_folder
    from unclip_core.cli.embed_cmd import encoder_slot
    from unclip_core.cli.generate_cmd import _OVERRIDE
    from unclip_core.recipe.assemble import build_component
    from unclip_core.registry import default_registry

    folders = [Path(item) for item in args.overrides if not _OVERRIDE.match(item)]
    overrides = [item for item in args.overrides if _OVERRIDE.match(item)]
    if not folders:
        raise InputError("give the folders to score: unclip eval folder DIR [DIR…]")
    judges = None if args.judge is None else [name for name in args.judge if name != "none"]
    read = [(folder, *read_folder(folder)) for folder in folders]  # every folder checked before the encoder loads
    recipe = args.recipe or read[0][1].get("recipe")
    if recipe is None:
        raise InputError(f"{folders[0]} does not record its recipe; give the encoder's recipe with -r")
    if args.recipe is None and not overrides:
        overrides = list(read[0][1].get("overrides") or [])
    encoder = build_component(encoder_slot(recipe, overrides, default_registry()))
    results = []
    for folder, settings, images in read:
        results.append({
            "folder": str(folder), "recipe": settings.get("recipe"), "recipe_digest": settings.get("recipe_digest"),
            "images": len(images), "lines": len({r["line"] for r, _ in images}),
            "clip_score": clip_score(encoder, images), "judges": judge_reports(images, judges),
        })
    report = {"encoder": {"recipe": str(recipe), "overrides": overrides}, "folders": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"CLIP score: 100 x max(cos, 0), encoder of {recipe}{' ' + ' '.join(overrides) if overrides else ''}")
    for result in results:
        print(f"{result['folder']}: {result['images']} images of {result['lines']} lines, recipe {result['recipe']} "
              f"(digest {result['recipe_digest']}), CLIP score {result['clip_score']:.2f}")
        for judge in result["judges"].values():
            judge["recipe"] = {"source": result["recipe"], "digest": result["recipe_digest"]}
            print(format_report(judge))
    return 0


def _save_images(folder: Path, collected: list[tuple[list[str], int, list]]) -> None:
    """Every image of the run into ``folder``, all or none."""
    from unclip_core.atomic import atomic_write_all
    from unclip_core.images import png_writer

    writes = []
    for prompts, n, images in collected:
        for j, image in enumerate(images):
            slug = prompts[j // n].replace(" ", "_")
            writes.append((folder / f"{len(writes):04d}-{slug}.png", png_writer(image)))
    atomic_write_all(writes)


def format_report(report: dict[str, Any]) -> str:
    """A table of the report's groups (any evaluation whose report has ``groups`` of
    accuracy figures), then its scalar figures."""
    lines = []
    recipe = report.get("recipe") or {}
    run = report.get("run", {})
    lines.append(f"{report.get('evaluation', 'evaluation')} on {recipe.get('source', '?')} "
                 f"(digest {recipe.get('digest', '?')}), seed {run.get('seed')}, "
                 f"{run.get('prompts')} prompts, {run.get('images')} images")
    groups = dict(report.get("groups", {}))
    if "overall" in report:
        groups["all"] = report["overall"]
    columns = ["exact", "color", "shape", "count", "relation"]
    lines.append(f"{'group':<12} {'n':>4} " + " ".join(f"{c:>8}" for c in columns))
    for name, figures in groups.items():
        cells = " ".join(f"{figures[c]:>8.3f}" if isinstance(figures.get(c), float) else f"{'-':>8}" for c in columns)
        lines.append(f"{name:<12} {figures.get('n', ''):>4} {cells}")
    for key, value in report.items():
        if key not in ("groups", "overall", "run", "recipe", "evaluation", "failures") and not isinstance(value, (dict, list)):
            lines.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return "\n".join(lines)
