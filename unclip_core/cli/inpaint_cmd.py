"""``unclip inpaint IMAGE MASK PROMPT``: repaint the white part of a mask, with a trained
inpainting decoder when the recipe has one, else training-free (RePaint).

Its own module so the generation commands stay short; it shares their options, output and
metadata helpers (:mod:`unclip_core.cli.generate_cmd`). The image and mask are read and
checked before the recipe is loaded, so a wrong mask costs nothing.
"""
from __future__ import annotations

import argparse

from unclip_core.cli.generate_cmd import _add_common, _metadata, _output_path, _pipeline, _write_results
from unclip_core.errors import InputError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inpaint",
        help="repaint the white part of a mask to fit a caption (a trained inpainting decoder, or RePaint with any)",
        description="Repaint the region of IMAGE that MASK marks white so that it fits PROMPT; black "
        "pixels are kept exactly. The mask must have the image's proportions.",
    )
    p.add_argument("image", help="the image to edit")
    p.add_argument("mask", help="an image of the same proportions: white = repaint, black = keep")
    p.add_argument("prompt", help="the caption the result should fit")
    p.add_argument("-n", type=int, default=1, help="results to make; more than one also writes a grid")
    p.add_argument(
        "--resample",
        type=int,
        default=1,
        help="RePaint resampling: take each step this many times, jumping back between takes "
        "(1 = none; >1 needs samplers that take single steps, DDPM- or DDIM-style; a trained inpainting decoder's stage does not resample)",
    )
    _add_common(p, "inpainted.png")
    p.set_defaults(handler=run_inpaint)


def run_inpaint(args: argparse.Namespace) -> int:
    from unclip_core.inpainting import InpaintRegion

    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    if args.resample < 1:
        raise InputError(f"--resample must be at least 1, got {args.resample}")
    out = _output_path(args.out)
    InpaintRegion.from_inputs(args.image, args.mask)  # fail on a bad image or mask before loading models
    pipeline = _pipeline(args)
    images = pipeline.inpaint(args.image, args.mask, args.prompt, n=args.n, seed=args.seed, resample=args.resample)
    meta = _metadata(
        args, pipeline, command="inpaint", image=args.image, mask=args.mask, prompt=args.prompt, n=args.n, resample=args.resample
    )
    _write_results(images, out, meta)
    return 0
