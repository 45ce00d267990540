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
    expected = {"unclip_recipes/shapes.yaml", *(f"unclip_recipes/shapes/{s}.safetensors" for s in ("clip", "prior", "decoder", "upsampler"))}
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert any(n.startswith("unclip_recipes/train/") for n in names)
