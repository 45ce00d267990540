"""Inpainting with a latent decoder: RePaint on the autoencoder's latents (unclip_core/operations/inpainting.py).

The known image is encoded once, a latent cell is held to it only where its whole pixel patch
is known, and the known pixels are pasted back exactly after decoding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unclip_core.inpainting import InpaintRegion
from unclip_core.recipe.assemble import load_pipeline

TESTS = Path(__file__).resolve().parent


def test_a_latent_cell_is_repainted_when_any_pixel_of_its_patch_is():
    """Hand-computed: one white pixel at row 3, column 5 of an 8 × 8 mask marks only the latent
    cell (0, 1) at downscale 4; a 2 × 2 white block across the centre marks all four cells."""
    mask = torch.zeros(8, 8)
    mask[3, 5] = 1
    region = InpaintRegion.from_inputs(torch.zeros(1, 3, 8, 8), mask)
    assert region.latent_repaint_mask(8, 4).tolist() == [[[[False, True], [False, False]]]]
    centre = torch.zeros(8, 8)
    centre[3:5, 3:5] = 1
    region = InpaintRegion.from_inputs(torch.zeros(1, 3, 8, 8), centre)
    assert region.latent_repaint_mask(8, 4).all()


def test_a_tiny_latent_stack_inpaints_and_keeps_the_known_pixels_exactly():
    pipeline = load_pipeline(str(TESTS / "recipes" / "tiny-latent.yaml"))
    size = pipeline.image_size
    image = torch.rand(1, 3, size, size) * 2 - 1
    mask = torch.zeros(size, size)
    mask[: size // 2, : size // 2] = 1
    result = pipeline.inpaint_tensors(image, mask, "a red circle", n=2, seed=0)
    assert result.shape == (2, 3, size, size) and torch.isfinite(result).all()
    known = ~mask.bool()
    assert torch.equal(result[:, :, known], image.expand(2, -1, -1, -1)[:, :, known])
    assert not torch.equal(result[0], result[1])  # the hole is drawn, once per sample


@pytest.fixture(scope="module")
def shapes_latent():
    return load_pipeline("shapes-latent")


def test_shapes_latent_brings_an_erased_object_back(load_bench_script, shapes_latent):
    """bench/inpaint_shapes.py's check: erase one object of a two-object scene, inpaint with the
    full caption, judge with the shapes checker (docs/benchmarks.md). Without RePaint in the
    latents the decoder would draw a new scene, whose objects rarely fall in the hole."""
    bench = load_bench_script("inpaint_shapes")
    result = bench.run_method(shapes_latent, bench.draw_cases(6, seed=0, margin=0.04), seed=0, resample=1, save=None, label="latent")
    assert result["figures"]["exact"] >= 4 / 6, result["figures"]


def test_shapes_latent_inpainting_keeps_the_scene_outside_the_mask(load_bench_script, shapes_latent):
    bench = load_bench_script("inpaint_shapes")
    (case,) = bench.draw_cases(1, seed=3, margin=0.04)
    image, mask = bench.render(case.scene, 64), bench.mask_image(case.box, 64)
    (result,) = shapes_latent.inpaint(image, mask, case.caption, seed=0)
    keep = np.asarray(mask.convert("L")) <= 127
    assert np.array_equal(np.asarray(result)[keep], np.asarray(image.convert("RGB"))[keep])
    assert isinstance(result, Image.Image) and result.size == (64, 64)
