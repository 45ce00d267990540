"""The shipped default model: present, within budget, installed with the package, and
drawing what it is asked for — judged by the shapes checker, not by its own output."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from unclip_core.cli.main import main
from unclip_core.recipe.assemble import load_pipeline
from unclip_core.recipe.files import DEFAULT_RECIPE, find_recipe
from unclip_plugins.shapes import check

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "recipes" / "shapes"
BUDGET_BYTES = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def default_pipeline():
    return load_pipeline()


def test_default_recipe_is_the_shapes_model():
    assert DEFAULT_RECIPE == "shapes"
    assert find_recipe(DEFAULT_RECIPE) == ROOT / "recipes" / "shapes.yaml"


def test_weights_stay_within_budget():
    files = sorted(WEIGHTS.glob("*.safetensors"))
    assert {f.stem for f in files} >= {"clip", "prior", "decoder", "upsampler"}
    total = sum(f.stat().st_size for f in files)
    assert total <= BUDGET_BYTES, f"shipped weights are {total / 2**20:.1f} MiB, budget 40 MiB"


def test_default_model_draws_single_objects(default_pipeline):
    prompts = ["a red circle", "a blue square", "a yellow triangle", "a purple square"]
    images = default_pipeline.generate(prompts, seed=0)
    assert all(image.size == (64, 64) for image in images)
    verdicts = [check(image, prompt) for image, prompt in zip(images, prompts)]
    passed = sum(v.exact for v in verdicts)
    assert passed >= 3, f"only {passed}/4 single objects drawn right: {[ (v.caption, [o.pair for o in v.objects]) for v in verdicts]}"


def _readme_generate_command() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```console\n(.*?)\n```", readme, re.S).group(1)
    command = block.split("&&")[-1].strip()
    words = shlex.split(command)
    assert words[0].endswith("unclip") and words[1] == "generate", command
    return words[1:]


@pytest.fixture(scope="module")
def readme_image(tmp_path_factory) -> tuple[Image.Image, str]:
    argv = _readme_generate_command()
    folder = tmp_path_factory.mktemp("readme")
    assert main([*argv, "-q", "-o", str(folder / "unclip.png")]) == 0
    return Image.open(folder / "unclip.png"), argv[1]


def test_readme_main_command_writes_a_64px_image(readme_image):
    image, _ = readme_image
    assert image.size == (64, 64) and image.mode == "RGB"


def test_readme_main_command_draws_the_prompt(readme_image):
    image, prompt = readme_image
    verdict = check(image, prompt)
    assert verdict.color and verdict.count, f"{prompt!r}: the checker saw {[o.pair for o in verdict.objects]}"


@pytest.mark.slow
def test_wheel_ships_default_recipe_and_weights(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True)
    (wheel,) = tmp_path.glob("unclip-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"unclip_recipes/shapes.yaml", "unclip_recipes/shapes-latent.yaml",
                *(f"unclip_recipes/shapes/{s}.safetensors" for s in ("clip", "prior", "decoder", "upsampler", "autoencoder", "latent-decoder"))}
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert any(n.startswith("unclip_recipes/train/") for n in names)


# ------------------------------------------------------------------ shapes-latent, shipped beside it
@pytest.fixture(scope="module")
def latent_pipeline():
    return load_pipeline("shapes-latent")


def scene_image(caption: str) -> Image.Image:
    """A rendered 64 px scene of one object, centred: the reference the operations start from."""
    from unclip_plugins.shapes.renderer import render
    from unclip_plugins.shapes.world import place_objects

    import numpy as np

    color, shape = caption.split()[-2:]
    return render(place_objects([(color, shape)], None, np.random.default_rng(0)), 64)


def test_shapes_latent_draws_single_objects(latent_pipeline):
    prompts = ["a red circle", "a blue square", "a yellow triangle", "a purple square"]
    images = latent_pipeline.generate(prompts, seed=0)
    assert all(image.size == (64, 64) for image in images)
    passed = sum(check(image, prompt).exact for image, prompt in zip(images, prompts))
    assert passed >= 3, f"only {passed}/4 single objects drawn right"


def test_shapes_latent_variations_keep_the_object(latent_pipeline):
    """vary: same CLIP image embedding, no caption; the checker must read the input's object."""
    images = latent_pipeline.variations(scene_image("a red circle"), n=4, seed=0)
    assert all(image.size == (64, 64) for image in images)
    assert sum(check(image, "a red circle").exact for image in images) >= 3


def test_shapes_latent_interpolation_and_text_diff_run_through_the_latents(latent_pipeline):
    """DDIM inversion in the autoencoder's latents: θ = 0 of a text diff gives the input back, and
    an interpolation runs from one input's colour to the other's, as the checker reads them
    (the pixel model's endpoints are no closer: it draws this blue square as a blue circle)."""
    red, blue = scene_image("a red circle"), scene_image("a blue square")
    frames = latent_pipeline.interpolate(red, blue, steps=3)
    assert len(frames) == 3 and all(frame.size == (64, 64) for frame in frames)
    assert check(frames[0], "a red circle").exact and check(frames[-1], "a blue circle").color
    (edited,) = latent_pipeline.text_diff(red, "a red circle", "a blue circle", thetas=(0.0,))
    assert check(edited, "a red circle").exact
