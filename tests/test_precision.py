"""runtime.precision: auto picks bf16 arithmetic only on hardware that multiplies bf16 natively,
bf16-matmul hands oneDNN bf16 arithmetic for the length of a call, and an image drawn in one
precision is redrawn in it by ``unclip generate --from``."""
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


@pytest.fixture
def auto_picks(monkeypatch):
    """Make ``runtime.precision: auto`` build a given precision: ``auto_picks("bf16")`` (on this
    CPU ``auto`` means bf16-matmul or fp32, which draw the same images here)."""
    from unclip_core.recipe import assemble

    resolve = assemble.resolve_precision

    def pick(value: str) -> None:
        monkeypatch.setattr(assemble, "resolve_precision", lambda setting, device: value if setting == "auto" else resolve(setting, device))

    return pick


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs Linux's /proc/cpuinfo")
def test_native_bf16_agrees_with_the_cpu_flags():
    flags = _cpu_flags()
    assert native_bf16("cpu") == bool({"amx_tile", "avx512_bf16"} & flags)
    assert resolve_precision("auto", "cpu") == ("bf16-matmul" if {"amx_tile", "avx512_bf16"} & flags else "fp32")


def test_auto_follows_the_hardware_and_explicit_settings_stay(bf16_cpu):
    bf16_cpu(True)
    assert resolve_precision("auto", "cpu") == "bf16-matmul"
    assert resolve_precision("fp32", "cpu") == "fp32"
    bf16_cpu(False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("bf16-matmul", "cpu") == "bf16-matmul"
    assert resolve_precision("auto", "meta") == "fp32"
    with pytest.raises(ValueError, match="one of fp32, bf16, bf16-matmul or auto, not 'fp16'"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="bf16-matmul is oneDNN's, for the CPU; on cuda use bf16"):
        resolve_precision("bf16-matmul", "cuda")


def test_a_recipe_with_auto_builds_the_resolved_precision(registry, tiny_recipe_path, bf16_cpu, monkeypatch):
    monkeypatch.setattr("unclip_core.recipe.assemble.check_device", torch.device)  # as if a GPU were here
    bf16_cpu(True)
    assert build_pipeline(load_recipe(tiny_recipe_path, ["runtime.precision=auto"], registry), registry).settings.precision == "bf16-matmul"
    bf16_cpu(False)
    assert build_pipeline(load_recipe(tiny_recipe_path, ["runtime.precision=auto"], registry), registry).settings.precision == "fp32"
    with pytest.raises(RecipeError, match=r"runtime.precision: Input should be 'fp32', 'bf16', 'bf16-matmul' or 'auto'"):
        load_recipe(tiny_recipe_path, ["runtime.precision=fp16"], registry)
    on_gpu = load_recipe(tiny_recipe_path, ["runtime.precision=bf16-matmul", "runtime.device=cuda"], registry)
    with pytest.raises(RecipeError, match=r"tiny.*\.yaml: runtime.precision bf16-matmul is oneDNN's, for the CPU; on cuda use bf16"):
        build_pipeline(on_gpu, registry)


def test_bf16_matmul_hands_onednn_bf16_arithmetic_for_the_call_only(tiny_pipeline, monkeypatch):
    """While a stage runs, oneDNN's convolutions and matrix products are told to compute in bf16;
    before and after, torch's own settings hold."""
    import dataclasses

    backend = torch.backends.mkldnn
    before = (backend.conv.fp32_precision, backend.matmul.fp32_precision)
    seen: list[tuple[str, str]] = []
    handle = tiny_pipeline.decoder.register_forward_pre_hook(
        lambda module, args: seen.append((backend.conv.fp32_precision, backend.matmul.fp32_precision)))
    monkeypatch.setattr(tiny_pipeline, "settings", dataclasses.replace(tiny_pipeline.settings, precision="bf16-matmul"))
    try:
        tiny_pipeline.generate_tensors(["a red circle"], seed=0)
    finally:
        handle.remove()
    assert seen and set(seen) == {("bf16", "bf16")}
    assert (backend.conv.fp32_precision, backend.matmul.fp32_precision) == before


@pytest.mark.skipif(native_bf16("cpu"), reason="this CPU multiplies bf16 natively")
def test_bf16_matmul_is_exact_fp32_where_the_cpu_lacks_bf16(tiny_pipeline, monkeypatch):
    """oneDNN computes exact fp32 where the CPU has no bf16 units, so ``auto`` may pick
    bf16-matmul without changing anything there (it picks fp32 there anyway)."""
    import dataclasses

    fp32 = tiny_pipeline.generate_tensors(["a red circle"], seed=3)
    monkeypatch.setattr(tiny_pipeline, "settings", dataclasses.replace(tiny_pipeline.settings, precision="bf16-matmul"))
    assert torch.equal(tiny_pipeline.generate_tensors(["a red circle"], seed=3), fp32)


@pytest.mark.skipif(not native_bf16("cpu"), reason="needs a CPU with AMX or AVX-512 BF16")
def test_bf16_matmul_rounds_where_the_cpu_has_bf16(tiny_pipeline, monkeypatch):
    import dataclasses

    fp32 = tiny_pipeline.generate_tensors(["a red circle"], seed=3)
    monkeypatch.setattr(tiny_pipeline, "settings", dataclasses.replace(tiny_pipeline.settings, precision="bf16-matmul"))
    mixed = tiny_pipeline.generate_tensors(["a red circle"], seed=3)
    assert not torch.equal(mixed, fp32), "oneDNN ignored the bf16 setting on a CPU with bf16 units"
    assert float((mixed - fp32).abs().mean()) < 2e-2


def test_from_redraws_in_the_recorded_precision(tiny_recipe_path, tmp_path, auto_picks, capsys):
    """An image drawn where auto meant bf16 comes out the same where auto means fp32."""
    def pixels(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)

    drawn, fp32 = tmp_path / "drawn.png", tmp_path / "fp32.png"
    auto_picks("bf16")
    assert main(["generate", "a red circle", "-r", str(tiny_recipe_path), "-o", str(drawn), "-q", "runtime.precision=auto"]) == 0
    assert read_png_metadata(drawn)["precision"] == "bf16"
    auto_picks("fp32")
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
        monkeypatch.setattr("unclip_core.stage.bf16_weights_cast_once", lambda *models: contextlib.nullcontext())
        with CountWeightCasts() as counted:
            recast = tiny_pipeline.generate_tensors(["a red circle"], seed=1)
        assert max(counted.casts.values()) > 1, "the reference run did not recast: the test shows nothing"
        # the same bf16 weights; oneDNN may still order a sum differently for a reused weight
        # tensor than for a fresh one (seen on the Karlo config: one bf16 ulp in one layer)
        torch.testing.assert_close(cached, recast, atol=2e-2, rtol=0)
        assert float((cached - recast).abs().mean()) < 1e-3
    finally:
        tiny_pipeline.settings = original


def test_the_emulation_rounds_operands_and_nothing_else():
    """``emulated_onednn_bf16``: operands already representable in bf16 give exactly fp32's
    result; others are rounded (the result moves); torch's own functions come back on exit."""
    from unclip_core.precision import emulated_onednn_bf16

    originals = (torch.nn.Conv2d._conv_forward, torch.nn.Linear.forward, torch.nn.functional.scaled_dot_product_attention)
    torch.manual_seed(0)
    conv, linear = torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.Linear(16, 8)
    image, rows = torch.randn(2, 8, 6, 6), torch.randn(4, 16)
    with torch.no_grad():
        for module in (conv, linear):
            module.weight.copy_(module.weight.bfloat16().float())
        exact_conv, exact_linear = conv(image.bfloat16().float()), linear(rows.bfloat16().float())
        with emulated_onednn_bf16():
            assert torch.equal(conv(image.bfloat16().float()), exact_conv)
            assert torch.equal(linear(rows.bfloat16().float()), exact_linear)
            moved = conv(image)
        assert not torch.equal(moved, conv(image))
        torch.testing.assert_close(moved, conv(image), atol=5e-2, rtol=0)
    assert (torch.nn.Conv2d._conv_forward, torch.nn.Linear.forward, torch.nn.functional.scaled_dot_product_attention) == originals


@pytest.mark.parametrize("mask", ["none", "bool", "additive", "causal"])
def test_the_emulated_attention_is_torchs_up_to_bf16_rounding(mask):
    from unclip_core.precision import emulated_onednn_bf16

    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    kwargs: dict = {}
    if mask == "bool":
        kwargs["attn_mask"] = torch.rand(5, 5) > 0.3
        kwargs["attn_mask"][:, 0] = True  # no row fully masked
    elif mask == "additive":
        kwargs["attn_mask"] = torch.randn(5, 5)
    elif mask == "causal":
        kwargs["is_causal"] = True
    sdpa = torch.nn.functional.scaled_dot_product_attention
    reference = sdpa(q, k, v, **kwargs)
    with emulated_onednn_bf16():
        emulated = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
    assert torch.nn.functional.scaled_dot_product_attention is sdpa
    torch.testing.assert_close(emulated, reference, atol=3e-2, rtol=0)
    assert not torch.equal(emulated, reference)


@pytest.mark.skipif(not native_bf16("cpu"), reason="needs a CPU with AMX or AVX-512 BF16")
def test_the_emulation_matches_onednn_where_the_cpu_has_bf16():
    from unclip_core.precision import emulated_onednn_bf16, onednn_bf16_math

    torch.manual_seed(2)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    image = torch.randn(2, 64, 16, 16)
    with torch.no_grad():
        with onednn_bf16_math():
            native = conv(image)
        with emulated_onednn_bf16():
            emulated = conv(image)
        fp32 = conv(image)
    # the two agree to fp32 accumulation order, far closer than either is to fp32
    assert float((native - emulated).abs().max()) < float((native - fp32).abs().max()) / 10
