"""runtime.precision: auto picks bf16 only on hardware that multiplies bf16 natively, and an
image drawn in one precision is redrawn in it by ``unclip generate --from``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unclip_core.cli.main import main
from unclip_core.errors import RecipeError
from unclip_core.images import read_png_metadata
from unclip_core.precision import native_bf16, resolve_precision
from unclip_core.recipe.assemble import build_pipeline
from unclip_core.recipe.files import load_recipe


def _cpu_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    line = next(line for line in text.splitlines() if line.startswith("flags"))
    return set(line.split(":", 1)[1].split())


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend (or deny) that this CPU has AMX: ``bf16_cpu(True)``."""

    def pretend(has_it: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: has_it, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)

    return pretend


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs Linux's /proc/cpuinfo")
def test_native_bf16_agrees_with_the_cpu_flags():
    flags = _cpu_flags()
    assert native_bf16("cpu") == bool({"amx_tile", "avx512_bf16"} & flags)
    assert resolve_precision("auto", "cpu") == ("bf16" if {"amx_tile", "avx512_bf16"} & flags else "fp32")


def test_auto_follows_the_hardware_and_explicit_settings_stay(bf16_cpu):
    bf16_cpu(True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32"
    bf16_cpu(False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "meta") == "fp32"
    with pytest.raises(ValueError, match="fp32, bf16 or auto, not 'fp16'"):
        resolve_precision("fp16", "cpu")


def test_a_recipe_with_auto_builds_the_resolved_precision(registry, tiny_recipe_path, bf16_cpu):
    bf16_cpu(True)
    assert build_pipeline(load_recipe(tiny_recipe_path, ["runtime.precision=auto"], registry), registry).settings.precision == "bf16"
    bf16_cpu(False)
    assert build_pipeline(load_recipe(tiny_recipe_path, ["runtime.precision=auto"], registry), registry).settings.precision == "fp32"
    with pytest.raises(RecipeError, match=r"runtime.precision: Input should be 'fp32', 'bf16' or 'auto'"):
        load_recipe(tiny_recipe_path, ["runtime.precision=fp16"], registry)


def test_from_redraws_in_the_recorded_precision(tiny_recipe_path, tmp_path, bf16_cpu, capsys):
    """An image drawn where auto meant bf16 comes out the same where auto means fp32."""
    def pixels(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)

    drawn, fp32 = tmp_path / "drawn.png", tmp_path / "fp32.png"
    bf16_cpu(True)
    assert main(["generate", "a red circle", "-r", str(tiny_recipe_path), "-o", str(drawn), "-q", "runtime.precision=auto"]) == 0
    assert read_png_metadata(drawn)["precision"] == "bf16"
    bf16_cpu(False)
    assert main(["generate", "a red circle", "-r", str(tiny_recipe_path), "-o", str(fp32), "-q", "runtime.precision=auto"]) == 0
    assert read_png_metadata(fp32)["precision"] == "fp32"
    assert not np.array_equal(pixels(drawn), pixels(fp32)), "bf16 and fp32 agree here: the test shows nothing"
    capsys.readouterr()
    again = tmp_path / "again.png"
    assert main(["generate", "--from", str(drawn), "-o", str(again), "-q"]) == 0
    assert "was drawn in bf16; redrawing it in bf16, not fp32" in capsys.readouterr().err
    assert np.array_equal(pixels(again), pixels(drawn))
    # an explicit override given now wins
    assert main(["generate", "--from", str(drawn), "-o", str(again), "-q", "runtime.precision=fp32"]) == 0
    assert np.array_equal(pixels(again), pixels(fp32))


def test_bf16_casts_each_weight_once_a_generation(tiny_pipeline, monkeypatch):
    """Autocast caches its bf16 copy of a weight only for tensors that require grad; the
    pipeline lets it for the length of a call (the models stay frozen after), so each weight is
    cast once per generation instead of once per denoising step, and the images are the same
    up to bf16 rounding."""
    import contextlib
    import dataclasses
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    models = [tiny_pipeline.encoder, tiny_pipeline.prior, tiny_pipeline.decoder, *(m for m, _ in tiny_pipeline.upsamplers)]
    # the weights autocast casts: matmuls' and convolutions' (explicit casts in model code,
    # such as diffusers' prior's `positional_embedding.to(dtype)`, are not autocast's)
    layers = [m for model in models for m in model.modules()]
    weights = {m.weight.data_ptr() for m in layers if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))}
    weights |= {m.in_proj_weight.data_ptr() for m in layers if isinstance(m, torch.nn.MultiheadAttention)}

    class CountWeightCasts(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.casts: Counter[int] = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16:
                if args[0].data_ptr() in weights:
                    self.casts[args[0].data_ptr()] += 1
            return func(*args, **kwargs)

    original = tiny_pipeline.settings
    tiny_pipeline.settings = dataclasses.replace(original, precision="bf16")
    try:
        with CountWeightCasts() as counted:
            cached = tiny_pipeline.generate_tensors(["a red circle"], seed=1)
        names = {p.data_ptr(): n for model in models for n, p in model.named_parameters()}
        assert len(counted.casts) > 20, "few weights were cast: the pipeline did not run in bf16"
        assert counted.casts and max(counted.casts.values()) == 1, [(names[k], c) for k, c in counted.casts.most_common(3)]
        assert all(not p.requires_grad for model in models for p in model.parameters())
        monkeypatch.setattr(type(tiny_pipeline), "_bf16_weights_cast_once", lambda self: contextlib.nullcontext())
        with CountWeightCasts() as counted:
            recast = tiny_pipeline.generate_tensors(["a red circle"], seed=1)
        assert max(counted.casts.values()) > 1, "the reference run did not recast: the test shows nothing"
        # the same bf16 weights; oneDNN may still order a sum differently for a reused weight
        # tensor than for a fresh one (seen on the Karlo config: one bf16 ulp in one layer)
        torch.testing.assert_close(cached, recast, atol=2e-2, rtol=0)
        assert float((cached - recast).abs().mean()) < 1e-3
    finally:
        tiny_pipeline.settings = original
