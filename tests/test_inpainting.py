"""Training-free inpainting (RePaint): the sampler wrapper, the pipeline operation and the
``unclip inpaint`` command.

References, each computed here by other means: RePaint's loop written out by hand with the
DDPM maths (same random draws in the same order); the input image resized by PIL, pixel for
pixel; a fake model whose x0 prediction is a known target (the hole must become it); a
model that only sees a spatial average (the hole must take the known region's colour, which
it can only do if the known region reaches the model); and the tiny stack's own API output
for the CLI.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from test_samplers_parity import SCHEDULE, FunctionDenoiser
from unclip_core.cli.main import main
from unclip_core.diffusion.guidance import bind_denoiser
from unclip_core.diffusion.variance import log_variance, posterior_mean
from unclip_core.errors import InputError
from unclip_core.images import read_png_metadata
from unclip_core.inpainting import InpaintRegion, KnownRegionDenoiser, RePaintSampler
from unclip_core.interfaces import Declared, StepInfo
from unclip_plugins.samplers import (
    DDIMConfig,
    DDIMSampler,
    DDPMConfig,
    DDPMSampler,
    DiffusersSchedulerConfig,
    DiffusersSchedulerSampler,
    DPMSolverConfig,
    DPMSolverSampler,
)
from unclip_plugins.karlo import UnclipSchedulerConfig, UnclipSchedulerSampler

SIZE = 8
SHAPE = (2, 3, SIZE, SIZE)


def left_half_mask(size: int = SIZE) -> torch.Tensor:
    """``[1, 1, s, s]`` bool: repaint the left half."""
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
    mask[..., : size // 2] = True
    return mask


def random_image(seed: int, shape=(1, 3, SIZE, SIZE)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.8 - 0.9


def target_model(target: torch.Tensor):
    """x0-prediction of a model that always answers ``target`` (a perfect model of one image)."""
    return lambda x, t: target.expand(x.shape[0], -1, -1, -1).to(x.dtype)


def average_model(x, t):
    """x0-prediction that sees only each channel's spatial mean of its input, undone from the
    noise level (x_t ≈ √ᾱ x0 + ...): it can tell the hole what colour the image is only
    through the known region the wrapper puts in."""
    abar = SCHEDULE.alpha_bar(t).reshape(-1, 1, 1, 1).to(x.dtype)
    return (x.mean(dim=(2, 3), keepdim=True) / abar.sqrt()).clamp(-1, 1).expand_as(x)


# ------------------------------------------------------------------------------ the sampler
SAMPLERS = {
    "ddpm": lambda: DDPMSampler(DDPMConfig(steps=10)),
    "ddim": lambda: DDIMSampler(DDIMConfig(steps=10, eta=0.5)),
    "dpm-solver++": lambda: DPMSolverSampler(DPMSolverConfig(steps=10)),
    "diffusers-scheduler": lambda: DiffusersSchedulerSampler(DiffusersSchedulerConfig(scheduler="EulerDiscreteScheduler", steps=10)),
    # float64 coefficients: float32's 1 − ᾱ near t = 0 would cost the 1e-4 below
    "unclip-scheduler": lambda: UnclipSchedulerSampler(UnclipSchedulerConfig(steps=10, exact_float32=False)),
}


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("prediction_type", ["x0", "eps"])
def test_known_region_is_kept_exactly_and_the_hole_becomes_the_target(name, prediction_type):
    known, target, mask = random_image(1), random_image(2), left_half_mask()
    if prediction_type == "x0":
        denoiser = FunctionDenoiser(target_model(target), "x0")
    else:  # the exact eps of one-point data at the target
        def eps(x, t):
            abar = SCHEDULE.alpha_bar(t).reshape(-1, 1, 1, 1)
            return (x - abar.sqrt() * target) / (1 - abar).sqrt()

        denoiser = FunctionDenoiser(eps, "eps")
    steps: list[StepInfo] = []
    out = RePaintSampler(SAMPLERS[name](), known, mask).sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(0), callback=steps.append)
    full_mask = mask.expand(SHAPE)
    assert torch.equal(out[~full_mask], known.expand(SHAPE)[~full_mask])
    assert (out - target)[full_mask].abs().max() <= 1e-4
    assert len(steps) == 10 and all(torch.equal(s.x0[~full_mask], known.expand(SHAPE)[~full_mask]) for s in steps)


def test_the_hole_takes_its_colour_from_the_known_region_and_resampling_harmonises():
    """With a model that only sees averages, the hole can only become the known region's
    colour if the known region, noised to each step's level, reaches the model. Plain
    sampling misses the colour entirely (measured: off by 1.4); one pass of blending gets
    close (0.18), and RePaint's resampling, its cure for a hole that lags behind the
    known region, gets it (measured 0.015 with resample=3)."""
    colour = torch.tensor([0.6, -0.4, 0.2], dtype=torch.float64).reshape(1, 3, 1, 1)
    known, mask = colour.expand(1, 3, SIZE, SIZE), left_half_mask()
    denoiser = FunctionDenoiser(average_model, "x0")
    sampler = DDIMSampler(DDIMConfig(steps=50))

    def error(out):
        return float((out[mask.expand(SHAPE)].reshape(2, 3, -1) - colour.reshape(1, 3, 1)).abs().max())

    plain = error(sampler.sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(1)))
    once, thrice = (
        error(RePaintSampler(sampler, known, mask, r).sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(1)))
        for r in (1, 3)
    )
    assert plain > 1.0 and once <= 0.3 and thrice <= 0.05 and thrice < once / 3, (plain, once, thrice)


def hand_written_repaint(fn, known, mask, steps: int, resample: int, seed: int) -> torch.Tensor:
    """RePaint with DDPM steps and one-step jumps, written out from the paper's Algorithm 1
    (respaced chain, fixed-small variance, clipped x0), drawing noise in the wrapper's order:
    x_T; then per model call the known region's noise; per noisy step the step's noise; per
    jump back the jump's noise."""
    generator = torch.Generator().manual_seed(seed)
    draw = lambda: torch.randn(SHAPE, generator=generator, dtype=torch.float64)  # noqa: E731
    timesteps = [int(t) for t in np.round(np.arange(1000, 0, -1000 / steps)).astype(np.int64) - 1]
    x = draw()
    for t, t_prev in zip(timesteps, timesteps[1:] + [-1]):
        abar, abar_prev = float(SCHEDULE.alpha_bar(t)), float(SCHEDULE.alpha_bar(t_prev))
        for take in range(resample):
            known_t = math.sqrt(abar) * known + math.sqrt(1 - abar) * draw()
            x_in = torch.where(mask, x, known_t)
            x0 = fn(x_in, torch.full((SHAPE[0],), t)).clamp(-1, 1)
            mean = posterior_mean(SCHEDULE, t, t_prev, x0, x)
            if t_prev >= 0:
                std = torch.exp(0.5 * log_variance(SCHEDULE, t, t_prev, "fixed_small", x))
                x_prev = mean + std * draw()
            else:
                x_prev = mean
            if take + 1 < resample:
                keep = abar / abar_prev
                x = math.sqrt(keep) * x_prev + math.sqrt(1 - keep) * draw()
        x = x_prev
    return torch.where(mask, x, known)


@pytest.mark.parametrize("resample", [1, 2, 4])
def test_matches_repaint_written_out_by_hand(resample):
    known, mask = random_image(3), left_half_mask()
    denoiser = FunctionDenoiser(average_model, "x0")
    got = RePaintSampler(DDPMSampler(DDPMConfig(steps=6)), known, mask, resample).sample(
        denoiser, SHAPE, generator=torch.Generator().manual_seed(9)
    )
    want = hand_written_repaint(average_model, known, mask, steps=6, resample=resample, seed=9)
    assert (got - want).abs().max() <= 1e-12


@pytest.mark.parametrize("make", [lambda: DDPMSampler(DDPMConfig(steps=5)), lambda: DDIMSampler(DDIMConfig(steps=5, eta=0.8)),
                                  lambda: UnclipSchedulerSampler(UnclipSchedulerConfig(steps=5))])
def test_the_stepping_loop_without_jumps_is_the_samplers_own_loop(make):
    known, mask = random_image(4), left_half_mask()
    denoiser = FunctionDenoiser(average_model, "x0")
    wrapper = RePaintSampler(make(), known, mask, 1)
    own = wrapper.sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(2))
    blended = KnownRegionDenoiser(denoiser, known, mask, torch.Generator().manual_seed(2))
    stepped = wrapper._resampled(blended, SHAPE, blended.generator, None, None)
    assert torch.equal(own, torch.where(mask, stepped, known))


def test_karlos_sampler_takes_single_steps_so_it_resamples():
    """unclip-scheduler's loop is the single-step samplers' loop, so RePaint can jump with it."""
    known, target, mask = random_image(1), random_image(2), left_half_mask()
    sampler = UnclipSchedulerSampler(UnclipSchedulerConfig(steps=10, exact_float32=False))
    out = RePaintSampler(sampler, known, mask, 2).sample(FunctionDenoiser(target_model(target), "x0"), SHAPE,
                                                         generator=torch.Generator().manual_seed(0))
    full_mask = mask.expand(SHAPE)
    assert torch.equal(out[~full_mask], known.expand(SHAPE)[~full_mask])
    assert (out - target)[full_mask].abs().max() <= 1e-4


def test_resampling_needs_a_single_step_sampler():
    known, mask = random_image(5), left_half_mask()
    with pytest.raises(InputError, match=r"resample=2 needs a sampler that takes single steps \(DDPM- or DDIM-style.*decoder.sampler.type"):
        RePaintSampler(DPMSolverSampler(DPMSolverConfig()), known, mask, 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="resample must be a whole number"):
            RePaintSampler(DDIMSampler(DDIMConfig()), known, mask, bad)


# ------------------------------------------------------------------------------ masks
def test_masks_from_images_and_tensors():
    image = Image.new("RGB", (12, 8), "gray")
    gray = Image.new("L", (6, 4), 0)
    ImageDraw.Draw(gray).rectangle((0, 0, 1, 3), fill=200)  # white-ish left third
    region = InpaintRegion.from_inputs(image, gray)  # 6×4 → centre 4×4 square: columns 1..4
    assert region.mask.tolist() == [[True, False, False, False]] * 4
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 255))
    rgba.putpixel((2, 1), (0, 0, 0, 0))  # transparent: white, repaint
    assert InpaintRegion.from_inputs(Image.new("RGB", (4, 4)), rgba).mask.nonzero().tolist() == [[1, 2]]
    soft = torch.tensor([[0.0, 0.4], [0.6, 1.0]])
    for mask in (soft, soft[None], soft[None, None], soft > 0.5):
        assert InpaintRegion.from_inputs(torch.zeros(3, 2, 2), mask).mask.tolist() == [[False, False], [True, True]]
    region = InpaintRegion.from_inputs(torch.zeros(1, 3, 4, 4), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert region.repaint_mask(4)[0, 0].int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_bad_masks_are_refused_in_one_line(tmp_path):
    notes = tmp_path / "mask.png"
    notes.write_text("not pixels\n")
    image = Image.new("RGB", (40, 30))
    cases = [
        (notes, "mask: .*mask.png is not an image"),
        (tmp_path / "nowhere.png", "mask: image file not found"),
        (Image.new("L", (30, 30), 255), r"mask is 30×30 but the image is 40×30: their proportions differ"),
        (Image.new("L", (40, 30), 0), "mask has no white pixels inside the centred square"),
        (torch.ones(2, 3, 4), r"mask tensor must be \[H, W\]"),
        (torch.full((30, 40), 2.0), r"mask tensor values must be in \[0, 1\]"),
        ([[1, 0]], "mask must be an image file, a PIL image or a tensor, got list"),
    ]
    for mask, expected in cases:
        with pytest.raises(InputError, match=expected) as caught:
            InpaintRegion.from_inputs(image, mask)
        assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match=r"image tensor must be \[3, H, W\]"):
        InpaintRegion.from_inputs(torch.zeros(2, 3, 4, 4), torch.ones(4, 4))


# ------------------------------------------------------------------------------ the pipeline
def scene(size=(30, 24)) -> Image.Image:
    image = Image.new("RGB", size, (40, 90, 200))
    w, h = size
    ImageDraw.Draw(image).ellipse((w // 5, h // 5, w - w // 5 - 1, h - h // 5 - 1), fill=(220, 30, 30))
    ImageDraw.Draw(image).rectangle((0, 0, w // 3, h // 3), fill=(250, 250, 30))
    return image


def box_mask(size=(15, 12)) -> Image.Image:
    mask = Image.new("L", size, 0)
    w, h = size
    ImageDraw.Draw(mask).rectangle((w // 3, h // 4, w - 1, 3 * h // 4), fill=255)
    return mask


def expected_pixels(image: Image.Image, mask: Image.Image, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The input centre-cropped and resized with PIL (bicubic), and the mask cropped and resized nearest."""

    def square(picture, resample):
        side = min(picture.size)
        left, top = (picture.width - side) // 2, (picture.height - side) // 2
        return picture.crop((left, top, left + side, top + side)).resize((size, size), resample, reducing_gap=None)

    known = np.asarray(square(image, Image.Resampling.BICUBIC), dtype=np.int16)
    repaint = np.asarray(square(mask, Image.Resampling.NEAREST)) > 127
    return known, repaint


@pytest.mark.parametrize("resample", [1, 2])
def test_pixels_outside_the_mask_are_the_input_exactly(tiny_pipeline, resample):
    image, mask = scene(), box_mask()
    results = tiny_pipeline.inpaint(image, mask, "a red circle", n=2, seed=4, resample=resample)
    size = tiny_pipeline.image_size
    known, repaint = expected_pixels(image, mask, size)
    assert 0 < repaint.sum() < repaint.size
    for result in results:
        assert result.size == (size, size)
        got = np.asarray(result, dtype=np.int16)
        assert np.array_equal(got[~repaint], known[~repaint])
        assert np.abs(got[repaint] - known[repaint]).mean() > 5, "the hole was not repainted"
    again = tiny_pipeline.inpaint(image, mask, "a red circle", n=2, seed=4, resample=resample)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(results, again))


class TargetModel(torch.nn.Module):
    """A decoder or upsampler whose x0 prediction is always ``target`` resized to its size."""

    prediction_type, variance_type, clip_range, in_channels = "x0", "fixed_small", 1.0, 3

    def __init__(self, target: torch.Tensor, size: int):
        super().__init__()
        self.target = torch.nn.functional.interpolate(target, size=(size, size), mode="bilinear", antialias=True)
        self.declared = Declared(image_size=size)
        self.schedule = SCHEDULE
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def forward(self, x_t, t, cond):
        return self.target.expand(x_t.shape[0], -1, -1, -1)

    def denoiser(self, cond, guidance_scale=1.0):
        return bind_denoiser(self, cond, guidance_scale)


def test_with_exact_models_the_hole_becomes_the_target_at_every_stage(tiny_pipeline):
    import dataclasses

    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    (upsampler, upsampler_sampler), = tiny_pipeline.upsamplers
    exact = dataclasses.replace(
        tiny_pipeline,
        decoder=TargetModel(target, tiny_pipeline.base_size),
        upsamplers=[(TargetModel(target, 32), upsampler_sampler)],
    )
    image, mask = scene((32, 32)), box_mask((32, 32))
    out = exact.inpaint_tensors(image, mask, "a red circle", seed=2, resample=2)
    known, repaint = expected_pixels(image, mask, 32)
    repaint_t = torch.from_numpy(repaint)[None, None].expand_as(out)
    assert (out - exact.upsamplers[0][0].target)[repaint_t].abs().max() <= 1e-4
    got = np.asarray(exact.inpaint(image, mask, "a red circle", seed=2, resample=2)[0], dtype=np.int16)
    assert np.array_equal(got[~repaint], known[~repaint])


def test_inpaint_refusals(tiny_pipeline, registry, tiny_recipe_path):
    from unclip_core.recipe.assemble import build_pipeline
    from unclip_core.recipe.files import load_recipe

    image, mask = scene(), box_mask()
    for prompt in ("", ["a", "b"]):
        with pytest.raises(InputError):
            tiny_pipeline.inpaint(image, mask, prompt)
    with pytest.raises(InputError, match="n must be at least 1"):
        tiny_pipeline.inpaint(image, mask, "a cat", n=0)
    dpm = build_pipeline(load_recipe(tiny_recipe_path, ["upsamplers.0.sampler.type=dpm-solver++"], registry=registry), registry)
    with pytest.raises(InputError, match=r"the upsamplers.0 sampler \(DPMSolverSampler\) cannot; use resample=1 or another upsamplers.0.sampler.type"):
        dpm.inpaint(image, mask, "a cat", resample=2)
    assert dpm.inpaint(image, mask, "a cat", resample=1)[0].size == (32, 32)  # any sampler without jumps


# ------------------------------------------------------------------------------ the command
def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def inputs(tmp_path):
    scene().save(tmp_path / "scene.png")
    box_mask().save(tmp_path / "mask.png")
    return tmp_path / "scene.png", tmp_path / "mask.png"


def test_cli_writes_what_the_api_makes_with_its_settings(capsys, tmp_path, inputs, tiny_recipe_path, tiny_pipeline):
    image, mask = inputs
    out = tmp_path / "out.png"
    status, stdout, _ = run(capsys, "inpaint", image, mask, "a red circle", "-r", tiny_recipe_path, "--seed", 3, "--resample", 2, "-o", out)
    assert status == 0 and stdout.strip() == str(out)
    want = tiny_pipeline.inpaint(image, mask, "a red circle", seed=3, resample=2)[0]
    got = Image.open(out).convert("RGB")
    assert got.tobytes() == want.tobytes()
    known, repaint = expected_pixels(Image.open(image).convert("RGB"), Image.open(mask).convert("L"), 32)
    assert np.array_equal(np.asarray(got, dtype=np.int16)[~repaint], known[~repaint])
    meta = read_png_metadata(out)
    assert (meta["command"], meta["prompt"], meta["seed"], meta["resample"], meta["mask"]) == ("inpaint", "a red circle", 3, 2, str(mask))


def test_cli_refuses_bad_masks_before_loading_the_recipe(capsys, tmp_path, inputs, tiny_recipe_path, monkeypatch):
    image, mask = inputs
    (tmp_path / "notes.png").write_text("not pixels\n")
    Image.new("L", (20, 20), 255).save(tmp_path / "square.png")
    monkeypatch.setattr("unclip_core.cli.inpaint_cmd._pipeline", lambda args: pytest.fail("loaded the recipe"))
    for bad_mask, expected in ((tmp_path / "notes.png", "is not an image"), (tmp_path / "square.png", "proportions differ")):
        status, _, stderr = run(capsys, "inpaint", image, bad_mask, "a cat", "-r", tiny_recipe_path, "-o", tmp_path / "x.png")
        assert status == 2 and stderr.startswith("unclip: error: mask") and expected in stderr
        assert stderr.count("\n") == 1
    status, _, stderr = run(capsys, "inpaint", image, mask, "a cat", "--resample", 0, "-o", tmp_path / "x.png")
    assert status == 2 and "--resample must be at least 1" in stderr
    assert not (tmp_path / "x.png").exists()
