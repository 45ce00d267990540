"""The command line the ``*_vs_diffusers`` benches share: which sizes, how many steps, how many
timed repeats, how many threads, and the hidden options with which a bench runs itself again
in a child process to measure one pipeline's peak memory alone (``process_memory``)."""
from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Sequence

import torch


def comparison_parser(description: str, *, sizes: str, sizes_help: str | None, steps: str, steps_help: str,
                      repeats: int) -> argparse.ArgumentParser:
    """A parser with ``--sizes``, ``--steps``, ``--repeats``, ``--threads``, ``--no-rss`` and the
    hidden ``--child``/``--child-folder``; a bench adds its own options after these."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sizes", default=sizes, help=sizes_help)
    parser.add_argument("--steps", default=steps, help=steps_help)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-folder", default=None, help=argparse.SUPPRESS)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line and apply what it says to this process: torch's thread count, and
    no model hub (every bench builds its weights locally; nothing is downloaded)."""
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def child_options(args: argparse.Namespace) -> list[str]:
    """The options a child process must get to run what its parent timed: the steps and threads."""
    return ["--steps", args.steps, *(["--threads", str(args.threads)] if args.threads else [])]


def steps_of(args: argparse.Namespace) -> tuple[int, ...]:
    """``--steps`` as numbers, one a stage (``"25,20"`` → ``(25, 20)``)."""
    return tuple(int(s) for s in args.steps.split(","))


def report_heading(args: argparse.Namespace, prompts: int) -> str:
    """The first line of a report: the machine, torch and its threads, and what each run does,
    so that figures pasted into docs/benchmarks.md carry their conditions."""
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; steps {steps_of(args)}, {prompts} prompts, median of {args.repeats}")
