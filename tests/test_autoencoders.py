"""The autoencoder kind (``decoder.autoencoder``) and the latent decoder path of the pipeline.

The ``vq`` and ``kl`` components are checked against diffusers' ``VQModel`` and
``AutoencoderKL`` built directly with the same weights; the recipe slot is checked for its
one-line errors; the pipeline's latent path against diffusers' Kandinsky pipeline lives in
tests/test_kandinsky22_parity.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from diffusers import AutoencoderKL, VQModel
from safetensors.torch import save_file

from unclip_core.errors import CheckpointError, RecipeError
from unclip_core.recipe.assemble import load_pipeline
from unclip_plugins.autoencoders import KLAutoencoder, KLConfig, VQAutoencoder, VQConfig

TESTS = Path(__file__).parent
TINY_LATENT = TESTS / "recipes" / "tiny-latent.yaml"

VQ_SETTINGS = dict(
    block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, layers_per_block=1,
    norm_num_groups=8, norm_type="spatial", num_vq_embeddings=12, vq_embed_dim=4,
)
KL_SETTINGS = dict(
    block_out_channels=[16, 32], down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
    up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, layers_per_block=1,
    norm_num_groups=8, scaling_factor=0.5,
)


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter drawn at random (diffusers starts norms at 1/0 and some convs at 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


def _images(seed: int, size: int = 16) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@torch.no_grad()
def test_vq_encodes_and_decodes_as_diffusers_vqmodel():
    reference = _randomised(VQModel(**VQ_SETTINGS), 0)
    ours = VQAutoencoder(VQConfig(**VQ_SETTINGS)).eval()
    ours.model.load_state_dict(reference.state_dict())
    images = _images(1)
    latents = reference.encode(images).latents
    assert ours.latent_channels == 4 and ours.downscale == 2
    assert torch.equal(ours.encode(images), latents)
    assert torch.equal(ours.decode(latents), reference.decode(latents, force_not_quantize=True).sample)
    quantizing = VQAutoencoder(VQConfig(**VQ_SETTINGS, quantize=True, latent_scale=2.0)).eval()
    quantizing.model.load_state_dict(reference.state_dict())
    assert torch.equal(quantizing.encode(images), latents * 2.0)
    assert torch.equal(quantizing.decode(latents * 2.0), reference.decode(latents).sample)
    assert not torch.equal(reference.decode(latents).sample, ours.decode(latents))  # the codebook mattered


@torch.no_grad()
def test_kl_encodes_and_decodes_as_diffusers_autoencoderkl():
    reference = _randomised(AutoencoderKL(**KL_SETTINGS), 2)
    ours = KLAutoencoder(KLConfig(**KL_SETTINGS)).eval()
    ours.model.load_state_dict(reference.state_dict())
    images = _images(3)
    posterior = reference.encode(images).latent_dist
    assert ours.downscale == 2
    assert torch.equal(ours.encode(images), posterior.mode() * 0.5)
    sampled = posterior.sample(torch.Generator().manual_seed(4)) * 0.5
    assert torch.equal(ours.encode(images, torch.Generator().manual_seed(4)), sampled)
    assert torch.equal(ours.decode(sampled), reference.decode(sampled / 0.5).sample)


def _recipe(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(TINY_LATENT.read_text())
    change(data)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_wrong_shaped_autoencoder_weights_are_one_line_naming_the_slot(tmp_path):
    other = VQModel(**{**VQ_SETTINGS, "block_out_channels": [32, 32]})
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "movq.safetensors"))
    path = _recipe(tmp_path, lambda d: d["decoder"]["autoencoder"].__setitem__("weights", "movq.safetensors"))
    with pytest.raises(CheckpointError) as caught:
        load_pipeline(path)
    message = str(caught.value)
    assert message.startswith("decoder.autoencoder.weights:") and "\n" not in message
    assert "shape" in message


def test_autoencoder_weights_load_into_the_pipeline(tmp_path):
    """Right-shaped weights under the component's names are the ones the pipeline decodes with."""
    model = _randomised(VQModel(**VQ_SETTINGS), 5)
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "movq.safetensors"))
    path = _recipe(tmp_path, lambda d: d["decoder"]["autoencoder"].__setitem__("weights", "movq.safetensors"))
    pipeline = load_pipeline(path, ["runtime.memory_format=contiguous"])
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = model.decode(latents, force_not_quantize=True).sample.clamp(-1, 1)
    assert torch.allclose(pipeline.to_pixels(latents), expected, atol=1e-5)


@pytest.mark.parametrize(
    "change, where, words",
    [
        (lambda d: d["decoder"].pop("autoencoder"), "decoder.autoencoder", "needs an autoencoder"),
        (lambda d: d["decoder"]["autoencoder"].__setitem__("type", "vqq"), "decoder.autoencoder.type", "did you mean 'vq'"),
        (lambda d: d["decoder"]["autoencoder"]["config"].__setitem__("latent_channels", 3), "decoder.autoencoder", "3-channel"),
        (lambda d: d["decoder"]["autoencoder"]["config"].__setitem__("block_out_channels", [32, 48]),
         "decoder.autoencoder.config", "multiples of 32"),
        (lambda d: d["decoder"]["config"].__setitem__("image_size", 33), "decoder.autoencoder", "not a multiple"),
        (lambda d: d["decoder"]["autoencoder"]["config"].__setitem__("latnt_channels", 3),
         "decoder.autoencoder.config.latnt_channels", "unknown setting"),
    ],
)
def test_bad_autoencoder_slots_are_recipe_errors(tmp_path, change, where, words):
    path = _recipe(tmp_path, change)
    with pytest.raises(RecipeError) as caught:
        load_pipeline(path)
    assert where in str(caught.value) and words in str(caught.value)


def test_a_pixel_decoder_takes_no_autoencoder(tmp_path):
    tiny = yaml.safe_load((TESTS / "recipes" / "tiny.yaml").read_text())
    tiny["decoder"]["autoencoder"] = yaml.safe_load(TINY_LATENT.read_text())["decoder"]["autoencoder"]
    path = tmp_path / "pixel.yaml"
    path.write_text(yaml.safe_dump(tiny))
    with pytest.raises(RecipeError, match="decoder.autoencoder: decoder 'unclip-decoder' draws pixels"):
        load_pipeline(path)


def test_latent_stack_generates_images_of_the_decoders_size():
    pipeline = load_pipeline(TINY_LATENT)
    assert pipeline.decoder_shape(2) == (2, 4, 16, 16)
    images = pipeline.generate_tensors("a red circle", n=2, seed=3)
    assert images.shape == (2, 3, 32, 32) and images.abs().max() <= 1
    assert torch.equal(images, pipeline.generate_tensors("a red circle", n=2, seed=3))
