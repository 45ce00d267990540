"""runtime.precision: auto picks what a probe measured to be real and faster (each CPU kind's
branch is taken here by injecting its probe result), bf16-matmul hands oneDNN bf16 arithmetic
for the length of a call, and an image drawn in one precision is redrawn in it by
``unclip generate --from``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unclip_core.cli.main import main
from unclip_core.errors import RecipeError
from unclip_core.images import read_png_metadata
from unclip_core.auto_precision import (
    CANDIDATES,
    ModeFigures,
    ProbeResult,
    cpu_probe,
    machine_fingerprint,
    measure,
    onednn_bf16_rounds,
    resolve_precision,
)
from unclip_core.recipe.assemble import build_pipeline
from unclip_core.recipe.files import load_recipe


def probe_result(fp32_ms: float, **modes: tuple[float, float]) -> ProbeResult:
    """A probe as some machine would have measured it: ``bf16=(ms, relative difference)``."""
    figures = {name.replace("_", "-"): ModeFigures(ms / 1e3, diff) for name, (ms, diff) in modes.items()}
    return ProbeResult("test", torch.__version__, 2, fp32_ms / 1e3, figures)


# What each CPU kind the project meets measured (docs/benchmarks.md, "Choosing a precision"):
AVX2_ONLY = probe_result(4.0, bf16=(18.0, 3e-3), bf16_matmul=(4.0, 0.0))  # bf16 emulated, oneDNN exact fp32
AVX512_BF16 = probe_result(4.0, bf16=(2.1, 3e-3), bf16_matmul=(4.1, 0.0))  # Zen 4: oneDNN exact fp32, autocast real
AMX = probe_result(8.0, bf16=(1.0, 3e-3), bf16_matmul=(1.6, 2e-3))


@pytest.fixture
def probed(monkeypatch):
    """Make ``auto`` decide on a given probe result: ``probed(AMX)``."""
    from unclip_core import auto_precision

    def pretend(result: ProbeResult) -> None:
        monkeypatch.setattr(auto_precision, "cpu_probe", lambda refresh=False: result)

    return pretend


@pytest.fixture
def auto_picks(monkeypatch):
    """Make ``runtime.precision: auto`` build a given precision: ``auto_picks("bf16")``."""
    from unclip_core.recipe import assemble

    resolve = assemble.resolve_precision

    def pick(value: str) -> None:
        monkeypatch.setattr(assemble, "resolve_precision", lambda setting, device: value if setting == "auto" else resolve(setting, device))

    return pick


@pytest.mark.parametrize(("machine", "expected"), [(AVX2_ONLY, "fp32"), (AVX512_BF16, "bf16"), (AMX, "bf16")],
                         ids=["avx2-only", "avx512-bf16", "amx"])
def test_auto_picks_what_the_probe_measured_on_each_cpu_kind(machine, expected):
    assert resolve_precision("auto", "cpu", probe=lambda: machine) == expected
    assert expected in machine.reason() or expected == "fp32"


def test_auto_needs_a_mode_that_is_real_and_clearly_faster():
    # bf16-matmul faster than autocast: it wins (it is also closer to fp32)
    assert probe_result(8.0, bf16=(2.0, 3e-3), bf16_matmul=(1.5, 2e-3)).choice == "bf16-matmul"
    # bf16-matmul "fast" but exact fp32 (oneDNN ignored the setting): not picked
    assert probe_result(8.0, bf16=(7.0, 3e-3), bf16_matmul=(1.0, 0.0)).choice == "fp32"
    # a gain within timing noise is no reason to round
    fair = probe_result(4.0, bf16=(3.4, 3e-3), bf16_matmul=(3.5, 2e-3))
    assert fair.choice == "fp32"
    assert "needs 1.25x" in fair.reason()
    assert "computes exact fp32 here" in AVX2_ONLY.reason()


def test_explicit_settings_stay_and_bad_ones_are_named():
    for setting in ("fp32", "bf16", "bf16-matmul"):
        assert resolve_precision(setting, "cpu", probe=lambda: AMX) == setting
    assert resolve_precision("auto", "meta") == "fp32"
    with pytest.raises(ValueError, match="one of fp32, bf16, bf16-matmul or auto, not 'fp16'"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="bf16-matmul is oneDNN's, for the CPU; on cuda use bf16"):
        resolve_precision("bf16-matmul", "cuda")


def test_the_probe_on_this_machine_measures_what_each_mode_computes():
    """Whatever this CPU is: autocast always rounds to bf16 (about 2**-8 relative), bf16-matmul
    rounds exactly where a lone convolution says oneDNN does, and the choice follows its figures."""
    result = measure(rounds=2)
    assert result.modes["bf16"].real and result.modes["bf16"].relative_difference < 2e-2
    matmul = result.modes["bf16-matmul"]
    assert matmul.real == onednn_bf16_rounds()
    assert matmul.relative_difference < 2e-2
    assert result.choice in ("fp32", *(mode for mode in CANDIDATES if result.acceptable(mode)))


def test_the_probe_is_measured_once_and_cached(tmp_path, monkeypatch):
    from unclip_core import auto_precision

    monkeypatch.setenv("UNCLIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(auto_precision, "_MEMO", {})
    measured = []
    monkeypatch.setattr(auto_precision, "measure", lambda rounds=5: measured.append(1) or AMX)
    assert cpu_probe().choice == "bf16" and len(measured) == 1
    cache = tmp_path / "cache" / "precision-probe.json"
    assert json.loads(cache.read_text())["entries"][machine_fingerprint()]["modes"]["bf16"]["seconds"] == 1e-3
    monkeypatch.setattr(auto_precision, "_MEMO", {})  # a new process
    again = cpu_probe()
    assert again.from_cache and again == AMX and len(measured) == 1
    assert cpu_probe(refresh=True) and len(measured) == 2
    # a corrupt cache costs one new probe, never an error
    monkeypatch.setattr(auto_precision, "_MEMO", {})
    cache.write_text("{not json")
    assert cpu_probe().choice == "bf16" and len(measured) == 3
    assert json.loads(cache.read_text())["format"] == 1
    # an unwritable cache folder: the answer is kept in memory
    monkeypatch.setattr(auto_precision, "_MEMO", {})
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("UNCLIP_CACHE_DIR", str(blocker / "sub"))
    assert cpu_probe().choice == "bf16" and len(measured) == 4


def test_doctor_shows_the_probe_and_each_recipes_choice(tiny_recipe_path, probed, capsys):
    probed(AVX512_BF16)
    assert main(["doctor", "-r", str(tiny_recipe_path)]) == 0
    out = capsys.readouterr().out
    assert "bf16-matmul" in out and "(exact)" in out
    assert "runtime.precision auto -> bf16 on the CPU" in out
    assert f"recipe {tiny_recipe_path}: runtime.precision fp32 on cpu -> fp32" in out
    assert "recipe shapes: runtime.precision" in out
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["probe"]["choice"] == "bf16" and data["probe"]["modes"]["bf16-matmul"]["relative_difference"] == 0.0
    assert main(["doctor", "-r", "no-such-recipe"]) == 2
    assert "no-such-recipe" in capsys.readouterr().err


def test_a_recipe_with_auto_builds_the_resolved_precision(registry, tiny_recipe_path, probed, monkeypatch):
    monkeypatch.setattr("unclip_core.recipe.assemble.check_device", torch.device)  # as if a GPU were here
    probed(AMX)
    assert build_pipeline(load_recipe(tiny_recipe_path, ["runtime.precision=auto"], registry), registry).settings.precision == "bf16"
    probed(AVX2_ONLY)
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


@pytest.mark.skipif(onednn_bf16_rounds(), reason="oneDNN computes bf16 on this CPU (a probe says)")
def test_bf16_matmul_is_exact_fp32_where_the_cpu_lacks_bf16(tiny_pipeline, monkeypatch):
    """Where oneDNN has no bf16 kernel for the CPU it computes exact fp32 (so ``auto`` never picks
    bf16-matmul there: the probe sees it change nothing)."""
    import dataclasses

    fp32 = tiny_pipeline.generate_tensors(["a red circle"], seed=3)
    monkeypatch.setattr(tiny_pipeline, "settings", dataclasses.replace(tiny_pipeline.settings, precision="bf16-matmul"))
    assert torch.equal(tiny_pipeline.generate_tensors(["a red circle"], seed=3), fp32)


@pytest.mark.skipif(not onednn_bf16_rounds(), reason="oneDNN computes exact fp32 under bf16-matmul on this CPU (a probe says)")
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


@pytest.mark.parametrize("mode", CANDIDATES)
def test_each_mode_auto_may_pick_keeps_the_shapes_model_above_30_db(mode, load_bench_script):
    """``auto`` chooses between its candidates by speed alone because both keep the trained
    default model's images within 30 dB of fp32's: checked here on every CPU (bf16-matmul by
    its emulation where oneDNN computes exact fp32)."""
    from unclip_core.recipe.assemble import load_pipeline

    prompts = ["a red circle", "a blue square above a yellow triangle"]
    fp32 = load_pipeline("shapes", ["runtime.precision=fp32"]).generate_tensors(prompts, seed=0)
    pipeline = load_pipeline("shapes", [f"runtime.precision={mode}"])
    if mode == "bf16-matmul" and not onednn_bf16_rounds():
        pipeline = load_pipeline("shapes", ["runtime.precision=fp32"])
        with load_bench_script("bf16_emulation").emulated_onednn_bf16():
            images = pipeline.generate_tensors(prompts, seed=0)
    else:
        images = pipeline.generate_tensors(prompts, seed=0)
    mse = float((((images - fp32) * 0.5) ** 2).mean())  # as [0, 1] images
    assert 0 < mse, f"{mode} drew fp32's images exactly: it did not run"
    assert -10 * math.log10(mse) >= 30


def test_guidance_combines_bf16_predictions_in_the_samplers_precision():
    """Under bf16 autocast a model returns bf16; classifier-free guidance must take the
    difference of the two branches in x_t's fp32, as a hand computation from the same bf16
    predictions does, not in bf16 (where scale 8 multiplies bf16's rounding)."""
    from unclip_core.diffusion.guidance import BoundDenoiser

    torch.manual_seed(0)
    cond_pred = torch.randn(2, 3, 4, 4).bfloat16()
    uncond_pred = (cond_pred.float() + 1e-2 * torch.randn(2, 3, 4, 4)).bfloat16()

    class Model:
        prediction_type, variance_type, schedule, clip_range = "epsilon", "fixed_small", None, None
        device, dtype = torch.device("cpu"), torch.float32

        def __call__(self, x_t, t, cond):
            return torch.cat([uncond_pred, cond_pred])  # the unconditional half first

    denoiser = BoundDenoiser(Model(), cond=None)
    denoiser.guidance_scale, denoiser._doubled = 8.0, "both"  # the model above ignores its condition
    got = denoiser(torch.zeros(2, 3, 4, 4), torch.tensor(10))
    expected = uncond_pred.float() + 8.0 * (cond_pred.float() - uncond_pred.float())
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
    in_bf16 = (uncond_pred + 8.0 * (cond_pred - uncond_pred)).float()
    assert not torch.equal(in_bf16, expected), "bf16 guidance rounds the same: the test shows nothing"
