"""The ``unclip`` command.

User mistakes (an :class:`~unclip_core.errors.UnclipError`) print one line — several for a
recipe with several problems — and exit with status 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import atexit
import errno
import os
import sys
import threading
import traceback
import warnings
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
    """Commands that live in their own modules (training, embedding, evaluation, import, inpainting, img2img and
    mix, doctor, serving)."""
    import importlib

    found = []
    for name in ("train_cmd", "embed_cmd", "eval_cmd", "import_cmd", "inpaint_cmd", "edit_cmd", "doctor_cmd", "serve_cmd"):
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
    shown_by_python = warnings.showwarning
    if not args.debug:
        warnings.showwarning = _one_line_warning
    try:
        from unclip_core.cli.limits import check_arguments

        check_arguments(args)
        result = args.handler(args)
        return int(result or 0)
    except KeyboardInterrupt:
        print("unclip: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _user_message(exc)
        if message is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"unclip: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:  # main() may run inside another program (tests, notebooks): leave its warnings as they were
        warnings.showwarning = shown_by_python


def run(argv: Sequence[str] | None = None) -> None:
    """The ``unclip`` console script: :func:`main`, then leave without Python's teardown.

    Once torch, diffusers and open_clip are loaded, unloading them module by module at exit
    takes about as long as the shapes model takes to draw an image (0.7 s of a 5 s ``unclip
    generate``: docs/benchmarks.md, "Start-up"). By the time :func:`main` returns, the command
    has written and closed its outputs (atomically), so the process runs its exit handlers,
    flushes its streams and ends at once. It exits the usual way when torch was never loaded
    (nothing to gain) or another non-daemon thread is still running (Python would wait for
    it). Calling :func:`main` from Python is unaffected."""
    code = main(argv)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if "torch" not in sys.modules or others:
        sys.exit(code)
    atexit._run_exitfuncs()  # what a normal exit runs first: logging's flush, tqdm, user handlers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it anyway
            pass
    os._exit(code)


def _user_message(exc: Exception) -> str | None:
    """One line for the errors a user can cause, or None for a bug (which keeps its traceback).

    Besides the framework's own errors: the operating system refusing a file (a path under a
    regular file, no permission, a full disk) and running out of memory (``-n 100000``) are
    the user's to fix, and a traceback tells them less than the file name or the advice."""
    if isinstance(exc, UnclipError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else str(exc.filename)
        return f"{exc.strerror or exc}: {where}"
    if isinstance(exc, OSError) and exc.errno in _DISK_REFUSED:  # a write that named no file
        return f"{exc.strerror or exc} (while writing an output)"
    out_of_memory = isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
    if out_of_memory or (isinstance(exc, RuntimeError) and _OUT_OF_MEMORY in str(exc)):
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"out of memory ({first_line[:160]}); ask for fewer images at once (-n) or free memory"
    return None


_DISK_REFUSED = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
"""Errors of a disk that takes no more data: the user's to fix, even when no file is named."""

_OUT_OF_MEMORY = "can't allocate memory"
"""What torch's CPU allocator says when an allocation fails (a GPU's failure is
``torch.OutOfMemoryError``)."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Warnings as ``unclip: warning: ...`` on one line, without the source line Python's
    default format prints under them (``--debug`` restores that)."""
    text = " ".join(str(message).split())
    print(f"unclip: warning: {text}", file=file or sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    run()
