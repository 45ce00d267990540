"""runtime.memory_format: channels-last weights (the default) give the images of torch's default
layout up to float rounding, and the setting reaches every convolution. (Parity with diffusers
to 1e-4 is tested in the contiguous layout, tests/test_karlo_parity.py.)"""
from __future__ import annotations

import pytest
import torch

from unclip_core.errors import RecipeError
from unclip_core.recipe.assemble import build_pipeline, set_memory_format
from unclip_core.recipe.files import load_recipe


def _conv_weights(pipeline):
    models = [pipeline.decoder, *(u for u, _ in pipeline.upsamplers)]
    return [m.weight for model in models for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_channels_last_is_the_default_and_matches_the_contiguous_layout(registry, tiny_recipe_path):
    fast = build_pipeline(load_recipe(tiny_recipe_path, registry=registry), registry)
    plain = build_pipeline(load_recipe(tiny_recipe_path, ["runtime.memory_format=contiguous"], registry), registry)
    assert fast.settings.memory_format == "channels_last" and plain.settings.memory_format == "contiguous"
    fast_weights, plain_weights = _conv_weights(fast), _conv_weights(plain)
    assert fast_weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in fast_weights)
    assert sum(not w.is_contiguous() for w in fast_weights) > len(fast_weights) // 2  # 1x1 kernels are both
    assert all(w.is_contiguous() for w in plain_weights)
    expected = plain.generate_tensors(["a red circle", "two blue squares"], seed=3)
    got = fast.generate_tensors(["a red circle", "two blue squares"], seed=3)
    assert got.is_contiguous() or got.is_contiguous(memory_format=torch.channels_last)
    # rounding differs; random tiny weights and guidance amplify it at a few pixels only
    assert float((got - expected).abs().max()) < 2e-2
    assert float(((got - expected) ** 2).mean()) < 1e-7  # a wrong layout or weight gives ~1e-1


def test_unknown_memory_format_is_a_recipe_error(registry, tiny_recipe_path, tiny_pipeline):
    with pytest.raises(RecipeError, match=r"runtime.memory_format: Input should be 'channels_last' or 'contiguous'"):
        load_recipe(tiny_recipe_path, ["runtime.memory_format=nhwc"], registry)
    with pytest.raises(RecipeError, match=r"runtime.memory_format: 'nhwc' is not one of"):
        set_memory_format(tiny_pipeline, "nhwc")
