"""``unclip import karlo DIR [--out FOLDER] [--force]``: a recipe from published weights.

Writes ``FOLDER/karlo.yaml`` (first line: the command that runs it) with the weights converted
to safetensors beside it; see :mod:`unclip_core.karlo` and docs/karlo.md.
"""
from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="turn published weights into a recipe (karlo: a diffusers unCLIP folder)")
    isub = p.add_subparsers(dest="import_format", metavar="FORMAT")
    isub.required = True
    k = isub.add_parser(
        "karlo",
        help="a local diffusers Karlo folder (kakaobrain/karlo-v1-alpha layout) → recipe + safetensors",
    )
    k.add_argument("folder", help="the Karlo folder: text_encoder/, tokenizer/, prior/, text_proj/, decoder/, "
                   "super_res_first/, super_res_last/ and the three *_scheduler/ folders")
    k.add_argument("-o", "--out", default=None, help="folder to write (default: ./<folder name>-unclip)")
    k.add_argument("--force", action="store_true",
                   help="replace an existing output folder (one an earlier import wrote; never a file)")
    k.set_defaults(handler=run_karlo)


def run_karlo(args: argparse.Namespace) -> int:
    from unclip_core.karlo import import_karlo

    recipe = import_karlo(args.folder, args.out, force=args.force)
    first = recipe.read_text(encoding="utf-8").splitlines()[0].removeprefix("# Run: ")
    print(f"wrote {recipe.parent}/ (recipe {recipe.name}, weights as safetensors, tokenizer/)")
    print(f"run it with: {first}")
    return 0
