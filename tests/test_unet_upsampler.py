"""The ``unet-upsampler`` component and its training degradations.

References: the way diffusers' unCLIP pipeline feeds Karlo's super-resolution UNets (noisy
image concatenated with the bicubic, antialiased upsampled condition), a Gaussian kernel
written out by hand, and PIL's JPEG codec.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from unclip_core import InputError, UpsamplerCondition
from unclip_core.registry import discover
from unclip_plugins.unet_upsampler import UnetUpsampler, UnetUpsamplerConfig
from unclip_plugins.unet_upsampler.conditioning import paired_random_crop
from unclip_plugins.unet_upsampler.degrade import (
    blur_degradation,
    bsr_degradation,
    gaussian_blur,
    jpeg_round_trip,
)

LOW, HIGH = 8, 32
TINY = dict(input_size=LOW, image_size=HIGH, block_out_channels=[32, 64], layers_per_block=1)


def make_upsampler(seed: int = 0, **overrides) -> UnetUpsampler:
    torch.manual_seed(seed)
    return UnetUpsampler(UnetUpsamplerConfig(**{**TINY, **overrides})).eval()


def smooth_images(batch: int, size: int = HIGH, seed: int = 1) -> torch.Tensor:
    """Images with structure at several scales (so blur and resizing visibly change them)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 8, size // 8, generator=g) * 2 - 1
    fine = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return (0.7 * F.interpolate(coarse, size=size, mode="bilinear") + 0.3 * fine).clamp(-1, 1)


def make_inputs(batch: int = 2, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, 3, HIGH, HIGH, generator=g)
    t = torch.randint(1, 1000, (batch,), generator=g)
    return x_t, t, UpsamplerCondition(smooth_images(batch, LOW, seed + 1))


@pytest.fixture(scope="module")
def upsampler() -> UnetUpsampler:
    return make_upsampler()


# ------------------------------------------------------------------ the model
@torch.no_grad()
def test_output_at_output_size_from_a_low_resolution_condition(upsampler):
    x_t, t, cond = make_inputs()
    assert upsampler(x_t, t, cond).shape == (2, 3, HIGH, HIGH)
    learned = make_upsampler(variance_type="learned_range")
    assert learned(x_t, t, cond).shape == (2, 6, HIGH, HIGH)


@torch.no_grad()
def test_forward_is_karlos_super_res_call(upsampler):
    """diffusers' pipeline: ``unet(cat([x_t, interpolate(low, bicubic, antialias)]), t)``."""
    x_t, t, cond = make_inputs()
    upscaled = F.interpolate(cond.low_res, size=[HIGH, HIGH], mode="bicubic", align_corners=False, antialias=True)
    expected = upsampler.unet(torch.cat([x_t, upscaled], dim=1), t).sample
    torch.testing.assert_close(upsampler(x_t, t, cond), expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_condition_changes_only_its_own_sample(upsampler):
    x_t, t, cond = make_inputs()
    base = upsampler(x_t, t, cond)
    low_res = cond.low_res.clone()
    low_res[0] = -low_res[0]
    out = upsampler(x_t, t, UpsamplerCondition(low_res))
    assert (out[0] - base[0]).abs().max() > 1e-3
    torch.testing.assert_close(out[1], base[1], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_runs_at_sizes_other_than_the_training_crop(upsampler):
    """Convolutional: the same weights serve a 16-pixel crop and a 48-pixel image."""
    for size in (16, 48):
        x_t = torch.randn(1, 3, size, size)
        assert upsampler(x_t, torch.tensor([10]), UpsamplerCondition(torch.zeros(1, 3, size // 4, size // 4))).shape == (
            1,
            3,
            size,
            size,
        )


@torch.no_grad()
def test_last_step_unet_serves_exactly_t_zero():
    model = make_upsampler(last_step_unet=True)
    x_t, _, cond = make_inputs(batch=3)
    t = torch.tensor([0, 400, 0])
    upscaled = F.interpolate(cond.low_res, size=[HIGH, HIGH], mode="bicubic", align_corners=False, antialias=True)
    inputs = torch.cat([x_t, upscaled], dim=1)
    first, last = model.unet(inputs, t).sample, model.unet_last(inputs, t).sample
    expected = torch.stack([last[0], first[1], last[2]])
    torch.testing.assert_close(model(x_t, t, cond), expected, rtol=1e-5, atol=1e-5)


def test_safetensors_round_trip(tmp_path):
    model = make_upsampler(seed=3, last_step_unet=True)
    path = tmp_path / "upsampler.safetensors"
    save_file(model.state_dict(), str(path))
    loaded = make_upsampler(seed=4, last_step_unet=True)
    loaded.load_state_dict(load_file(str(path)), strict=True)
    x_t, t, cond = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x_t, t, cond), model(x_t, t, cond), rtol=0, atol=0)


def test_training_loss_decreases_on_a_fixed_batch():
    model = make_upsampler(seed=5).train()
    batch = {"image": smooth_images(4, seed=6)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = model.training_loss(batch, torch.Generator().manual_seed(7))  # same crops, t and noise
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_learned_range_loss_trains_the_variance_head():
    model = make_upsampler(variance_type="learned_range")
    loss = model.training_loss({"image": smooth_images(2)}, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.unet.conv_out.weight.grad[3:].abs().sum() > 0  # the variance channels learn


def test_training_loss_is_deterministic_per_seed():
    model = make_upsampler(degradation="bsr")
    batch = {"image": smooth_images(2)}
    losses = [model.training_loss(batch, torch.Generator().manual_seed(s)).item() for s in (0, 0, 1)]
    assert losses[0] == losses[1] != losses[2]


def test_training_crop_is_a_quarter_of_the_area_and_shared(upsampler):
    image = smooth_images(4)
    target, cond = upsampler.training_inputs(image, torch.Generator().manual_seed(0))
    assert target.shape == cond.low_res.shape == (4, 3, HIGH // 2, HIGH // 2)
    assert target.shape[-1] * target.shape[-2] * 4 == HIGH * HIGH
    # the target is a window of the image, and the condition the same window of the upsampled
    # degraded image (the degradation draws are replayed with the same seed)
    low_res = upsampler.degrade(image, torch.Generator().manual_seed(0))
    upscaled = F.interpolate(low_res, size=[HIGH, HIGH], mode="bicubic", align_corners=False, antialias=True)
    crop = HIGH // 2
    for b in range(4):
        windows = [
            (top, left)
            for top in range(HIGH - crop + 1)
            for left in range(HIGH - crop + 1)
            if torch.equal(image[b, :, top : top + crop, left : left + crop], target[b])
        ]
        assert len(windows) == 1
        top, left = windows[0]
        torch.testing.assert_close(cond.low_res[b], upscaled[b, :, top : top + crop, left : left + crop])


def test_paired_crop_positions_vary():
    image = torch.arange(4 * 32 * 32, dtype=torch.float32).reshape(4, 1, 32, 32).expand(4, 3, 32, 32)
    target, condition = paired_random_crop(image, image + 10, 16, torch.Generator().manual_seed(0))
    torch.testing.assert_close(condition - target, torch.full_like(target, 10.0))
    corners = {int(target[b, 0, 0, 0]) - b * 32 * 32 for b in range(4)}
    assert len(corners) > 1


# ------------------------------------------------------------------ degradations
def hand_blur(image: torch.Tensor, sigma: float, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian exp(-x²/2σ²), normalised, with reflected borders — written out."""
    offsets = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    kernel1d = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel1d = kernel1d / kernel1d.sum()
    kernel2d = (kernel1d[:, None] * kernel1d[None, :]).float()
    pad = kernel_size // 2
    padded = F.pad(image[None], (pad, pad, pad, pad), mode="reflect")
    weight = kernel2d.expand(3, 1, kernel_size, kernel_size)
    return F.conv2d(padded, weight, groups=3)[0]


def test_gaussian_blur_matches_a_hand_computed_kernel():
    images = smooth_images(2)
    sigmas = torch.tensor([0.8, 1.7])
    out = gaussian_blur(images, sigmas)
    for b, sigma in enumerate(sigmas.tolist()):
        kernel_size = 2 * math.ceil(3 * sigma) + 1
        torch.testing.assert_close(out[b], hand_blur(images[b], sigma, kernel_size), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gaussian_blur(images, torch.zeros(2)), images)


def test_jpeg_round_trip_loses_more_at_lower_quality():
    image = smooth_images(1)
    errors = [(jpeg_round_trip(image, [q]) - image).abs().mean().item() for q in (95, 50, 10)]
    assert errors[0] < errors[1] < errors[2]
    assert jpeg_round_trip(image, [95]).shape == image.shape


@pytest.mark.parametrize("kind", ["blur", "bsr"])
def test_degradations_are_seeded_change_the_image_and_keep_shape_and_range(kind):
    images = smooth_images(3)

    def degrade(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        if kind == "blur":
            return blur_degradation(images, LOW, (0.4, 1.0), g)
        return bsr_degradation(images, LOW, g, sigma_range=(0.4, 1.0), noise_std_range=(0.01, 0.1), jpeg_quality_range=(30, 95))

    first, again, other = degrade(0), degrade(0), degrade(1)
    assert first.shape == (3, 3, LOW, LOW)
    assert first.min() >= -1 and first.max() <= 1
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    plain = F.interpolate(images, size=[LOW, LOW], mode="bicubic", antialias=True).clamp(-1, 1)
    assert (first - plain).abs().mean() > 1e-3  # more than a plain downsample


# ------------------------------------------------------------------ config and registry
def test_declares_and_registration():
    cfg = UnetUpsamplerConfig(**TINY)
    declared = cfg.declares()
    assert (declared.image_size, declared.input_size, declared.embed_dim) == (HIGH, LOW, None)
    spec = discover().get("upsampler", "unet-upsampler")
    assert spec.config_model is UnetUpsamplerConfig
    assert isinstance(spec.build(cfg), UnetUpsampler)
    for name, field in UnetUpsamplerConfig.model_fields.items():
        assert field.description, f"{name} has no description"


def test_bad_settings_and_inputs_are_rejected(upsampler):
    with pytest.raises(ValidationError, match="smaller"):
        UnetUpsamplerConfig(**{**TINY, "input_size": HIGH})
    with pytest.raises(ValidationError, match="crop size"):
        UnetUpsamplerConfig(**{**TINY, "crop_fraction": 0.35})
    with pytest.raises(ValidationError, match="jpeg_quality_range"):
        UnetUpsamplerConfig(**{**TINY, "jpeg_quality_range": (30, 120)})
    x_t, t, _ = make_inputs()
    with pytest.raises(InputError, match="low-resolution"):
        upsampler(x_t, t, UpsamplerCondition(torch.zeros(3, 3, LOW, LOW)))
    with pytest.raises(InputError, match="training images"):
        upsampler.training_loss({"image": torch.zeros(2, 3, LOW, LOW)}, torch.Generator())
