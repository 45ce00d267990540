"""Median wall-clock seconds of functions run in turn, for the benches that compare our
pipelines with diffusers' in one process: one loop, so that every comparison is timed alike."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


def timed_alternately(
    fns: Mapping[str, Callable[[], T]], repeats: int, *, warm_up: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], dict[str, T]]:
    """``(medians, outputs)``: each function's median seconds, and the output of its last timed run.

    With ``warm_up``, each function first runs once untimed (first-call allocations and caches
    are not what is compared). Then ``repeats`` rounds run each function once, in the order
    given: alternating rather than timing one function's runs back to back makes load from
    other jobs on the machine fall on all of them alike, so their ratios stay meaningful.
    ``clock`` is the time source (seconds); the default is ``time.perf_counter``."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if warm_up:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    outs: dict[str, T] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            outs[name] = fn()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}, outs


def timed(fn: Callable[[], T], repeats: int, *, warm_up: bool = True,
          clock: Callable[[], float] = time.perf_counter) -> tuple[float, T]:
    """``(median seconds, output of the last timed run)`` of one function: :func:`timed_alternately`
    with nothing to alternate with."""
    medians, outputs = timed_alternately({"": fn}, repeats, warm_up=warm_up, clock=clock)
    return medians[""], outputs[""]
