"""``unclip img2img IMAGE PROMPT --strength S`` and ``unclip mix ITEM... --weights W...``: the
operations that start from images (docs/recipes.md, Operations; docs/latent.md).

Its own module so the generation commands stay short; it shares their options, output and
metadata helpers (:mod:`unclip_core.cli.generate_cmd`). Images are read and checked before the
recipe is loaded, so a wrong path costs nothing.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from unclip_core.cli.generate_cmd import _add_common, _metadata, _output_path, _pipeline, _write_results
from unclip_core.cli.limits import MAX_ITEMS, check_count, check_text
from unclip_core.errors import InputError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "img2img",
        help="redraw an image towards a caption (its noised version denoised; --strength: how far)",
        description="Noise IMAGE part of the way along the decoder's chain (a latent decoder's autoencoder "
        "encodes it first) and denoise it conditioned on PROMPT. --strength 0 keeps the image, 1 redraws it.",
    )
    p.add_argument("image", help="the image to start from")
    p.add_argument("prompt", help="the caption to move towards")
    p.add_argument("--strength", type=float, default=0.5, help="how much to redraw, in [0, 1] (default 0.5)")
    p.add_argument("-n", type=int, default=1, help="results to make; more than one also writes a grid")
    p.add_argument("--negative", default=None, metavar="TEXT", help="negative prompt")
    _add_common(p, "img2img.png")
    p.set_defaults(handler=run_img2img)

    m = sub.add_parser(
        "mix",
        help="one image from a weighted mix of images and captions (Kandinsky's interpolate)",
        description="Each ITEM is an image file (when such a file exists) or a caption; the image "
        "embeddings (an image's from the encoder, a caption's from the prior) are summed with --weights.",
    )
    m.add_argument("items", nargs="+", metavar="ITEM", help="image paths and captions")
    m.add_argument("--weights", type=float, nargs="+", required=True, metavar="W", help="one weight per item")
    _add_common(m, "mix.png")
    m.set_defaults(handler=run_mix)


def run_img2img(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    if not 0 <= args.strength <= 1:  # also refuses nan
        raise InputError(f"--strength must be a number in [0, 1] (0 keeps the image, 1 redraws it), got {args.strength}")
    from unclip_core.images import load_image  # heavy (torch): only when the command runs

    out = _output_path(args.out)
    load_image(args.image)  # a bad image fails before the models load
    pipeline = _pipeline(args)
    images = pipeline.img2img(args.image, args.prompt, args.strength, n=args.n, seed=args.seed, negative_prompt=args.negative)
    extra = {} if args.negative is None else {"negative": args.negative}
    meta = _metadata(args, pipeline, command="img2img", image=args.image, prompt=args.prompt, strength=args.strength,
                     n=args.n, **extra)
    _write_results(images, out, meta)
    return 0


def run_mix(args: argparse.Namespace) -> int:
    check_count(len(args.items), "how many ITEMs", MAX_ITEMS)
    if len(args.weights) != len(args.items):
        raise InputError(f"{len(args.items)} items but {len(args.weights)} --weights; give one weight per item")
    if not all(math.isfinite(w) for w in args.weights):
        raise InputError(f"--weights must be finite numbers, got {args.weights}")
    from unclip_core.images import load_image  # heavy (torch): only when the command runs

    items: list = []
    for item in args.items:
        check_text(item, "ITEM")
        if Path(item).is_file():
            load_image(item)  # a bad image fails before the models load
            items.append(Path(item))
        else:
            items.append(item)
    out = _output_path(args.out)
    pipeline = _pipeline(args)
    images = pipeline.mix(items, args.weights, seed=args.seed)
    meta = _metadata(args, pipeline, command="mix", items=list(args.items), weights=list(args.weights))
    _write_results(images, out, meta)
    return 0
