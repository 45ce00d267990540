"""Components whose weights come from a file are built without drawing random initial values
(start-up time, docs/benchmarks.md "Start-up") — and still hold exactly the file's weights."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from unclip_core.recipe.assemble import build_component
from unclip_core.recipe.files import load_recipe
from unclip_core.weights import random_init_skipped


@pytest.fixture(scope="module")
def shapes():
    return load_recipe("shapes")


def test_a_component_with_weights_draws_no_random_numbers_yet_holds_the_files_weights(shapes):
    before = torch.get_rng_state()
    decoder = build_component(shapes.decoder)
    assert torch.equal(torch.get_rng_state(), before), "random initial values were drawn only to be overwritten"
    stored = load_file(str(shapes.decoder.weights))
    state = decoder.state_dict()
    assert set(stored) == set(state)
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor.to(state[name].dtype)), name


def test_a_component_without_weights_still_gets_random_initial_values(shapes):
    """Not vacuous: the same build does draw from the RNG when no file fills the weights."""
    before = torch.get_rng_state()
    build_component(dataclasses.replace(shapes.decoder, weights=None))
    assert not torch.equal(torch.get_rng_state(), before)


def test_the_init_functions_come_back_even_when_the_build_fails():
    original = torch.nn.init.kaiming_uniform_
    with pytest.raises(RuntimeError), random_init_skipped():
        assert torch.nn.init.kaiming_uniform_ is not original
        raise RuntimeError("a plugin's build failed")
    assert torch.nn.init.kaiming_uniform_ is original
