"""``unclip doctor``: what this machine is, and what ``runtime.precision: auto`` picks here and why.

The probe's figures (:mod:`unclip_core.auto_precision`) are shown as measured, with the
decision each recipe's ``runtime.precision`` comes to, so that a user who wonders why images
differ between two machines, or why one is faster, can see it in one place.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="this machine: torch, threads, and the precision probe that decides runtime.precision: auto",
        description="Show the environment and the measured probe behind runtime.precision: auto, "
        "and what each shipped recipe (and any given with -r) resolves to here.",
    )
    p.add_argument("-r", "--recipe", action="append", default=[], metavar="RECIPE",
                   help="also say what this recipe's runtime.precision resolves to (repeatable)")
    p.add_argument("--reprobe", action="store_true", help="measure again instead of reading the cached probe")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    # torch and the recipe machinery are imported here, not at the top: `unclip --help` must
    # not pay for them (docs/benchmarks.md, "Start-up").
    import torch

    from unclip_core import __version__
    from unclip_core.auto_precision import CANDIDATES, REQUIRED_SPEEDUP, cache_path, cpu_model, cpu_probe, resolve_precision

    probe = cpu_probe(refresh=args.reprobe)
    recipes = _recipe_precisions(args.recipe, lambda setting, device: resolve_precision(setting, device, lambda: probe))
    if args.json:
        print(json.dumps({
            "unclip": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "probe": {**probe.to_json(), "cached": probe.from_cache, "cache": str(cache_path()),
                      "choice": probe.choice, "reason": probe.reason()},
            "recipes": recipes,
        }, indent=2))
        return 0
    print(f"unclip {__version__}, torch {torch.__version__}, Python {platform.python_version()}")
    print(f"cpu: {cpu_model()}, {torch.get_num_threads()} threads")
    where = f"cached {probe.measured_at}" if probe.from_cache else "measured now"
    print(f"precision probe ({where}; {cache_path()}):")
    print(f"  {'mode':<12} {'ms':>8} {'speed vs fp32':>14} {'differs from fp32':>18}")
    print(f"  {'fp32':<12} {probe.fp32_seconds * 1e3:8.2f} {1.0:14.2f} {'-':>18}")
    for mode in CANDIDATES:
        figures = probe.modes[mode]
        differs = f"{figures.relative_difference:.1e}" + ("" if figures.real else " (exact)")
        print(f"  {mode:<12} {figures.seconds * 1e3:8.2f} {probe.speedup(mode):14.2f} {differs:>18}")
    print(f"runtime.precision auto -> {probe.choice} on the CPU: {probe.reason()} "
          f"(a bf16 mode must be real and {REQUIRED_SPEEDUP}x as fast)")
    for name, entry in recipes.items():
        print(f"recipe {name}: runtime.precision {entry['setting']} on {entry['device']} -> {entry['resolved']}")
    return 0


def _recipe_precisions(extra: list[str], resolve) -> dict[str, dict[str, str]]:  # noqa: ANN001
    """Each shipped inference recipe's (and each named one's) precision setting and what it
    resolves to here; a recipe that fails to validate is reported by its one-line error."""
    from unclip_core.errors import UnclipError
    from unclip_core.recipe.files import is_training_recipe, load_recipe, read_yaml
    from unclip_core.recipe.shipped import shipped_recipes

    names = [name for name, path in shipped_recipes().items() if not is_training_recipe(read_yaml(path))] + list(extra)
    found: dict[str, dict[str, str]] = {}
    for name in names:
        try:
            runtime = load_recipe(name).recipe.runtime
            resolved = resolve(runtime.precision, runtime.device)
        except (UnclipError, ValueError) as exc:
            if name in extra:  # the user asked about this one: their mistake is an error
                raise
            print(f"unclip: warning: shipped recipe {name}: {exc}", file=sys.stderr)
            continue
        found[name] = {"setting": runtime.precision, "device": runtime.device, "resolved": resolved}
    return found
