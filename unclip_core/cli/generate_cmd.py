"""``unclip generate|vary|interpolate|textdiff|classify``: the pipeline's operations as commands.

``unclip generate PROMPT [-r RECIPE] [-n N] [--seed S] [-o OUT.png] [key=value …]`` is a public
contract. Every PNG carries prompt, seed, recipe, overrides and the recipe digest, so
``unclip generate --from OUT.png`` reproduces it exactly.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

from unclip_core.cli.limits import COUNT_LIMITS, MAX_THETAS, check_count, check_seed, check_text
from unclip_core.errors import InputError, shorten
from unclip_core.output_paths import check_writable


_OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=")
"""What a KEY=VALUE recipe override looks like (a caption does not start like this)."""


def _add_common(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("-r", "--recipe", default=None, help="recipe file or shipped recipe name (default: shapes)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    p.add_argument("-o", "--out", default=default_out, help=f"output file (default: {default_out})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides, e.g. decoder.guidance_scale=2")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("generate", help="generate images from a caption")
    g.add_argument("prompt", nargs="?", help="the caption")
    g.add_argument("-n", type=int, default=1, help="images to generate; more than one also writes a grid")
    g.add_argument("--from", dest="from_png", default=None, help="reproduce a PNG written by unclip generate")
    g.add_argument("--negative", default=None, metavar="TEXT",
                   help="negative prompt: what guidance steers away from (docs/recipes.md, Operations)")
    g.add_argument("--prompts", default=None, metavar="FILE",
                   help="generate for every line of FILE (text, or .jsonl with prompt/seed/n/negative) into --out-dir")
    g.add_argument("--out-dir", default=None, metavar="DIR", help="with --prompts: folder of images and manifest.jsonl (resumable)")
    g.add_argument("--batch-size", type=int, default=8, help="with --prompts: images drawn at once, across lines (default: 8)")
    g.add_argument("--format", choices=["png", "webdataset"], default="png", help="with --prompts: PNG files, or tar shards")
    g.add_argument("--shard-size", type=int, default=1000, help="with --format webdataset: images per shard")
    g.add_argument("--force", action="store_true", help="with --prompts: redraw in an --out-dir made with other settings")
    _add_common(g, "unclip.png")
    g.set_defaults(handler=run_generate)

    v = sub.add_parser("vary", help="variations of an image (same CLIP image embedding)")
    v.add_argument("image")
    v.add_argument("-n", type=int, default=4, help="number of variations")
    v.add_argument("--eta", type=float, default=1.0, help="DDIM eta: 0 = deterministic, 1 = DDPM-like")
    _add_common(v, "variations.png")
    v.set_defaults(handler=run_vary)

    i = sub.add_parser("interpolate", help="slerp between two images' embeddings; writes a grid and a GIF")
    i.add_argument("image_a")
    i.add_argument("image_b")
    i.add_argument("--steps", type=int, default=5)
    i.add_argument("--x-t", dest="x_t", choices=["fixed", "slerp"], default="fixed", help="decoder latent along the path")
    _add_common(i, "interpolation.png")
    i.set_defaults(handler=run_interpolate)

    t = sub.add_parser("textdiff", help="edit an image towards a caption change; writes a grid and a GIF")
    t.add_argument("image")
    t.add_argument("from_caption", help="a caption describing the image as it is")
    t.add_argument("to_caption", help="the caption to move towards")
    t.add_argument("--thetas", default="0,0.1,0.2,0.3,0.4,0.5", help="comma-separated slerp angles in [0, 1]")
    _add_common(t, "textdiff.png")
    t.set_defaults(handler=run_textdiff)

    c = sub.add_parser("classify", help="zero-shot classification of an image with the recipe's encoder")
    c.add_argument("image")
    c.add_argument("labels", nargs="+", help="candidate captions")
    c.add_argument("-r", "--recipe", default=None)
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=run_classify, overrides=[], quiet=True)


def _pipeline(args: argparse.Namespace):
    from unclip_core.recipe.assemble import load_pipeline

    pipeline = load_pipeline(args.recipe, args.overrides)
    if not args.quiet and sys.stderr.isatty():
        from tqdm.auto import tqdm

        pipeline.progress = lambda stage, total: tqdm(total=total or None, desc=stage, leave=False, file=sys.stderr)
    return pipeline


def _output_path(out: str | Path) -> Path:
    """The checked output path. Called before any work, so a wrong name costs nothing and
    leaves no file behind."""
    path = Path(out)
    if path.suffix.lower() != ".png":
        raise InputError(f"output must be a .png file (the settings travel in its metadata), got {out}")
    if path.is_dir():
        raise InputError(f"output {out} is a folder; give a file name ending in .png")
    return check_writable(path)


def _write_results(images: list, out: Path, metadata: dict[str, Any], gif: bool = False) -> None:
    """One image: ``out``. Several: a grid at ``out``, each image beside it as ``out-<i>.png``
    and, with ``gif``, an animation ``out.gif``. Every path is checked before the first is
    written, and all are written or none (a full disk at the third leaves none of them)."""
    from unclip_core.atomic import atomic_write_all
    from unclip_core.images import gif_writer, make_grid, png_writer

    if len(images) == 1:
        writes = [(out, png_writer(images[0], metadata))]
    else:
        singles = [out.with_name(f"{out.stem}-{index}.png") for index in range(len(images))]
        animation = out.with_suffix(".gif") if gif else None
        for path in [*singles, *([animation] if animation else [])]:
            check_writable(path)
        writes = [(out, png_writer(make_grid(images), metadata))]
        writes += [(path, png_writer(image, {**metadata, "index": index})) for index, (image, path) in enumerate(zip(images, singles))]
        if animation is not None:
            writes.append((animation, gif_writer(images)))
    for path in atomic_write_all(writes):
        print(path)


def _metadata(args: argparse.Namespace, pipeline, **extra: Any) -> dict[str, Any]:
    from unclip_core import __version__

    resolved = pipeline.recipe
    return {
        "recipe": str(resolved.source) if resolved is not None else None,
        "recipe_digest": resolved.digest if resolved is not None else None,
        "overrides": list(args.overrides),
        "seed": args.seed,
        "precision": pipeline.settings.precision,  # what `runtime.precision: auto` picked here
        "unclip_version": __version__,
        **extra,
    }


def run_generate(args: argparse.Namespace) -> int:
    if args.prompts is not None or args.out_dir is not None:
        return _generate_from_file(args)
    if args.from_png:
        if args.prompt is not None and _OVERRIDE.match(args.prompt):
            # argparse fills the optional PROMPT first: with --from it is the first override
            args.overrides, args.prompt = [args.prompt, *args.overrides], None
        if args.prompt is not None:
            raise InputError("give either a PROMPT or --from IMAGE.png, not both")
        return _regenerate(args)
    if args.prompt is None:
        raise InputError("give a PROMPT (or --from IMAGE.png to reproduce an image)")
    if _OVERRIDE.match(args.prompt):  # argparse fills PROMPT first, so the caption was left out
        raise InputError(f"no PROMPT given: {shorten(args.prompt)!r} is a recipe override; put the caption first, in quotes")
    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    out = _output_path(args.out)
    pipeline = _pipeline(args)
    images = pipeline.generate([args.prompt], n=args.n, seed=args.seed, negative_prompt=args.negative)
    extra = {} if args.negative is None else {"negative": args.negative}
    _write_results(images, out, _metadata(args, pipeline, command="generate", prompt=args.prompt, n=args.n, **extra))
    return 0


def _generate_from_file(args: argparse.Namespace) -> int:
    """``--prompts FILE --out-dir DIR``: unclip_core.batch (docs/batch.md)."""
    from unclip_core.batch.runner import BatchJob, run_batch

    if args.prompt is not None and _OVERRIDE.match(args.prompt):  # argparse fills PROMPT first
        args.overrides, args.prompt = [args.prompt, *args.overrides], None
    if args.prompts is None or args.out_dir is None:
        raise InputError("--prompts FILE and --out-dir DIR go together: give both")
    if args.prompt is not None or args.from_png:
        raise InputError("give either a PROMPT, --from IMAGE.png or --prompts FILE, not several")
    if args.out != "unclip.png":
        raise InputError("-o names one output file; with --prompts the images go to --out-dir")
    job = BatchJob(args.prompts, args.out_dir, n=args.n, seed=args.seed, batch_size=args.batch_size, format=args.format,
                   shard_size=args.shard_size, force=args.force, quiet=args.quiet, recipe=args.recipe, overrides=list(args.overrides))
    outcome = run_batch(job, lambda: _pipeline(args))
    if outcome.main:
        if not args.quiet:
            rate = outcome.images_drawn / outcome.seconds if outcome.seconds > 0 else 0.0
            print(f"unclip: drew {outcome.images_drawn} images in {outcome.seconds:.1f} s ({rate:.2f} img/s); "
                  f"{outcome.lines_already_done} of {outcome.lines} lines were already done", file=sys.stderr)
        print(outcome.out_dir / "manifest.jsonl")
    return 0


def _keep_recorded_precision(pipeline, meta: dict[str, Any], source: str, extra_overrides: list[str]) -> None:
    """Redraw in the precision the image was drawn in: ``runtime.precision: auto`` may pick
    otherwise on this machine (bf16 images differ from fp32 ones by rounding). An override of
    ``runtime.precision`` given now wins."""
    from unclip_core.precision import PRECISIONS

    recorded = meta.get("precision")
    if recorded not in PRECISIONS or recorded == pipeline.settings.precision:
        return
    from unclip_core.recipe.overrides import parse_override

    if any(parse_override(o)[0] == ["runtime", "precision"] for o in extra_overrides):
        return
    chosen = pipeline.settings.precision
    pipeline.settings = dataclasses.replace(pipeline.settings, precision=recorded)
    print(f"unclip: {source} was drawn in {recorded}; redrawing it in {recorded}, not {chosen}", file=sys.stderr)


def _checked_settings(meta: Any, source: str) -> dict[str, Any]:
    """The settings a PNG records, checked before they are used: a file edited by hand (or by
    another program) gets one line naming the PNG and the setting, not a traceback."""
    if not isinstance(meta, dict):
        raise InputError(f"{source}: its unclip settings are not a JSON object")
    if meta.get("command") != "generate":
        raise InputError(f"{source} was not written by `unclip generate`")
    missing = [key for key in ("recipe", "prompt", "seed") if meta.get(key) is None]
    if missing:
        raise InputError(f"{source}: its unclip settings lack {', '.join(missing)}")
    expected = {"recipe": str, "prompt": str, "seed": int, "n": int, "index": int, "negative": str}
    for key, kind in expected.items():
        value = meta.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise InputError(f"{source}: its unclip setting {key!r} should be {kind.__name__}, got {value!r}")
    overrides = meta.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise InputError(f"{source}: its unclip setting 'overrides' should be a list of KEY=VALUE texts, got {overrides!r}")
    if meta.get("n", 1) < 1:
        raise InputError(f"{source}: its unclip setting 'n' should be at least 1, got {meta['n']}")
    check_seed(meta["seed"], f"{source}: its unclip setting 'seed'")
    check_count(meta.get("n", 1), f"{source}: its unclip setting 'n'", COUNT_LIMITS["n"][1])
    check_text(meta["prompt"], f"{source}: its unclip setting 'prompt'")
    if meta.get("negative") is not None:
        check_text(meta["negative"], f"{source}: its unclip setting 'negative'")
    return meta


def _regenerate(args: argparse.Namespace) -> int:
    from unclip_core.images import read_png_metadata, save_png

    default_out = Path(args.from_png).with_name(Path(args.from_png).stem + "-again.png")
    out = _output_path(args.out if args.out != "unclip.png" else default_out)
    meta = _checked_settings(read_png_metadata(args.from_png), args.from_png)
    extra_overrides = list(args.overrides)
    args.recipe = meta["recipe"]
    args.overrides = list(meta.get("overrides") or []) + extra_overrides
    args.seed = meta["seed"]
    pipeline = _pipeline(args)
    if not extra_overrides and pipeline.recipe.digest != meta.get("recipe_digest"):
        print(
            f"unclip: warning: recipe {args.recipe} changed since {args.from_png} was made; the image may differ",
            file=sys.stderr,
        )
    _keep_recorded_precision(pipeline, meta, args.from_png, extra_overrides)
    n = meta.get("n", 1)
    images = pipeline.generate([meta["prompt"]], n=n, seed=args.seed, negative_prompt=meta.get("negative"))
    index = meta.get("index")
    if index is not None and not 0 <= index < n:
        raise InputError(f"{args.from_png}: its settings name image {index} of {n}")
    # The copy records what made *it*: extra overrides given now are part of that.
    meta = {**meta, "overrides": args.overrides, "recipe_digest": pipeline.recipe.digest}
    if index is None and n > 1:
        from unclip_core.images import make_grid

        image = make_grid(images)
    else:
        image = images[int(index or 0)]
    save_png(image, out, meta)
    print(out)
    return 0


def run_vary(args: argparse.Namespace) -> int:
    if not 0 <= args.eta <= 1:  # also refuses nan
        raise InputError(f"--eta must be a number in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {args.eta}")
    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    out = _output_path(args.out)
    pipeline = _pipeline(args)
    images = pipeline.variations(args.image, n=args.n, seed=args.seed, eta=args.eta)
    _write_results(images, out, _metadata(args, pipeline, command="vary", image=args.image, eta=args.eta))
    return 0


def run_interpolate(args: argparse.Namespace) -> int:
    out = _output_path(args.out)
    pipeline = _pipeline(args)
    images = pipeline.interpolate(args.image_a, args.image_b, steps=args.steps, x_T=args.x_t, seed=args.seed)
    meta = _metadata(args, pipeline, command="interpolate", images=[args.image_a, args.image_b], x_T=args.x_t)
    _write_results(images, out, meta, gif=True)
    return 0


def run_textdiff(args: argparse.Namespace) -> int:
    items = args.thetas.split(",")
    if any(not item.strip() for item in items):
        raise InputError(f"--thetas has an empty item: {args.thetas!r}; give comma-separated numbers in [0, 1]")
    try:
        thetas = [float(x) for x in items]
    except ValueError:
        raise InputError(f"--thetas must be comma-separated numbers, got {args.thetas!r}") from None
    if not thetas or any(not 0 <= t <= 1 for t in thetas):
        raise InputError("--thetas must be numbers in [0, 1]")
    check_count(len(thetas), "--thetas (how many)", MAX_THETAS)
    out = _output_path(args.out)
    pipeline = _pipeline(args)
    images = pipeline.text_diff(args.image, args.from_caption, args.to_caption, thetas=thetas, seed=args.seed)
    meta = _metadata(
        args, pipeline, command="textdiff", image=args.image, captions=[args.from_caption, args.to_caption], thetas=thetas
    )
    _write_results(images, out, meta, gif=True)
    return 0


def run_classify(args: argparse.Namespace) -> int:
    pipeline = _pipeline(args)
    scores = pipeline.classify(args.image, args.labels)
    if args.json:
        print(json.dumps(scores, indent=2))  # ASCII: non-ASCII labels as \u escapes
    else:
        for label, p in sorted(scores.items(), key=lambda kv: -kv[1]):
            print(_printable(f"{p:6.1%}  {label}"))
    return 0


def _printable(text: str) -> str:
    """``text`` as stdout's encoding can write it: a label in a script the terminal cannot
    show (``LC_ALL=C``: ASCII) is printed with ``\\x`` escapes rather than crashing."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return text.encode(encoding, errors="backslashreplace").decode(encoding)
