"""The ``unclip`` command, run in-process on the tiny random-weight recipe.

References: the session's own tiny pipeline (the CLI must write exactly what the Python API
makes), the recipe file parsed here, the components' config defaults, and the files on disk
before and after a refused command. One test runs the installed script in a subprocess for
its exit status and its one-line error.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

from unclip_core.cli.main import main
from unclip_core.images import read_png_metadata
from unclip_core.recipe.files import is_slot_file, shipped_recipes_dir
from unclip_core.recipe.validate import recipe_digest

PROMPT = "a red circle"


def run(capsys, *argv) -> tuple[int, str, str]:
    """``unclip ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        status = main([str(arg) for arg in argv])
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


def pixels(path_or_image) -> np.ndarray:
    image = path_or_image if isinstance(path_or_image, Image.Image) else Image.open(path_or_image)
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    found = {}
    for name, (background, fill) in {"a": ((40, 90, 200), (220, 30, 30)), "b": ((240, 240, 20), (20, 130, 30))}.items():
        image = Image.new("RGB", (40, 40), background)
        ImageDraw.Draw(image).ellipse((8, 8, 31, 31), fill=fill)
        found[name] = folder / f"{name}.png"
        image.save(found[name])
    return found


@pytest.fixture(scope="module")
def three(tmp_path_factory, tiny_recipe_path):
    """``unclip generate PROMPT -n 3 --seed 5``: the grid and its three images."""
    folder = tmp_path_factory.mktemp("three")
    out = folder / "out.png"
    status = main(["generate", PROMPT, "-r", str(tiny_recipe_path), "-n", "3", "--seed", "5", "-o", str(out)])
    assert status == 0
    return out


# ---------------------------------------------------------------------------------- generate
def test_generate_writes_the_apis_image_with_its_settings(capsys, tmp_path, tiny_recipe_path, tiny_recipe_data, tiny_pipeline):
    out = tmp_path / "one.png"
    status, stdout, stderr = run(capsys, "generate", PROMPT, "-r", tiny_recipe_path, "--seed", 3, "-o", out)
    assert status == 0, stderr
    assert stdout.split() == [str(out)]
    meta = read_png_metadata(out)
    assert meta["prompt"] == PROMPT and meta["seed"] == 3 and meta["overrides"] == []
    assert meta["recipe"] == str(tiny_recipe_path.resolve())
    assert meta["recipe_digest"] == recipe_digest(tiny_recipe_data)
    want = tiny_pipeline.generate(PROMPT, n=1, seed=3)[0]
    assert np.array_equal(pixels(out), pixels(want))
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_n_3_writes_a_grid_and_each_image(three, tiny_pipeline):
    singles = [three.with_name(f"out-{i}.png") for i in range(3)]
    want = tiny_pipeline.generate(PROMPT, n=3, seed=5)
    for index, path in enumerate(singles):
        assert np.array_equal(pixels(path), pixels(want[index]))
        assert read_png_metadata(path)["index"] == index
    grid = pixels(three)
    side, gap = 32, 2
    assert grid.shape == (2 * side + gap, 2 * side + gap, 3)  # 2 × 2 tiles for 3 images
    for index, (row, col) in enumerate([(0, 0), (0, 1), (1, 0)]):
        top, left = row * (side + gap), col * (side + gap)
        assert np.array_equal(grid[top : top + side, left : left + side], pixels(want[index]))
    assert (grid[side + gap :, side + gap :] == 255).all(), "the empty tile is not background"
    assert "index" not in read_png_metadata(three)


def test_from_reproduces_one_image_and_the_grid(capsys, three, tmp_path):
    """Another process starts with other global RNG state: the copy must not depend on it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(987)
        status, _, stderr = run(capsys, "generate", "--from", three.with_name("out-1.png"), "-o", tmp_path / "again.png")
    assert status == 0, stderr
    assert "warning" not in stderr
    assert np.array_equal(pixels(tmp_path / "again.png"), pixels(three.with_name("out-1.png")))
    status, _, stderr = run(capsys, "generate", "--from", three, "-o", tmp_path / "grid.png")
    assert status == 0, stderr
    assert np.array_equal(pixels(tmp_path / "grid.png"), pixels(three))


def test_overrides_apply_change_the_digest_and_travel_with_the_image(capsys, tmp_path, tiny_recipe_path, tiny_recipe_data):
    plain, changed = tmp_path / "plain.png", tmp_path / "steps2.png"
    assert run(capsys, "generate", PROMPT, "-r", tiny_recipe_path, "-o", plain)[0] == 0
    # The contract puts KEY=VALUE after the options.
    status, _, stderr = run(capsys, "generate", PROMPT, "-r", tiny_recipe_path, "-o", changed, "decoder.sampler.config.steps=2")
    assert status == 0, stderr
    meta = read_png_metadata(changed)
    assert meta["overrides"] == ["decoder.sampler.config.steps=2"]
    by_hand = copy.deepcopy(tiny_recipe_data)
    by_hand["decoder"]["sampler"]["config"]["steps"] = 2
    assert meta["recipe_digest"] == recipe_digest(by_hand) != read_png_metadata(plain)["recipe_digest"]
    assert not np.array_equal(pixels(plain), pixels(changed)), "the override changed nothing"
    status, _, stderr = run(capsys, "generate", "--from", changed, "-o", tmp_path / "again.png")
    assert status == 0 and "warning" not in stderr, stderr
    assert np.array_equal(pixels(tmp_path / "again.png"), pixels(changed))


def test_a_bad_override_is_a_one_line_recipe_error(capsys, tmp_path, tiny_recipe_path):
    status, _, stderr = run(capsys, "generate", PROMPT, "-r", tiny_recipe_path, "-o", tmp_path / "x.png", "decoder.sampler.config.stepz=2")
    assert status == 2
    assert "decoder.sampler.config.stepz" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------------------------- other operations
def test_vary_writes_a_grid_and_n_variations(capsys, tmp_path, tiny_recipe_path, pictures):
    out = tmp_path / "vary.png"
    status, _, stderr = run(capsys, "vary", pictures["a"], "-n", 2, "-r", tiny_recipe_path, "-o", out)
    assert status == 0, stderr
    first, second = pixels(out.with_name("vary-0.png")), pixels(out.with_name("vary-1.png"))
    assert first.shape == second.shape == (32, 32, 3)
    assert not np.array_equal(first, second), "η=1 variations should differ"
    assert pixels(out).shape == (32, 32 * 2 + 2, 3)
    meta = read_png_metadata(out)
    assert meta["command"] == "vary" and meta["image"] == str(pictures["a"])


def test_interpolate_writes_a_grid_the_frames_and_a_gif(capsys, tmp_path, tiny_recipe_path, pictures, tiny_pipeline):
    out = tmp_path / "path.png"
    status, _, stderr = run(capsys, "interpolate", pictures["a"], pictures["b"], "--steps", 3, "-r", tiny_recipe_path, "-o", out)
    assert status == 0, stderr
    want = tiny_pipeline.interpolate(pictures["a"], pictures["b"], steps=3, x_T="fixed", seed=0)
    for index in range(3):
        assert np.array_equal(pixels(out.with_name(f"path-{index}.png")), pixels(want[index]))
    with Image.open(out.with_suffix(".gif")) as gif:
        assert gif.n_frames == 2 * 3 - 2  # forwards, then back without repeating the ends
        assert gif.size == (32, 32)


def test_textdiff_writes_one_image_per_theta_and_a_gif(capsys, tmp_path, tiny_recipe_path, pictures):
    out = tmp_path / "edit.png"
    status, _, stderr = run(
        capsys, "textdiff", pictures["a"], "a red circle", "a blue circle", "--thetas", "0,0.25,0.5", "-r", tiny_recipe_path, "-o", out
    )
    assert status == 0, stderr
    assert [p.name for p in sorted(tmp_path.glob("edit-*.png"))] == ["edit-0.png", "edit-1.png", "edit-2.png"]
    assert read_png_metadata(out)["thetas"] == [0.0, 0.25, 0.5]
    with Image.open(out.with_suffix(".gif")) as gif:
        assert gif.n_frames == 2 * 3 - 2


@pytest.mark.parametrize("thetas", ["0,2", "a,b", ","])
def test_textdiff_refuses_bad_thetas(capsys, tmp_path, tiny_recipe_path, pictures, thetas):
    status, _, stderr = run(capsys, "textdiff", pictures["a"], "x", "y", "--thetas", thetas, "-r", tiny_recipe_path, "-o", tmp_path / "t.png")
    assert status == 2 and "--thetas" in stderr and len(stderr.strip().splitlines()) == 1


def test_classify_prints_the_apis_probabilities(capsys, tiny_recipe_path, pictures, tiny_pipeline):
    labels = ["a red circle", "a blue square", "a green triangle"]
    status, stdout, stderr = run(capsys, "classify", pictures["a"], *labels, "-r", tiny_recipe_path, "--json")
    assert status == 0, stderr
    scores = json.loads(stdout)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-6)
    want = tiny_pipeline.classify(pictures["a"], labels)
    assert scores == pytest.approx(want, abs=1e-6)
    status, stdout, _ = run(capsys, "classify", pictures["a"], *labels, "-r", tiny_recipe_path)
    assert status == 0
    best_first = sorted(labels, key=lambda label: -want[label])
    assert [line.split("  ", 1)[1] for line in stdout.splitlines()] == best_first


# ---------------------------------------------------------------------------------- outputs
WRITING_COMMANDS = [
    ["generate", PROMPT],
    ["vary", "{a}"],
    ["interpolate", "{a}", "{b}"],
    ["textdiff", "{a}", "a red circle", "a blue circle"],
    ["inpaint", "{a}", "{a}", "a red circle"],
]
"""Every command that writes PNGs, with its positional arguments ({a}, {b}: the pictures)."""


def _no_work(*args, **kwargs):
    raise AssertionError("a pipeline was built for an output that was going to be refused")


@pytest.mark.parametrize("command", WRITING_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("name", ["out.jpg", "out", "out.png.gif"])
def test_an_output_that_is_not_png_is_refused_before_any_work(capsys, tmp_path, tiny_recipe_path, pictures, monkeypatch, command, name):
    monkeypatch.setattr("unclip_core.recipe.assemble.load_pipeline", _no_work)
    argv = [arg.format(a=pictures["a"], b=pictures["b"]) for arg in command]
    work = tmp_path / "work"
    work.mkdir()
    before = files_in(work)
    status, stdout, stderr = run(capsys, *argv, "-r", tiny_recipe_path, "-o", work / name)
    assert status == 2
    assert ".png" in stderr and name in stderr and len(stderr.strip().splitlines()) == 1
    assert files_in(work) == before
    assert stdout == ""


@pytest.mark.parametrize("command", WRITING_COMMANDS, ids=lambda c: c[0])
def test_an_output_under_a_regular_file_is_refused_before_any_work(capsys, tmp_path, tiny_recipe_path, pictures, monkeypatch, command):
    """The path is checked before the models load: one line naming the file in the way."""
    monkeypatch.setattr("unclip_core.recipe.assemble.load_pipeline", _no_work)
    (tmp_path / "notes").write_text("x")
    argv = [arg.format(a=pictures["a"], b=pictures["b"]) for arg in command]
    status, stdout, stderr = run(capsys, *argv, "-r", tiny_recipe_path, "-o", tmp_path / "notes" / "sub" / "out.png")
    assert status == 2 and stdout == ""
    assert stderr.strip() == f"unclip: error: cannot write output {tmp_path / 'notes' / 'sub' / 'out.png'}: {tmp_path / 'notes'} is a file, not a folder"


def test_several_outputs_are_checked_before_the_first_is_written(capsys, tmp_path, tiny_recipe_path):
    """A folder where the second image would go: refused with nothing written, and an older
    grid at the same name is kept."""
    out = tmp_path / "many.png"
    out.write_bytes(b"older grid")
    (tmp_path / "many-1.png").mkdir()
    status, _, stderr = run(capsys, "generate", PROMPT, "-r", tiny_recipe_path, "-n", "2", "-o", out)
    assert status == 2
    assert stderr.strip() == f"unclip: error: cannot write output {tmp_path / 'many-1.png'}: it is a folder"
    assert out.read_bytes() == b"older grid"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many-1.png", "many.png"]


def test_a_prompt_left_out_is_not_taken_from_the_overrides(capsys, tmp_path, tiny_recipe_path):
    status, _, stderr = run(capsys, "generate", "decoder.sampler.config.steps=2", "-r", tiny_recipe_path, "-o", tmp_path / "o.png")
    assert status == 2
    assert "no PROMPT given: 'decoder.sampler.config.steps=2' is a recipe override" in stderr
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("eta", ["-1", "2", "nan"])
def test_vary_refuses_an_eta_outside_0_1(capsys, tmp_path, tiny_recipe_path, pictures, eta):
    status, _, stderr = run(capsys, "vary", pictures["a"], "-r", tiny_recipe_path, "--eta", eta, "-o", tmp_path / "v.png")
    assert status == 2 and len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("unclip: error: --eta must be a number in [0, 1]")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["classify", "{a}", "", "a blue circle"], "label 0 is empty"),
        (["classify", "{a}", "a red circle"], "give at least two labels"),
        (["textdiff", "{a}", "", "a blue circle"], "from_caption is empty"),
        (["textdiff", "{a}", "a red circle", " "], "to_caption is empty"),
        (["textdiff", "{a}", "a", "b", "--thetas", "0,,1"], "--thetas has an empty item"),
    ],
)
def test_empty_labels_and_captions_are_named(capsys, tiny_recipe_path, pictures, argv, message):
    status, _, stderr = run(capsys, *[arg.format(a=pictures["a"]) for arg in argv], "-r", tiny_recipe_path)
    assert status == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "settings, message",
    [
        ([1, 2], "its unclip settings are not a JSON object"),
        ({"command": "generate", "recipe": "r.yaml", "prompt": "x", "seed": "abc"}, "'seed' should be int, got 'abc'"),
        ({"command": "generate", "recipe": "r.yaml", "prompt": "x", "seed": 1, "overrides": "a=b"}, "'overrides' should be a list"),
        ({"command": "generate", "recipe": "r.yaml", "prompt": "x", "seed": 1, "n": -3}, "'n' should be at least 1, got -3"),
    ],
)
def test_from_names_the_png_whose_settings_were_tampered_with(capsys, tmp_path, settings, message):
    from PIL.PngImagePlugin import PngInfo

    from unclip_core.images import METADATA_KEY

    info = PngInfo()
    info.add_text(METADATA_KEY, json.dumps(settings))
    Image.new("RGB", (8, 8)).save(tmp_path / "edited.png", pnginfo=info)
    status, _, stderr = run(capsys, "generate", "--from", tmp_path / "edited.png", "-o", tmp_path / "again.png")
    assert status == 2
    assert stderr.startswith(f"unclip: error: {tmp_path / 'edited.png'}") and message in stderr
    assert not (tmp_path / "again.png").exists()


def test_a_recipe_of_the_other_kind_is_named_as_such(capsys):
    status, _, stderr = run(capsys, "generate", PROMPT, "-r", "train/shapes-decoder")
    assert status == 2 and "is a training recipe (it trains the decoder stage); run it with `unclip train" in stderr
    status, _, stderr = run(capsys, "train", "shapes")
    assert status == 2 and "is an inference recipe (it generates images)" in stderr
    assert len(stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------- recipes
def test_recipe_validate_prints_the_digest(capsys, tiny_recipe_path, tiny_recipe_data):
    status, stdout, _ = run(capsys, "recipe", "validate", tiny_recipe_path)
    assert status == 0
    assert recipe_digest(tiny_recipe_data) in stdout and stdout.startswith("ok")


def test_recipe_show_fills_in_defaults_and_applies_overrides(capsys, tiny_recipe_path, registry):
    status, stdout, _ = run(capsys, "recipe", "show", tiny_recipe_path, "decoder.sampler.config.steps=7")
    assert status == 0
    shown = yaml.safe_load(stdout)
    decoder_model = registry.get("decoder", "unclip-decoder").config_model
    ddim_model = registry.get("sampler", "ddim").config_model
    # Not in tiny.yaml: must come from the components' own defaults.
    assert shown["decoder"]["config"]["prediction_type"] == decoder_model.model_fields["prediction_type"].default
    assert shown["decoder"]["config"]["num_train_timesteps"] == decoder_model.model_fields["num_train_timesteps"].default
    assert shown["prior"]["sampler"]["config"]["eta"] == ddim_model.model_fields["eta"].default
    assert shown["decoder"]["sampler"]["config"]["steps"] == 7
    assert shown["decoder"]["config"]["block_out_channels"] == [16, 32]


def test_recipe_ls_lists_the_shipped_recipes(capsys):
    status, stdout, _ = run(capsys, "recipe", "ls")
    assert status == 0
    root = shipped_recipes_dir()
    want = sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml") if not is_slot_file(p))
    assert sorted(line.split()[0] for line in stdout.splitlines() if line.strip()) == want


def test_recipe_cp_copies_and_refuses_to_overwrite_without_force(capsys, tmp_path, tiny_recipe_path):
    destination = tmp_path / "mine.yaml"
    status, _, _ = run(capsys, "recipe", "cp", tiny_recipe_path, destination)
    assert status == 0
    assert destination.read_text() == tiny_recipe_path.read_text()

    destination.write_text("# my edits\n")
    before = files_in(tmp_path)
    status, _, stderr = run(capsys, "recipe", "cp", tiny_recipe_path, destination)
    assert status == 2 and "--force" in stderr and "Traceback" not in stderr
    assert files_in(tmp_path) == before

    status, _, _ = run(capsys, "recipe", "cp", tiny_recipe_path, destination, "--force")
    assert status == 0 and destination.read_text() == tiny_recipe_path.read_text()


def test_recipe_cp_keeps_weights_paths_valid(capsys, tmp_path, tiny_recipe_data, registry):
    from unclip_core.recipe.assemble import build_component
    from unclip_core.recipe.validate import validate_recipe
    from unclip_core.weights import save_weights

    source = tmp_path / "source"
    source.mkdir()
    resolved = validate_recipe(tiny_recipe_data, registry)
    save_weights(build_component(resolved.decoder), source / "decoder.safetensors")
    data = copy.deepcopy(tiny_recipe_data)
    data["decoder"]["weights"] = "decoder.safetensors"
    (source / "recipe.yaml").write_text(yaml.safe_dump(data))
    elsewhere = tmp_path / "elsewhere" / "copy.yaml"
    assert run(capsys, "recipe", "cp", source / "recipe.yaml", elsewhere)[0] == 0
    status, stdout, stderr = run(capsys, "recipe", "validate", elsewhere)
    assert status == 0, stderr


def test_a_bad_recipe_lists_every_problem_without_a_traceback(capsys, tmp_path, tiny_recipe_data):
    data = copy.deepcopy(tiny_recipe_data)
    data["prior"]["type"] = "difusion-prior"
    data["decoder"]["config"]["guidance"] = 2.0
    data["upsampler"] = []
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    for argv in (["recipe", "validate", path], ["generate", PROMPT, "-r", path, "-o", tmp_path / "x.png"]):
        status, stdout, stderr = run(capsys, *argv)
        assert status == 2
        assert "Traceback" not in stderr
        assert "3 recipe errors" in stderr and str(path) in stderr
        for where in ("prior.type", "decoder.config.guidance", "upsampler"):
            assert f"- {where}:" in stderr, (where, stderr)
        assert "did you mean 'diffusion-prior'" in stderr and "did you mean 'upsamplers'" in stderr
    assert not (tmp_path / "x.png").exists()

    status, _, stderr = run(capsys, "--debug", "recipe", "validate", path)
    assert status == 2
    assert "Traceback (most recent call last)" in stderr and "RecipeError" in stderr


# ---------------------------------------------------------------------------------- the installed script
def test_the_installed_script_exits_2_with_one_line(tmp_path, tiny_recipe_path):
    script = Path(sys.executable).with_name("unclip")
    if not script.exists():
        script = Path(shutil.which("unclip") or "unclip")
    result = subprocess.run(
        [str(script), "generate", PROMPT, "-r", str(tiny_recipe_path), "-o", str(tmp_path / "out.jpg")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unclip: error:") and "out.jpg" in lines[0]
    assert list(tmp_path.iterdir()) == []
