"""The toy plugin's own tests, as any third-party plugin would write them: unclip's contract
suite on its component, plus one check that its entry point is found."""
import pytest
import torch

from unclip_core.contracts import check_component, check_plugin_registers, make_text_encoding
from unclip_toy import TextAsImageConfig, TextAsImagePrior


def test_registered_through_the_entry_point():
    spec = check_plugin_registers("prior", "text-as-image", distribution="unclip-toy-plugin")
    assert spec.factory is TextAsImagePrior and spec.config_model is TextAsImageConfig


@pytest.mark.parametrize("noise, stochastic", [(0.0, False), (0.1, True)])
def test_keeps_the_prior_contract(noise, stochastic):
    check_component("prior", TextAsImagePrior, TextAsImageConfig(embed_dim=16, noise=noise), stochastic=stochastic)


def test_without_noise_the_image_embedding_is_the_text_embedding():
    text = make_text_encoding(3, 16, 8, 16, torch.Generator().manual_seed(0))
    prior = TextAsImagePrior(TextAsImageConfig())
    z = prior.sample(text, generator=torch.Generator().manual_seed(1), candidates=4)
    torch.testing.assert_close(z, text.embed)
