"""bench/generate_default.py: its PSNR and its ``--set`` overrides."""
from __future__ import annotations

import math
import re
import sys

import pytest
import torch


@pytest.fixture
def bench(load_bench_script):
    return load_bench_script("generate_default")


def test_psnr_reads_images_in_minus_one_to_one(bench):
    """0.2 apart in [-1, 1] is 0.1 apart as an image: mse 0.01, 20 dB."""
    reference = torch.zeros(2, 3, 4, 4)
    assert bench.psnr(reference + 0.2, reference) == pytest.approx(20.0)
    assert bench.psnr(reference, reference) == math.inf


@pytest.mark.slow
def test_overrides_reach_every_variant(bench, monkeypatch, capsys):
    """With ``--set`` the default and the contiguous variant both run the override (so their
    images agree to float rounding), and the report says it ran with it."""
    monkeypatch.setattr(sys, "argv", ["generate_default.py", "--no-bf16", "--repeats", "1", "--set", "decoder.guidance_scale=8"])
    seen = []
    load = bench.load_pipeline

    def spy(name, overrides=()):
        seen.append(list(overrides))
        return load(name, overrides)

    monkeypatch.setattr(bench, "load_pipeline", spy)
    bench.main()
    out = capsys.readouterr().out
    assert "overrides decoder.guidance_scale=8" in out
    assert seen == [["decoder.guidance_scale=8"], ["decoder.guidance_scale=8", "runtime.memory_format=contiguous"]]
    assert float(re.search(r"PSNR of the contiguous images against the default's: ([0-9.inf]+) dB", out).group(1)) > 40
