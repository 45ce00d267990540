"""The pipeline's operations on the tiny random-weight stack (tests/recipes/tiny.yaml).

Every check compares with a reference computed here by other means: the chain assembled by
hand from the components, open_clip's own model for similarities, slerp and softmax written
out, pixel values worked out from the input file, or (for DDIM inversion, which is only
approximate) the error a *random* latent makes.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import random
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageDraw

from unclip_core.diffusion.slerp import slerp
from unclip_core.errors import CheckpointError, InputError, RecipeError, UnclipError
from unclip_core.images import load_image, tensor_to_pil
from unclip_core.interfaces import DecoderCondition, UpsamplerCondition
from unclip_core.recipe.assemble import build_component, build_pipeline, load_pipeline
from unclip_core.recipe.validate import validate_recipe
from unclip_core.weights import save_weights

PROMPTS = ["a red circle", "a blue square"]


# ---------------------------------------------------------------------------------- helpers
def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def max_level_difference(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


def shape_image(size: tuple[int, int] = (16, 16), background=(40, 90, 200), fill=(220, 30, 30)) -> Image.Image:
    """A smooth, simple scene: one disc on a flat background."""
    image = Image.new("RGB", size, background)
    w, h = size
    ImageDraw.Draw(image).ellipse((w // 5, h // 5, w - w // 5 - 1, h - h // 5 - 1), fill=fill)
    return image


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text, f"not a one-line message: {text!r}"
    return text


def variant(tiny_recipe_data: dict, tiny_recipe_path: Path, registry, edit) -> object:
    """The tiny pipeline with some settings changed, built the way a recipe file is."""
    data = copy.deepcopy(tiny_recipe_data)
    edit(data)
    resolved = validate_recipe(data, registry, base_dir=tiny_recipe_path.parent, source=tiny_recipe_path)
    return build_pipeline(resolved, registry)


class ConditionalBranch:
    """The decoder called with its condition and nothing else: what guidance scale 1 must be."""

    def __init__(self, decoder, cond: DecoderCondition):
        self.decoder, self.cond = decoder, cond
        for name in ("prediction_type", "variance_type", "schedule", "clip_range", "device", "dtype"):
            setattr(self, name, getattr(decoder, name))

    def __call__(self, x_t, t):
        return self.decoder(x_t, t, self.cond)


class HandGuided(ConditionalBranch):
    """Classifier-free guidance written out: two separate calls, ``u + s (c − u)``."""

    def __init__(self, decoder, cond: DecoderCondition, null: DecoderCondition, scale: float):
        super().__init__(decoder, cond)
        self.null, self.scale = null, scale

    def __call__(self, x_t, t):
        c = self.decoder(x_t, t, self.cond)
        u = self.decoder(x_t, t, self.null)
        return u + self.scale * (c - u)


def caption_condition(z, text, drop: bool) -> DecoderCondition:
    flags = torch.full((z.shape[0],), drop, dtype=torch.bool)
    return DecoderCondition(z, flags, flags.clone(), text.embed, text.tokens, text.mask)


@pytest.fixture(scope="module")
def images_on_disk(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    found = {}
    for name, image in {
        "a": shape_image((40, 40)),
        "b": shape_image((24, 30), background=(240, 240, 20), fill=(20, 130, 30)),
        "c": shape_image((32, 32), background=(10, 10, 10), fill=(250, 250, 250)),
    }.items():
        found[name] = folder / f"{name}.png"
        image.save(found[name])
    return found


# ---------------------------------------------------------------------------------- generate
@pytest.fixture(scope="module")
def two_prompts_two_each(tiny_pipeline):
    return tiny_pipeline.generate(PROMPTS, n=2, seed=1)


def test_generate_gives_n_rgb_images_per_prompt_at_the_final_size(two_prompts_two_each, tiny_recipe_data):
    final = tiny_recipe_data["upsamplers"][-1]["config"]["image_size"]
    assert len(two_prompts_two_each) == 4
    for image in two_prompts_two_each:
        assert isinstance(image, Image.Image)
        assert image.mode == "RGB" and image.size == (final, final)
    assert max_level_difference(two_prompts_two_each[0], two_prompts_two_each[1]) > 0, "n copies of one image"


def test_generate_orders_images_prompt_major(tiny_pipeline, two_prompts_two_each):
    """["p", "q"] with n=2 must be the batch p, p, q, q: the same seed and that batch spelled
    out give the same pixels, while the interleaved batch p, q, p, q does not."""
    spelled_out = tiny_pipeline.generate([PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1]], n=1, seed=1)
    interleaved = tiny_pipeline.generate(PROMPTS * 2, n=1, seed=1)
    for got, want in zip(two_prompts_two_each, spelled_out):
        assert max_level_difference(got, want) == 0
    assert any(max_level_difference(g, w) > 0 for g, w in zip(two_prompts_two_each, interleaved))


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_pipeline):
    first = tiny_pipeline.generate(PROMPTS[0], n=1, seed=7)
    again = tiny_pipeline.generate(PROMPTS[0], n=1, seed=7)
    other = tiny_pipeline.generate(PROMPTS[0], n=1, seed=8)
    assert max_level_difference(first[0], again[0]) == 0
    assert max_level_difference(first[0], other[0]) > 0


@pytest.mark.parametrize("prompts", ["", "   ", [], [""], [3], None, ["fine", 3], ["fine", " "]])
def test_generate_refuses_bad_prompts(tiny_pipeline, prompts):
    with pytest.raises(InputError) as caught:
        tiny_pipeline.generate(prompts)
    one_line(caught.value)


def test_generate_refuses_n_below_one(tiny_pipeline):
    with pytest.raises(InputError, match="n must be at least 1"):
        tiny_pipeline.generate(PROMPTS[0], n=0)


# ---------------------------------------------------------------------------------- decoder conditioning
@torch.no_grad()
def test_generate_with_decoder_guidance_one_is_the_hand_assembled_conditional_chain(tiny_pipeline):
    """encode → prior → decoder (caption + image embedding, nothing else) → upsampler, put
    together here from the components with the same generator, equals ``generate`` when the
    decoder's guidance scale is 1."""
    pipe = tiny_pipeline
    unguided = dataclasses.replace(pipe, settings=dataclasses.replace(pipe.settings, decoder_guidance_scale=1.0))
    got = unguided.generate_tensors(PROMPTS, n=1, seed=4)

    generator = torch.Generator().manual_seed(4)
    text = pipe.encoder.encode_text(PROMPTS)
    z_i = pipe.prior.sample(
        text,
        sampler=pipe.prior_sampler,
        generator=generator,
        guidance_scale=pipe.settings.prior_guidance_scale,
        candidates=pipe.settings.prior_candidates,
    )
    size = pipe.decoder.config.image_size
    branch = ConditionalBranch(pipe.decoder, caption_condition(z_i, text, drop=False))
    base = pipe.decoder_sampler.sample(branch, (2, 3, size, size), generator=generator).clamp(-1, 1)
    upsampler, sampler = pipe.upsamplers[0]
    final = upsampler.config.image_size
    want = sampler.sample(upsampler.denoiser(UpsamplerCondition(base), 1.0), (2, 3, final, final), generator=generator)
    torch.testing.assert_close(got, want.clamp(-1, 1), atol=1e-5, rtol=0)


@torch.no_grad()
def test_decoder_guidance_is_uncond_plus_scale_times_difference(tiny_pipeline):
    pipe = tiny_pipeline
    text = pipe.encoder.encode_text(PROMPTS)
    z_i = F.normalize(torch.randn(2, text.embed.shape[1], generator=torch.Generator().manual_seed(0)), dim=-1)
    size = pipe.decoder.config.image_size
    cond, null = caption_condition(z_i, text, drop=False), caption_condition(z_i, text, drop=True)

    scale1 = pipe.decode(z_i, text, pipe.generator(3), guidance_scale=1.0)
    want1 = pipe.decoder_sampler.sample(ConditionalBranch(pipe.decoder, cond), (2, 3, size, size), generator=pipe.generator(3))
    torch.testing.assert_close(scale1, want1.clamp(-1, 1), atol=1e-5, rtol=0)

    scale3 = pipe.decode(z_i, text, pipe.generator(3), guidance_scale=3.0)
    want3 = pipe.decoder_sampler.sample(HandGuided(pipe.decoder, cond, null, 3.0), (2, 3, size, size), generator=pipe.generator(3))
    torch.testing.assert_close(scale3, want3.clamp(-1, 1), atol=1e-4, rtol=0)
    assert (scale3 - scale1).abs().max() > 0.05, "guidance had no effect: the test could not tell"


# ---------------------------------------------------------------------------------- inversion
@pytest.fixture(scope="module")
def inversion_pipeline(tiny_recipe_data, tiny_recipe_path, registry):
    """The tiny stack with 50 decoder steps and a v-predicting decoder.

    Why v: the first DDIM step from x_T estimates x0 = (x_T − √(1−ᾱ) ε) / √ᾱ with
    √ᾱ_999 ≈ 5e-5 under the cosine schedule, so any difference between the ε a *random*
    eps-model gives at x_T and the ε inversion used one step earlier is amplified ~10⁴ and
    clipped, and nothing comes back. A v-model's x0 = √ᾱ x_t − √(1−ᾱ) v divides by nothing,
    which leaves only DDIM inversion's own first-order error. (A trained eps-model is smooth
    enough for this not to matter; a random one is not.)
    """

    def edit(data):
        data["decoder"]["config"]["prediction_type"] = "v"
        data["decoder"]["sampler"]["config"]["steps"] = 50

    return variant(tiny_recipe_data, tiny_recipe_path, registry, edit)


def test_invert_gives_the_image_embedding_and_a_latent_of_the_decoders_shape(tiny_pipeline, images_on_disk):
    z_i, x_T = tiny_pipeline.invert(images_on_disk["a"])
    decoder = tiny_pipeline.decoder.config
    assert z_i.shape == (1, decoder.embed_dim)
    assert x_T.shape == (1, tiny_pipeline.decoder.in_channels, decoder.image_size, decoder.image_size)
    with torch.no_grad():
        want = F.normalize(tiny_pipeline.encoder.encode_image([load_image(images_on_disk["a"])]), dim=-1)
    torch.testing.assert_close(z_i, want)
    assert torch.isfinite(x_T).all()


def test_invert_then_decode_latent_gives_the_image_back(inversion_pipeline):
    """Reconstruction error against the error of decoding the same embedding from a random
    x_T (an unrelated image): measured ratio ≈ 0.04 at 50 steps, so 0.15 leaves margin. DDIM
    inversion's error is first order in the step size (ε is taken at the wrong end of each
    step), so 10 steps must do clearly worse (measured ≈ 3× the error of 50)."""
    pipe = inversion_pipeline
    image = shape_image((16, 16))  # at the decoder's size: no resampling in the reference
    x0 = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]

    z_i, x_T = pipe.invert(image)
    recon = pipe.decode_latent(z_i, x_T, upsample=False)
    assert recon.shape == x0.shape
    unrelated = pipe.decode_latent(z_i, torch.randn(x_T.shape, generator=torch.Generator().manual_seed(1)), upsample=False)
    error = (recon - x0).abs().mean().item()
    random_error = (unrelated - x0).abs().mean().item()
    assert error < 0.15 * random_error, (error, random_error)

    ddpm10 = type(pipe.decoder_sampler)(pipe.decoder_sampler.config.model_copy(update={"steps": 10}))
    coarse = dataclasses.replace(pipe, decoder_sampler=ddpm10)
    z10, x_T10 = coarse.invert(image)
    error10 = (coarse.decode_latent(z10, x_T10, upsample=False) - x0).abs().mean().item()
    assert error < 0.6 * error10, (error, error10)


# ---------------------------------------------------------------------------------- interpolation
def test_interpolate_slerp_endpoints_are_the_inputs_reconstructions(tiny_pipeline, images_on_disk):
    pipe = tiny_pipeline
    a, b = images_on_disk["a"], images_on_disk["b"]
    frames = pipe.interpolate(a, b, steps=3, x_T="slerp", seed=2)
    assert len(frames) == 3
    recon_a = tensor_to_pil(pipe.decode_latent(*pipe.invert(a), seed=2))[0]
    recon_b = tensor_to_pil(pipe.decode_latent(*pipe.invert(b), seed=2))[0]
    # ≤ 1 level: a batch of 3 and a batch of 1 may round differently in the last bit.
    assert max_level_difference(frames[0], recon_a) <= 1
    assert max_level_difference(frames[-1], recon_b) <= 1
    assert max_level_difference(recon_a, recon_b) > 10
    assert max_level_difference(frames[1], recon_a) > 0 and max_level_difference(frames[1], recon_b) > 0


def test_interpolate_fixed_endpoints_decode_each_embedding_from_the_seeded_noise(tiny_pipeline, images_on_disk):
    pipe = tiny_pipeline
    a, b = images_on_disk["a"], images_on_disk["b"]
    frames = pipe.interpolate(a, b, steps=4, x_T="fixed", seed=5)
    assert len(frames) == 4
    size = pipe.decoder.config.image_size
    noise = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        z_a = pipe.encoder.encode_image([load_image(a)])
        z_b = pipe.encoder.encode_image([load_image(b)])
    want_a = tensor_to_pil(pipe.decode_latent(z_a, noise, seed=5))[0]
    want_b = tensor_to_pil(pipe.decode_latent(z_b, noise, seed=5))[0]
    assert max_level_difference(frames[0], want_a) <= 1
    assert max_level_difference(frames[-1], want_b) <= 1
    assert max_level_difference(want_a, want_b) > 0


@pytest.mark.parametrize("steps, x_T", [(1, "fixed"), (0, "slerp"), (-3, "fixed"), (3, "sideways")])
def test_interpolate_refuses_bad_settings(tiny_pipeline, images_on_disk, steps, x_T):
    with pytest.raises(InputError) as caught:
        tiny_pipeline.interpolate(images_on_disk["a"], images_on_disk["b"], steps=steps, x_T=x_T)
    one_line(caught.value)


# ---------------------------------------------------------------------------------- text diffs
def test_text_diff_starts_at_the_reconstruction_and_moves_along_the_slerp(tiny_pipeline, images_on_disk, monkeypatch):
    pipe = tiny_pipeline
    image = images_on_disk["a"]
    decode_latent = pipe.decode_latent
    seen: list[torch.Tensor] = []

    def recording(image_embed, x_T, **kwargs):
        seen.append(image_embed.clone())
        return decode_latent(image_embed, x_T, **kwargs)

    monkeypatch.setattr(pipe, "decode_latent", recording)
    frames = pipe.text_diff(image, "a red circle", "a blue square", thetas=(0.0, 0.4), seed=1)
    monkeypatch.undo()

    assert len(frames) == 2
    recon = tensor_to_pil(pipe.decode_latent(*pipe.invert(image), seed=1))[0]
    assert max_level_difference(frames[0], recon) <= 1
    assert max_level_difference(frames[1], recon) > 0

    with torch.no_grad():
        z_i = pipe.encoder.encode_image([load_image(image)])
        z_t = pipe.encoder.encode_text(["a red circle", "a blue square"]).embed
    z_d = (z_t[1] - z_t[0]) / (z_t[1] - z_t[0]).norm()
    want = torch.cat([z_i, slerp(z_i, z_d[None], 0.4)])
    torch.testing.assert_close(seen[0], want, atol=1e-5, rtol=0)
    assert torch.allclose(seen[0].norm(dim=-1), torch.ones(2), atol=1e-5)


def test_text_diff_refuses_equal_or_empty_captions_and_no_thetas(tiny_pipeline, images_on_disk):
    for captions, thetas in (((" ", "a blue square"), (0.1,)), (("a cat", "a cat"), (0.1,)), (("a cat", "a dog"), ())):
        with pytest.raises(InputError) as caught:
            tiny_pipeline.text_diff(images_on_disk["a"], *captions, thetas=thetas)
        one_line(caught.value)


# ---------------------------------------------------------------------------------- CLIP
def open_clip_features(pipe, images, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit image and text features and the temperature straight from open_clip's model."""
    model = pipe.encoder.model
    with torch.no_grad():
        pixels_in = torch.stack([pipe.encoder.pil_transform(load_image(image)) for image in images])
        z_i = F.normalize(model.encode_image(pixels_in), dim=-1)
        z_t = F.normalize(model.encode_text(pipe.encoder.tokenize(labels).ids), dim=-1)
        return z_i, z_t, model.logit_scale.exp()


def test_classify_is_the_softmax_of_scaled_cosines(tiny_pipeline, images_on_disk):
    labels = ["a red circle", "a blue square", "a green triangle"]
    probabilities = tiny_pipeline.classify(images_on_disk["a"], labels)
    assert list(probabilities) == labels
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    z_i, z_t, scale = open_clip_features(tiny_pipeline, [images_on_disk["a"]], labels)
    want = torch.softmax(scale * z_i @ z_t.T, dim=-1)[0]
    assert [probabilities[label] for label in labels] == pytest.approx(want.tolist(), abs=1e-5)
    assert max(want) - min(want) > 1e-3, "uniform probabilities: the test could not tell"


def test_classify_refuses_repeated_or_missing_labels(tiny_pipeline, images_on_disk):
    for labels in (["a cat", "a cat"], [], [""]):
        with pytest.raises(InputError) as caught:
            tiny_pipeline.classify(images_on_disk["a"], labels)
        one_line(caught.value)


def test_rerank_orders_by_cosine(tiny_pipeline, images_on_disk):
    images = [images_on_disk[k] for k in ("a", "b", "c")]
    ranked = tiny_pipeline.rerank(images, "a red circle")
    z_i, z_t, _ = open_clip_features(tiny_pipeline, images, ["a red circle"])
    cosines = (z_i @ z_t.T)[:, 0].tolist()
    assert [index for index, _ in ranked] == sorted(range(3), key=lambda i: -cosines[i])
    assert [score for _, score in ranked] == pytest.approx(sorted(cosines, reverse=True), abs=1e-5)
    with pytest.raises(InputError):
        tiny_pipeline.rerank([], "a red circle")


# ---------------------------------------------------------------------------------- bad inputs
def test_a_text_file_named_png_is_refused_naming_it(tiny_pipeline, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not pixels at all\n")
    with pytest.raises(InputError) as caught:
        tiny_pipeline.classify(path, ["a cat", "a dog"])
    assert str(path) in one_line(caught.value) and "not an image" in str(caught.value)


def test_a_truncated_png_is_refused_naming_it(tiny_pipeline, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # incompressible
    whole = tmp_path / "whole.png"
    Image.fromarray(noise).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(InputError) as caught:
        tiny_pipeline.invert(cut)
    assert str(cut) in one_line(caught.value) and "truncated or corrupt" in str(caught.value)


def test_a_missing_file_is_refused_naming_it(tiny_pipeline, tmp_path):
    with pytest.raises(InputError) as caught:
        tiny_pipeline.classify(tmp_path / "nowhere.png", ["a cat", "a dog"])
    assert "nowhere.png" in one_line(caught.value)


def _mode_cases() -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Each image mode a user may hand in, with the RGB pixels it must become (by hand)."""
    gray = np.array([[0, 64], [128, 255]], dtype=np.uint8)
    rgba = np.array([[[255, 0, 0, 255], [0, 255, 0, 0]], [[0, 0, 255, 128], [10, 20, 30, 255]]], dtype=np.uint8)
    alpha = rgba[..., 3:4].astype(np.float64) / 255
    over_white = np.round(rgba[..., :3] * alpha + 255 * (1 - alpha))
    palette_image = Image.new("P", (2, 2))
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette_image.putdata([0, 1, 2, 1])
    palette_rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [0, 255, 0]]])
    transparent_palette = palette_image.copy()
    transparent_palette.info["transparency"] = 1  # green becomes see-through: white
    see_through = np.array([[[255, 0, 0], [255, 255, 255]], [[0, 0, 255], [255, 255, 255]]])
    deep = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    return {
        "L": (Image.fromarray(gray, mode="L"), np.repeat(gray[..., None], 3, axis=2)),
        "LA": (Image.fromarray(np.stack([gray, np.full_like(gray, 255)], -1), mode="LA"), np.repeat(gray[..., None], 3, 2)),
        "RGBA": (Image.fromarray(rgba, mode="RGBA"), over_white),
        "P": (palette_image, palette_rgb),
        "P+transparency": (transparent_palette, see_through),
        "I;16": (Image.fromarray(deep), np.repeat(np.array([[0, 64], [128, 255]])[..., None], 3, axis=2)),
    }


@pytest.mark.parametrize("mode", list(_mode_cases()))
def test_grayscale_alpha_palette_and_16_bit_images_work(tiny_pipeline, tmp_path, mode):
    image, want = _mode_cases()[mode]
    path = tmp_path / "input.png"
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert np.abs(pixels(loaded) - want).max() <= 1
    probabilities = tiny_pipeline.classify(path, ["a cat", "a dog"])
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)


def _claims_size(path: Path, width: int, height: int) -> Path:
    """A small real PNG whose header (IHDR, CRC fixed) claims ``width × height``."""
    Image.new("RGB", (8, 8), "red").save(path)
    data = bytearray(path.read_bytes())
    chunk = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = chunk
    data[29:33] = struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("side", [9000, 20000])  # 81 MP: PIL only warns; 400 MP: PIL refuses
def test_an_image_claiming_more_than_64_megapixels_is_refused(tiny_pipeline, tmp_path, side):
    path = _claims_size(tmp_path / "huge.png", side, side)
    with pytest.raises(InputError) as caught:
        tiny_pipeline.invert(path)
    assert str(path) in one_line(caught.value) and "too large" in str(caught.value)


def test_the_pixel_limit_is_a_setting(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    shape_image((16, 16)).save(path)
    monkeypatch.setattr("unclip_core.images.MAX_PIXELS", 255)
    with pytest.raises(InputError, match="too large"):
        load_image(path)
    monkeypatch.setattr("unclip_core.images.MAX_PIXELS", 256)
    assert load_image(path).size == (16, 16)


def test_mismatched_embedding_sizes_between_slots_are_a_recipe_error(tiny_recipe_path):
    with pytest.raises(RecipeError) as caught:
        load_pipeline(tiny_recipe_path, ["decoder.config.embed_dim=8"])
    assert "decoder" in caught.value.paths
    assert "embedding size 8" in str(caught.value) and "16" in str(caught.value)


def _recipe_with_decoder_weights(tiny_recipe_data: dict, folder: Path, block_out_channels: list[int]) -> Path:
    data = copy.deepcopy(tiny_recipe_data)
    data["decoder"]["weights"] = "decoder.safetensors"
    data["decoder"]["config"]["block_out_channels"] = block_out_channels
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def saved_decoder(tiny_recipe_data, tiny_recipe_path, registry, tmp_path):
    resolved = validate_recipe(tiny_recipe_data, registry, base_dir=tiny_recipe_path.parent)
    decoder = build_component(resolved.decoder)
    save_weights(decoder, tmp_path / "decoder.safetensors")
    return decoder


def test_weights_that_do_not_fit_the_config_name_file_and_tensor(saved_decoder, tiny_recipe_data, registry, tmp_path):
    fits = _recipe_with_decoder_weights(tiny_recipe_data, tmp_path, [16, 32])
    resolved = validate_recipe(yaml.safe_load(fits.read_text()), registry, base_dir=tmp_path)
    loaded = build_component(resolved.decoder)  # the same file loads where it fits
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "decoder.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask, "saved as a private file"
    for name, tensor in saved_decoder.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    narrower = _recipe_with_decoder_weights(tiny_recipe_data, tmp_path, [8, 16])
    with pytest.raises(CheckpointError) as caught:
        load_pipeline(narrower)
    message = one_line(caught.value)
    assert "decoder.safetensors" in message and "shape mismatch" in message
    assert re.search(r"[\w.]+\.(weight|bias) \(\d+(, \d+)*\) vs model \(", message), message


@pytest.mark.parametrize("content", [random.Random(0).randbytes(4096), b"", b"\x08" + b"\x00" * 7 + b"{bad json"])
def test_a_corrupt_safetensors_file_is_a_checkpoint_error(tiny_recipe_data, tmp_path, content):
    (tmp_path / "decoder.safetensors").write_bytes(content)
    recipe = _recipe_with_decoder_weights(tiny_recipe_data, tmp_path, [16, 32])
    with pytest.raises(CheckpointError) as caught:
        load_pipeline(recipe)
    assert "decoder.safetensors" in one_line(caught.value)
    assert isinstance(caught.value, UnclipError)


def test_only_a_stage_binds_a_model_to_a_sampler():
    """Guidance, precision and progress live in unclip_core.stage.Stage; no other core module
    hands a model's denoiser to a sampler itself (the contract suite's model checks aside)."""
    import re
    from pathlib import Path

    import unclip_core

    root = Path(unclip_core.__file__).parent
    found = [
        f"{path.relative_to(root)}:{number}"
        for path in sorted(root.rglob("*.py"))
        if path.name != "stage.py" and "contracts" not in path.parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\.(sample|invert)\([^)]*\.denoiser\(", line)
    ]
    assert not found, found
