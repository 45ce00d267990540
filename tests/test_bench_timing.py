"""bench/timing.py: the median and the alternation every *_vs_diffusers bench relies on, checked
with a clock the test drives, against figures worked out by hand."""
from __future__ import annotations

import time

import pytest


@pytest.fixture
def timing(load_bench_script):
    return load_bench_script("timing")


class FakeClock:
    """A clock that only moves when a timed function says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def function(self, name: str, durations: list[float], calls: list[str]):
        """A function that records its call, takes the next of ``durations`` and returns its call number."""
        def run() -> int:
            calls.append(name)
            self.now += durations[len([c for c in calls if c == name]) - 1]
            return len([c for c in calls if c == name])
        return run


def test_median_of_the_timed_runs_leaves_the_warm_up_out_and_alternates(timing):
    clock, calls = FakeClock(), []
    # first entry: the warm-up (slow, as first calls are), then the timed runs
    fast = clock.function("fast", [100.0, 5.0, 1.0, 3.0], calls)
    slow = clock.function("slow", [100.0, 10.0, 30.0, 20.0], calls)
    result = timing.timed_alternately({"fast": fast, "slow": slow}, 3, clock=clock)
    assert calls == ["fast", "slow"] + ["fast", "slow"] * 3
    assert result == ({"fast": 3.0, "slow": 20.0}, {"fast": 4, "slow": 4})  # medians of 5,1,3 and 10,30,20; the 4th calls' outputs


def test_without_a_warm_up_every_run_is_timed(timing):
    clock, calls = FakeClock(), []
    result = timing.timed(clock.function("only", [8.0, 2.0], calls), 2, warm_up=False, clock=clock)
    assert calls == ["only", "only"]
    assert result == (5.0, 2)  # the median of two runs is their mean


def test_real_seconds_are_measured(timing):
    seconds, out = timing.timed(lambda: time.sleep(0.02) or "done", 3)
    assert seconds >= 0.02 and out == "done"


def test_zero_repeats_is_refused(timing):
    with pytest.raises(ValueError, match="repeats"):
        timing.timed(lambda: None, 0)
