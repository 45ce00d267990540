"""``unclip train RECIPE [--resume] [--out DIR] [--max-steps N] [key=value …]``."""
from __future__ import annotations

import argparse
import json


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one stage from a training recipe (see recipes/train/)")
    p.add_argument("recipe", help="training recipe file or shipped name, e.g. train/shapes-decoder")
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE", help="e.g. train.steps=500 optim.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--out", default=None, help="run folder (default: the recipe's output.dir)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (the schedule is unchanged)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from unclip_core.training.loop import train
    from unclip_core.training.validate import load_training

    resolved = load_training(args.recipe, args.overrides)
    summary = train(resolved, out_dir=args.out, resume=args.resume, max_steps=args.max_steps, progress=not args.quiet)
    print(json.dumps(summary))
    return 0
