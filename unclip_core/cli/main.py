"""The ``unclip`` command.

User mistakes (an :class:`~unclip_core.errors.UnclipError`) print one line — several for a
recipe with several problems — and exit with status 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from unclip_core.errors import UnclipError

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    from unclip_core import __version__
    from unclip_core.cli import generate_cmd, plugins_cmd, recipe_cmd

    parser = argparse.ArgumentParser(
        prog="unclip",
        description="unCLIP image generation from declarative recipes. "
        "Try: unclip generate \"a red circle to the left of a blue square\"",
    )
    parser.add_argument("--version", action="version", version=f"unclip {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    plugins_cmd.add_parsers(sub)
    recipe_cmd.add_parsers(sub)
    generate_cmd.add_parsers(sub)
    for extra in _optional_command_modules():
        extra.add_parsers(sub)
    return parser


def _optional_command_modules() -> list:
    """Commands that live in their own modules (training, embedding, evaluation, import, inpainting)."""
    import importlib

    found = []
    for name in ("train_cmd", "embed_cmd", "eval_cmd", "import_cmd", "inpaint_cmd"):
        try:
            found.append(importlib.import_module(f"unclip_core.cli.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"unclip_core.cli.{name}":
                raise
    return found


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    # KEY=VALUE overrides may come before or after options (argparse stops a trailing
    # nargs="*" positional at the first option, so collect the rest here).
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result = args.handler(args)
        return int(result or 0)
    except UnclipError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"unclip: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("unclip: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
