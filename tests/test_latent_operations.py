"""Negative prompts, img2img and mixes on every kind of recipe: the pixel stacks (tiny,
shapes) and the latent one (tiny-latent). Each check compares against a reference — diffusers'
VQModel, an input scene judged by the shapes checker, the path a single item takes — never
against the operation's own output. Parity with diffusers: tests/test_kandinsky22_parity.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import VQModel

from unclip_core.cli.main import main
from unclip_core.errors import InputError
from unclip_core.recipe.assemble import load_pipeline
from unclip_plugins.shapes import check
from unclip_plugins.shapes.renderer import render
from unclip_plugins.shapes.world import Scene, ShapeObject

TESTS = Path(__file__).parent
TINY = TESTS / "recipes" / "tiny.yaml"
TINY_LATENT = TESTS / "recipes" / "tiny-latent.yaml"
EMPTY_NULL = ["prior.null_caption=empty", "decoder.null_caption=empty"]


@pytest.fixture(scope="module")
def tiny():
    return load_pipeline(TINY, EMPTY_NULL)


@pytest.fixture(scope="module")
def latent():
    return load_pipeline(TINY_LATENT, ["runtime.memory_format=contiguous"])


def _scene(color: str = "red", shape: str = "circle", size: int = 64):
    return render(Scene((ShapeObject(color, shape, 0.5, 0.5, 0.55),)), size)


# ---------------------------------------------------------------- negative prompts
def test_a_negative_prompt_equal_to_the_unconditional_caption_changes_nothing(tiny):
    """With null_caption empty (Karlo's recipes) the unconditional caption is "": a negative
    prompt of "" must give the very same images, and another one must not."""
    plain = tiny.generate_tensors(["a red circle", "a blue square"], n=2, seed=3)
    assert torch.equal(plain, tiny.generate_tensors(["a red circle", "a blue square"], n=2, seed=3, negative_prompt=["", ""]))
    other = tiny.generate_tensors(["a red circle", "a blue square"], n=2, seed=3, negative_prompt="a green triangle")
    assert (plain - other).abs().max() > 1e-3


def test_negative_prompts_are_checked(tiny):
    with pytest.raises(InputError, match="1 negative prompts for 2 prompts"):
        tiny.generate_tensors(["a red circle", "a blue square"], negative_prompt=["x"])
    with pytest.raises(InputError, match="negative prompt 0 is int"):
        tiny.generate_tensors(["a red circle"], negative_prompt=[3])


def test_a_negative_prompt_samples_the_latent_decoders_unconditional_embedding(latent):
    """Kandinsky's rule: the decoder's unconditional branch reads the prior's sample for the
    negative prompt, so a negative prompt changes the image even through a text-blind decoder."""
    plain = latent.generate_tensors("a red circle", seed=1)
    assert (plain - latent.generate_tensors("a red circle", seed=1, negative_prompt="a blue square")).abs().max() > 1e-3


# ---------------------------------------------------------------- img2img
@torch.no_grad()
def test_strength_zero_returns_the_input_through_the_autoencoder(latent):
    scene = _scene(size=32)
    reference = VQModel(**latent.autoencoder.config.diffusers_kwargs())
    reference.load_state_dict(latent.autoencoder.model.state_dict())
    pixels = latent.image_tensor(scene)
    expected = reference.eval().decode(reference.encode(pixels).latents, force_not_quantize=True).sample.clamp(-1, 1)
    out = latent.img2img_tensors(scene, "a blue square", 0.0, n=2, seed=4)
    assert out.shape == (2, 3, 32, 32)
    assert torch.allclose(out, expected.expand(2, -1, -1, -1), atol=1e-5)


def test_strength_zero_returns_a_pixel_decoders_input_itself(tiny):
    scene = _scene(size=16)
    base = tiny.decode(torch.zeros(1, 16), None, tiny.generator(0), start=(tiny.image_tensor(scene), 0.0))
    assert torch.equal(base, tiny.image_tensor(scene))


def test_strength_is_checked(tiny):
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(InputError, match="strength must be a number in"):
            tiny.img2img_tensors(_scene(), "a red circle", bad)


@pytest.fixture(scope="module")
def shapes():
    return load_pipeline()


def test_img2img_on_the_shapes_model_keeps_or_redraws_a_rendered_scene(shapes):
    """Judged by the shapes checker: a little strength keeps the rendered red circle whatever
    the prompt asks; full strength draws what the prompt asks."""
    scene = _scene()
    kept = shapes.img2img(scene, "a blue square", 0.2, n=2, seed=0)
    assert all(check(image, "a red circle").exact for image in kept), [check(i, "a red circle") for i in kept]
    redrawn = shapes.img2img(scene, "a blue square", 1.0, n=4, seed=0)
    passed = sum(check(image, "a blue square").exact for image in redrawn)
    assert passed >= 3, f"only {passed}/4 redrawn as the prompt asks"


# ---------------------------------------------------------------- mix
def test_mix_with_weights_one_and_zero_is_the_single_caption_path(tiny):
    """(1, 0): the image's embedding weighs nothing, so the result is the caption's prior
    sample decoded without a caption, from the same generator (as mix draws it)."""
    mixed = tiny.mix_tensors(["a red circle", _scene("blue", "square")], [1.0, 0.0], seed=5)
    generator = tiny.generator(5)
    embed = tiny.sample_prior(tiny.encode_text(["a red circle"]), generator)
    expected = tiny.upsample(tiny.decode(embed, None, generator), generator)
    assert torch.equal(mixed, expected)


def test_mix_of_one_image_is_the_images_embedding_decoded(latent):
    image = _scene(size=32)
    mixed = latent.mix_tensors([image], [1.0], seed=6)
    generator = latent.generator(6)
    embed = latent.encode_image([image])
    latent.sample_prior(latent.encode_text([""]), generator)  # Kandinsky's interpolate samples the negative prompt
    assert torch.equal(mixed, latent.decode(embed, None, generator))


def test_mix_items_and_weights_are_checked(tiny):
    with pytest.raises(InputError, match="2 items but 1 weights"):
        tiny.mix_tensors(["a red circle", "a blue square"], [1.0])
    with pytest.raises(InputError, match="weight 0 must be a finite number"):
        tiny.mix_tensors(["a red circle"], [float("inf")])
    with pytest.raises(InputError, match="item 1 is an empty caption"):
        tiny.mix_tensors(["a red circle", " "], [0.5, 0.5])


# ---------------------------------------------------------------- the commands
def test_the_commands_write_images_with_their_settings(tmp_path, capsys):
    from unclip_core.images import read_png_metadata

    first = tmp_path / "first.png"
    assert main(["generate", "a red circle", "-r", str(TINY_LATENT), "--negative", "a blue square", "-o", str(first), "-q"]) == 0
    assert read_png_metadata(first)["negative"] == "a blue square"
    again = tmp_path / "again.png"
    assert main(["generate", "--from", str(first), "-o", str(again), "-q"]) == 0
    assert again.read_bytes() != b"" and _pixels(again) == _pixels(first)
    edited = tmp_path / "edited.png"
    assert main(["img2img", str(first), "a red circle", "--strength", "0.5", "-r", str(TINY_LATENT), "-o", str(edited), "-q"]) == 0
    assert read_png_metadata(edited)["strength"] == 0.5
    mixed = tmp_path / "mixed.png"
    assert main(["mix", str(first), "a red circle", "--weights", "0.3", "0.7", "-r", str(TINY_LATENT), "-o", str(mixed), "-q"]) == 0
    assert read_png_metadata(mixed)["items"] == [str(first), "a red circle"]


def _pixels(path: Path) -> bytes:
    from PIL import Image

    return Image.open(path).tobytes()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["img2img", "missing.png", "a red circle"], "missing.png"),
        (["img2img", "x.png", "a red circle", "--strength", "1.5"], "--strength must be a number in [0, 1]"),
        (["mix", "a red circle", "--weights", "1", "2"], "1 items but 2 --weights"),
        (["mix", "a red circle", "--weights", "nan"], "--weights must be finite"),
    ],
)
def test_bad_command_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "-r", str(TINY_LATENT)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unclip: error:") and message in err and "\n" not in err
