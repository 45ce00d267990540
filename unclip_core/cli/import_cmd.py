"""``unclip import FORMAT ARGS...``: a recipe from published weights, by a format a plugin
registers (``register_importers``; ``unclip plugins`` lists them).

The format's own arguments are parsed only once it is chosen, so building the command line
discovers no plugin; see :mod:`unclip_core.importing` for what every importer shares.
"""
from __future__ import annotations

import argparse


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="turn published weights into a recipe (formats come from plugins; `unclip plugins` lists them)",
    )
    p.add_argument("import_format", metavar="FORMAT", help="the import format (`unclip plugins` lists them)")
    p.add_argument("import_args", nargs=argparse.REMAINDER, help="the format's own arguments (FORMAT --help lists them)")
    p.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    from unclip_core.registry import default_registry  # discovers plugins: only once a format is asked for

    spec = default_registry().importer(args.import_format)
    parser = argparse.ArgumentParser(prog=f"unclip import {spec.name}", description=spec.summary)
    spec.importer.add_arguments(parser)
    recipe = spec.importer.run(parser.parse_args(args.import_args))
    first = recipe.read_text(encoding="utf-8").splitlines()[0].removeprefix("# Run: ")
    print(f"wrote {recipe.parent}/ (recipe {recipe.name}, weights as safetensors)")
    print(f"run it with: {first}")
    return 0
