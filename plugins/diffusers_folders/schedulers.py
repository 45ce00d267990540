"""diffusers' scheduler classes by name — a folder's ``scheduler_config.json`` ``_class_name`` or a
recipe's setting — and the settings they take; the ``diffusers-scheduler`` samplers and the
Kandinsky 2.2 importer check names with it."""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence
from typing import Any


def parameters_of(fn: Any) -> dict[str, inspect.Parameter]:
    """The parameters ``fn`` takes, by name (what a scheduler's constructor or ``step`` accepts)."""
    return dict(inspect.signature(fn).parameters)


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``known`` to ``name``, or nothing."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def scheduler_class(name: str) -> type:
    """The diffusers scheduler class called ``name``, if it can follow a model's schedule."""
    import diffusers.schedulers as schedulers  # heavy: imported only when a scheduler is needed

    known = sorted(n for n in dir(schedulers) if n.endswith("Scheduler") and not n.startswith("Flax"))
    if name not in known:
        raise ValueError(f"unknown diffusers scheduler {name!r}{did_you_mean(name, known)}")
    try:
        cls = getattr(schedulers, name)
    except ImportError as exc:  # a scheduler whose optional dependency is missing
        raise ValueError(f"{name} cannot be loaded: {' '.join(str(exc).split())}") from None
    backends = getattr(cls, "_backends", None)  # diffusers' stand-in for a class whose dependency is missing
    if backends:
        raise ValueError(f"{name} needs {' and '.join(backends)} installed")
    if "trained_betas" not in parameters_of(cls.__init__):
        raise ValueError(f"{name} takes no trained_betas, so it cannot follow the model's noise schedule")
    return cls
