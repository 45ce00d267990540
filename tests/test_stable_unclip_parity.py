"""Stable unCLIP parity: ``unclip import stable-unclip`` on small random diffusers folders
(:mod:`stable_unclip_folders`, built as diffusers' own tests build them, with what diffusers
initialises to zero or constants randomised), then the imported recipe against diffusers'
``StableUnCLIPPipeline`` and ``StableUnCLIPImg2ImgPipeline`` on the same weights and seed.

Both sides draw from one CPU generator seeded alike, and unclip's pipeline consumes it as
diffusers does (the prior's x_T and its DDPM steps' draws, the image embedding's noise, the
decoder's latents), so no latents are passed in. fp32, contiguous layout, guidance on
(diffusers' defaults: 4 for the prior, 10 for the decoder), with and without negative prompts;
the reference is loaded back from the saved folder (eval mode, as a user gets it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from stable_unclip_folders import save_image_to_image, save_text_to_image  # noqa: E402

PROMPTS = ["a red horse", "blue cat"]
NEGATIVES = ["ugly, blurry", "dark"]
TOLERANCE = 1e-4
STEPS = (3, 3)


@pytest.fixture(scope="module")
def text_to_image(tmp_path_factory):
    """``(diffusers StableUnCLIPPipeline, its folder, the imported recipe)``."""
    from diffusers import StableUnCLIPPipeline

    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    root = tmp_path_factory.mktemp("stable-unclip")
    folder = save_text_to_image(root / "su-tiny")
    recipe = import_stable_unclip(folder, root / "imported")
    return StableUnCLIPPipeline.from_pretrained(folder), folder, recipe


def load_ours(recipe: Path, steps: tuple[int, int] = STEPS, extra: tuple[str, ...] = ()):
    """The imported recipe with the step counts set, fp32 and contiguous (diffusers' own layout)."""
    from unclip_core.recipe.assemble import load_pipeline

    return load_pipeline(recipe, [
        f"prior.sampler.config.steps={steps[0]}", f"decoder.sampler.config.steps={steps[1]}",
        "runtime.precision=fp32", "runtime.memory_format=contiguous", *extra,
    ])


def diffusers_images(pipe, seed: int, negative: list[str] | None, steps: tuple[int, int] = STEPS, **kwargs) -> torch.Tensor:
    images = pipe(
        PROMPTS, generator=torch.Generator().manual_seed(seed), prior_num_inference_steps=steps[0],
        num_inference_steps=steps[1], negative_prompt=negative, output_type="np", **kwargs,
    ).images
    return torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)


def ours_images(pipeline, seed: int, negative: list[str] | None, prompts: list[str] = PROMPTS) -> torch.Tensor:
    return (pipeline.generate_tensors(prompts, seed=seed, negative_prompt=negative) * 0.5 + 0.5).clamp(0, 1)


def assert_close(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert got.shape == expected.shape, what
    error = float((got - expected).abs().max())
    assert error <= TOLERANCE, f"{what}: max abs difference {error:.3g}"


@pytest.mark.parametrize("negative", [None, NEGATIVES], ids=["no-negative", "negative"])
def test_imported_stable_unclip_matches_diffusers(text_to_image, negative):
    """Final images within 1e-4 for two seeds, guidance on, with and without negative prompts."""
    pipe, _, recipe = text_to_image
    ours = load_ours(recipe)
    assert ours.settings.prior_guidance_scale == 4.0 and ours.settings.decoder_guidance_scale == 10.0
    images = []
    for seed in (0, 1):
        expected = diffusers_images(pipe, seed, negative)
        assert_close(ours_images(ours, seed, negative), expected, f"seed {seed}")
        assert float(expected.std()) > 0.02, "the images must have content"
        images.append(expected)
    assert float((images[0] - images[1]).abs().max()) > 0.05, "the seed must matter"


def test_negative_prompt_and_noise_level_matter(text_to_image):
    """Not vacuous: the negative prompt and the noise level each change diffusers' image, and
    ours follows (noise level 500 through the recipe's decoder.config.noise_level)."""
    pipe, _, recipe = text_to_image
    plain, negative = diffusers_images(pipe, 0, None), diffusers_images(pipe, 0, NEGATIVES)
    assert float((plain - negative).abs().max()) > 0.01
    noised = diffusers_images(pipe, 0, None, noise_level=500)
    assert float((plain - noised).abs().max()) > 0.01
    ours = load_ours(recipe, extra=("decoder.config.noise_level=500",))
    assert_close(ours_images(ours, 0, None), noised, "noise level 500")


def test_generate_with_n_images_per_prompt(text_to_image):
    """Two images per prompt: prompt-major, as diffusers' num_images_per_prompt."""
    pipe, _, recipe = text_to_image
    ours = load_ours(recipe)
    expected = pipe(
        PROMPTS, generator=torch.Generator().manual_seed(3), prior_num_inference_steps=STEPS[0],
        num_inference_steps=STEPS[1], num_images_per_prompt=2, negative_prompt=NEGATIVES, output_type="np",
    ).images
    expected = torch.from_numpy(np.asarray(expected)).permute(0, 3, 1, 2)
    got = (ours.generate_tensors(PROMPTS, n=2, seed=3, negative_prompt=NEGATIVES) * 0.5 + 0.5).clamp(0, 1)
    assert_close(got, expected, "n=2")


# --------------------------------------------------------------------------------------
# The img2img folder (image encoder, no prior), with Karlo's prior
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def karlo_and_img2img(tmp_path_factory):
    """``(karlo folder, img2img folder, the img2img folder imported with Karlo's imported prior)``."""
    from diffusers.pipelines.deprecated.unclip import UnCLIPPipeline

    from test_karlo_parity import dummy_components
    from unclip_plugins.karlo.importer import import_karlo
    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    root = tmp_path_factory.mktemp("stable-unclip-img2img")
    with torch.random.fork_rng(devices=[]):
        UnCLIPPipeline(**dummy_components()).save_pretrained(root / "karlo-tiny", safe_serialization=True)
    karlo = import_karlo(root / "karlo-tiny", root / "karlo-imported")
    folder = save_image_to_image(root / "su-img2img-tiny", seed=4)
    recipe = import_stable_unclip(folder, root / "imported", prior=karlo)
    return root / "karlo-tiny", folder, recipe


def karlo_fed_stable_unclip(karlo: Path, img2img: Path):
    """diffusers' StableUnCLIPPipeline given Karlo's prior, as its documentation builds it:
    Karlo's tokenizer, text encoder and prior, and a DDPMScheduler from Karlo's prior
    scheduler's config; the rest from the Stable unCLIP folder."""
    from diffusers import DDPMScheduler, PriorTransformer, StableUnCLIPImg2ImgPipeline, StableUnCLIPPipeline, UnCLIPScheduler

    decoder = StableUnCLIPImg2ImgPipeline.from_pretrained(img2img)
    parts = {k: v for k, v in decoder.components.items() if k not in ("feature_extractor", "image_encoder")}
    return StableUnCLIPPipeline(
        prior_tokenizer=transformers.CLIPTokenizer.from_pretrained(karlo / "tokenizer"),
        prior_text_encoder=transformers.CLIPTextModelWithProjection.from_pretrained(karlo / "text_encoder").eval(),
        prior=PriorTransformer.from_pretrained(karlo / "prior").eval(),
        prior_scheduler=DDPMScheduler.from_config(UnCLIPScheduler.from_pretrained(karlo / "prior_scheduler").config),
        **parts,
    )


@pytest.mark.parametrize("negative", [None, NEGATIVES], ids=["no-negative", "negative"])
def test_karlo_prior_feeding_stable_unclip_matches_diffusers(karlo_and_img2img, negative):
    """The mixed system: Karlo's prior into the Stable unCLIP decoder, against diffusers'
    StableUnCLIPPipeline given Karlo's prior; two seeds, within 1e-4."""
    karlo, img2img, recipe = karlo_and_img2img
    pipe = karlo_fed_stable_unclip(karlo, img2img)
    ours = load_ours(recipe)
    assert ours.prior.declared.embed_dim == ours.decoder.declared.embed_dim == 32
    for seed in (0, 1):
        assert_close(ours_images(ours, seed, negative), diffusers_images(pipe, seed, negative), f"seed {seed}")


def input_image(seed: int):
    """diffusers' img2img test's input: a random 32 px PIL image."""
    from PIL import Image

    array = torch.rand((32, 32, 3), generator=torch.Generator().manual_seed(seed)).numpy()
    return Image.fromarray((array * 255).round().astype("uint8"))


@pytest.mark.parametrize("negative", [None, NEGATIVES[:1]], ids=["no-negative", "negative"])
def test_image_variation_matches_stable_unclip_img2img(karlo_and_img2img, negative):
    """StableUnCLIPImg2ImgPipeline (image + caption → image): the recipe's image tower embeds
    the image (raw, not unit-normalised), the decoder reads it noised; two seeds, within 1e-4."""
    from diffusers import StableUnCLIPImg2ImgPipeline

    _, img2img, recipe = karlo_and_img2img
    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(img2img)
    ours = load_ours(recipe)
    prompt = ["an anime racoon running a marathon"]
    for seed in (0, 1):
        image = input_image(seed)
        expected = pipe(
            image, prompt, generator=torch.Generator().manual_seed(seed), num_inference_steps=STEPS[1],
            negative_prompt=negative, output_type="np",
        ).images
        expected = torch.from_numpy(np.asarray(expected)).permute(0, 3, 1, 2)
        generator = ours.generator(seed)
        embed = ours.encode_image([image])
        got = (ours.decode(embed, ours.encode_text(prompt, negative), generator) * 0.5 + 0.5).clamp(0, 1)
        assert_close(got, expected, f"seed {seed}")


def test_img2img_on_a_stable_unclip_recipe(text_to_image):
    """img2img runs on the imported recipe (its saved DDIM scheduler starts from the noised
    latents as diffusers' img2img loop does, see test_saved_scheduler): at strength 0 nothing
    is denoised (the prompt does not matter), a higher strength departs from that, and the
    negative prompt reaches the decoder."""
    _, _, recipe = text_to_image
    ours = load_ours(recipe)
    image = input_image(7)
    kept = ours.img2img_tensors(image, PROMPTS[:1], strength=0.0, seed=0)
    assert torch.equal(kept, ours.img2img_tensors(image, PROMPTS[1:], strength=0.0, seed=0))
    half = ours.img2img_tensors(image, PROMPTS[:1], strength=0.7, seed=0)
    negative = ours.img2img_tensors(image, PROMPTS[:1], strength=0.7, seed=0, negative_prompt=NEGATIVES[:1])
    assert half.shape == kept.shape == (1, 3, 32, 32)
    assert float((half - kept).abs().max()) > 0.01 and float((half - negative).abs().max()) > 1e-3
