"""The last bad inputs of the hardening issue, each through the command a user would run.

The rule every test checks: one line naming what is wrong (``unclip: error: ...``), exit 2,
and nothing written or half-written. References are the files on disk before the command
and the limits as documented (docs/recipes.md, "Limits").
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.test_cli import files_in, run
from unclip_core.recipe.safe_yaml import MAX_DEPTH, MAX_NODES

PROMPT = "a red circle"


def assert_one_line_refusal(status: int, stderr: str, *expected: str) -> None:
    assert status == 2, stderr[-2000:]
    assert stderr.startswith("unclip: error: ") and stderr.endswith("\n"), stderr[-2000:]
    assert len(stderr.splitlines()) == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    for text in expected:
        assert text in stderr, stderr


@pytest.fixture
def picture(tmp_path) -> Path:
    path = tmp_path / "in" / "picture.png"
    path.parent.mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
    return path


def commands_reading(recipe: Path, tmp_path: Path, picture: Path) -> dict[str, list]:
    """Every command that reads a recipe, with outputs under ``tmp_path/out``."""
    out = tmp_path / "out"
    return {
        "validate": ["recipe", "validate", recipe],
        "show": ["recipe", "show", recipe],
        "cp": ["recipe", "cp", recipe, out / "copy.yaml"],
        "generate": ["generate", PROMPT, "-r", recipe, "-o", out / "g.png"],
        "train": ["train", recipe, "--out", out / "run"],
        "classify": ["classify", picture, "a", "b", "-r", recipe],
        "eval": ["eval", "shapes", "-r", recipe, "-s", "prompts_per_group=1"],
        "embed": ["embed", str(tmp_path / "none-{0..1}.tar"), "-r", recipe, "--out", out / "emb"],
    }


# ------------------------------------------------------------------ 2, 5: hostile YAML
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)


@pytest.mark.parametrize("kind", ["deep", "laughs"])
@pytest.mark.parametrize("command", ["validate", "show", "cp", "generate", "train", "classify", "eval", "embed"])
def test_hostile_yaml_is_refused_in_one_line_by_every_command(capsys, tmp_path, picture, kind, command):
    recipe = tmp_path / "hostile.yaml"
    if kind == "deep":
        recipe.write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
        expected = f"nested more than {MAX_DEPTH} levels deep"
    else:
        recipe.write_text(BILLION_LAUGHS)
        expected = f"more than {MAX_NODES:,} values once its aliases are expanded"
    started = time.perf_counter()
    status, _, stderr = run(capsys, *commands_reading(recipe, tmp_path, picture)[command])
    assert time.perf_counter() - started < 30  # the billion laughs took 136 s in `cp`
    assert_one_line_refusal(status, stderr, str(recipe), expected)
    assert not (tmp_path / "out").exists()


def test_a_key_given_twice_is_refused_with_both_lines(capsys, tmp_path, tiny_recipe_path):
    text = tiny_recipe_path.read_text()
    recipe = tmp_path / "twice.yaml"
    recipe.write_text(text + "name: again\n")
    first = 1 + next(i for i, line in enumerate(text.splitlines()) if line.startswith("name:"))
    status, _, stderr = run(capsys, "recipe", "validate", recipe)
    assert_one_line_refusal(
        status, stderr, f"{recipe}: line {len(text.splitlines()) + 1}: duplicate key 'name' (first given on line {first})"
    )


def test_a_merge_key_may_still_override(tmp_path):
    """``<<`` is YAML's way to take a mapping and change some keys: not a duplicate."""
    from unclip_core.recipe.safe_yaml import load_yaml

    assert load_yaml("base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  y: 3\n")["mine"] == {"x": 1, "y": 3}


# ------------------------------------------------------------------ 4: recipe cp of a binary file
def test_recipe_cp_of_a_binary_file_is_one_line(capsys, tmp_path):
    source = tmp_path / "binary.yaml"
    source.write_bytes(bytes(range(256)) * 4)
    status, _, stderr = run(capsys, "recipe", "cp", source, tmp_path / "out" / "copy.yaml")
    assert_one_line_refusal(status, stderr, f"cannot read recipe {source}")
    assert not (tmp_path / "out").exists()


def test_recipe_cp_refuses_a_recipe_that_does_not_validate(capsys, tmp_path, tiny_recipe_data):
    broken = {**tiny_recipe_data, "decoder": {**tiny_recipe_data["decoder"], "type": "no-such-decoder"}}
    source = tmp_path / "broken.yaml"
    source.write_text(yaml.safe_dump(broken))
    status, _, stderr = run(capsys, "recipe", "cp", source, tmp_path / "out" / "copy.yaml")
    assert_one_line_refusal(status, stderr, "no-such-decoder")
    assert not (tmp_path / "out").exists()


def test_a_copied_recipe_says_where_its_files_are(capsys, tmp_path):
    """The shipped recipe says its weights are "next to this file"; in the copy they are not."""
    from unclip_core.recipe.files import find_recipe

    source = find_recipe("shapes")
    assert "next to this file" in source.read_text()
    copy = tmp_path / "mine.yaml"
    status, _, stderr = run(capsys, "recipe", "cp", "shapes", copy)
    assert status == 0, stderr
    text = copy.read_text()
    assert "next to this file" not in text
    assert f"in {source.parent}" in text
    assert text.splitlines()[0].startswith(f"# Copied from {source}")
    assert yaml.safe_load(text)["decoder"]["weights"] == str(source.parent / "shapes" / "decoder.safetensors")


# ------------------------------------------------------------------ 6: eval -s with bad YAML
@pytest.mark.parametrize("setting, expected", [
    ("prompts_per_group=[", "invalid YAML"),
    ("prompts_per_group=" + "[" * 5000 + "]" * 5000, "nested more than"),
])
def test_an_eval_setting_that_is_not_yaml_is_one_line(capsys, tmp_path, setting, expected):
    status, _, stderr = run(capsys, "eval", "shapes", "-s", setting, "--save", tmp_path / "out")
    assert_one_line_refusal(status, stderr, "evaluation setting 'prompts_per_group=", expected)
    assert len(stderr) < 300
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 14: show, long quotes
def test_recipe_show_prints_unicode_as_itself(capsys, tiny_recipe_path):
    status, stdout, _ = run(capsys, "recipe", "show", tiny_recipe_path, "description=32→64 upsampler")
    assert status == 0
    assert "32→64 upsampler" in stdout and "\\u2192" not in stdout


def test_a_long_quoted_input_is_shortened(capsys, tmp_path, tiny_recipe_path):
    caption = "a red circle " * 1000  # 13,000 characters
    status, _, stderr = run(capsys, "recipe", "validate", tiny_recipe_path, f"decoder.guidance_scale=[{caption}")
    assert_one_line_refusal(status, stderr, "characters]")
    assert len(stderr) < 400


def test_a_13000_character_caption_is_quoted_short(capsys, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n" + "a red circle " * 1000 + "\n")
    status, _, stderr = run(capsys, "eval", "shapes", "--prompts", prompts)
    assert_one_line_refusal(status, stderr, f"{prompts}:2: caption 'a red circle a red", "characters]", "outside the shapes grammar")
    assert len(stderr) < 600


# ------------------------------------------------------------------ 1, 8, 9: numbers and texts
SEED_COMMANDS = {
    "generate": ["generate", PROMPT],
    "vary": ["vary", "{picture}"],
    "interpolate": ["interpolate", "{picture}", "{picture}"],
    "textdiff": ["textdiff", "{picture}", "a red circle", "a blue circle"],
    "inpaint": ["inpaint", "{picture}", "{picture}", PROMPT],
    "eval": ["eval", "shapes"],
}


def with_picture(argv: list[str], picture: Path) -> list[str]:
    return [str(picture) if item == "{picture}" else item for item in argv]


@pytest.mark.parametrize("seed", [2**64, 2**63, -1, 10**40])
@pytest.mark.parametrize("command", list(SEED_COMMANDS))
def test_a_seed_outside_0_to_2_63_is_one_line(capsys, tmp_path, tiny_recipe_path, picture, command, seed):
    out = ["--save", tmp_path / "out"] if command == "eval" else ["-o", tmp_path / "out" / "o.png"]
    argv = [*with_picture(SEED_COMMANDS[command], picture), "-r", tiny_recipe_path, "--seed", seed, *out]
    status, _, stderr = run(capsys, *argv)
    assert_one_line_refusal(status, stderr, "--seed must be a whole number from 0 to 2**63-1 (9223372036854775807)")
    assert not (tmp_path / "out").exists()


def test_the_largest_seed_generates(capsys, tmp_path, tiny_recipe_path, tiny_pipeline):
    """The top of the documented range is usable, and is the seed torch is given."""
    import numpy as np

    out = tmp_path / "top.png"
    status, _, stderr = run(capsys, "generate", PROMPT, "-r", tiny_recipe_path, "--seed", 2**63 - 1, "-o", out)
    assert status == 0, stderr
    expected = tiny_pipeline.generate([PROMPT], n=1, seed=2**63 - 1)[0]
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(expected))


def png_with_settings(path: Path, settings: dict) -> Path:
    from PIL.PngImagePlugin import PngInfo

    from unclip_core.images import METADATA_KEY

    info = PngInfo()
    info.add_text(METADATA_KEY, json.dumps(settings))
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("settings, message", [
    ({"seed": 2**64}, "its unclip setting 'seed' must be a whole number from 0 to 2**63-1"),
    ({"seed": 1, "n": 10**6}, "its unclip setting 'n' must be at most 256"),
    ({"seed": 1, "prompt": "a red \udcff circle"}, "its unclip setting 'prompt' holds bytes that are not UTF-8 text"),
])
def test_from_a_png_with_settings_out_of_range_is_one_line(capsys, tmp_path, tiny_recipe_path, settings, message):
    source = png_with_settings(
        tmp_path / "edited.png",
        {"command": "generate", "recipe": str(tiny_recipe_path), "prompt": PROMPT, **settings},
    )
    status, _, stderr = run(capsys, "generate", "--from", source, "-o", tmp_path / "out" / "again.png")
    assert_one_line_refusal(status, stderr, f"{source}: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["inpaint", "{picture}", "{picture}", PROMPT, "--resample", "100000"], "--resample must be at most 100"),
    (["generate", PROMPT, "-n", "100000"], "-n must be at most 256"),
    (["vary", "{picture}", "-n", "257"], "-n must be at most 256"),
    (["inpaint", "{picture}", "{picture}", PROMPT, "-n", "1000"], "-n must be at most 256"),
    (["interpolate", "{picture}", "{picture}", "--steps", "100000"], "--steps must be at most 256"),
    (["textdiff", "{picture}", "a red circle", "a blue circle", "--thetas", ",".join(["0.5"] * 300)],
     "--thetas (how many) must be at most 256 (see docs/recipes.md, Limits), got 300"),
])
def test_counts_beyond_the_documented_limit_are_one_line(capsys, tmp_path, tiny_recipe_path, picture, monkeypatch, argv, message):
    monkeypatch.setattr("unclip_core.recipe.assemble.load_pipeline", lambda *a, **k: pytest.fail("models loaded"))
    status, _, stderr = run(capsys, *with_picture(argv, picture), "-r", tiny_recipe_path, "-o", tmp_path / "out" / "o.png")
    assert_one_line_refusal(status, stderr, message)
    assert not (tmp_path / "out").exists()


def test_eval_batch_size_is_bounded(capsys, tmp_path):
    status, _, stderr = run(capsys, "eval", "shapes", "--batch-size", 10**9, "--save", tmp_path / "out")
    assert_one_line_refusal(status, stderr, "--batch-size must be at most 4096", "got 1000000000")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["classify", "{picture}", "a red circle", "a \udcff circle"], "label 2 holds bytes that are not UTF-8 text"),
    (["generate", "a red \udcff circle", "-o", "{out}"], "the prompt holds bytes that are not UTF-8 text"),
    (["textdiff", "{picture}", "a red \udcffcircle", "a blue circle", "-o", "{out}"], "the from-caption holds bytes"),
])
def test_text_that_is_not_utf8_is_one_line(capsys, tmp_path, tiny_recipe_path, picture, argv, message):
    out = tmp_path / "out" / "o.png"
    argv = [str(out) if item == "{out}" else item for item in with_picture(argv, picture)]
    status, _, stderr = run(capsys, *argv, "-r", tiny_recipe_path)
    assert_one_line_refusal(status, stderr, message)
    assert not (tmp_path / "out").exists()


def test_classify_prints_labels_a_strict_ascii_stdout_cannot_show(tiny_recipe_path, picture, monkeypatch):
    import io
    import sys

    from unclip_core.cli.main import main

    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["classify", str(picture), "a red circle", "un cercle rouge à gauche", "-r", str(tiny_recipe_path)]) == 0
    stdout.flush()
    lines = buffer.getvalue().decode("ascii").splitlines()
    assert sorted(line.split("  ", 1)[1] for line in lines) == ["a red circle", "un cercle rouge \\xe0 gauche"]


def test_a_training_seed_beyond_2_32_is_a_recipe_error(capsys, tmp_path):
    status, _, stderr = run(capsys, "recipe", "validate", "train/shapes-decoder", f"train.seed={2**40}")
    assert status == 2 and "train.seed" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------ 3: --from a huge PNG
def test_from_a_huge_png_is_one_line(capsys, tmp_path):
    """A 30000×30000 PNG (900 megapixels, past PIL's own bomb limit) written cheaply: a
    one-row-repeated image compresses to a few hundred kB."""
    import zlib
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 30_000
    row = b"\x00" + b"\x00" * side
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    huge = tmp_path / "huge.png"
    huge.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + chunk(b"tEXt", b"unclip\x00" + json.dumps({"command": "generate", "recipe": "shapes", "prompt": PROMPT, "seed": 1}).encode())
        + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    status, _, stderr = run(capsys, "generate", "--from", huge, "-o", tmp_path / "out" / "again.png")
    assert_one_line_refusal(status, stderr, f"{huge} is too large")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 10: a full disk
def full_disk_at(call: int, monkeypatch) -> None:
    """PIL's ``save`` fails like a full disk on its ``call``-th use, after writing some bytes
    (the kernel's ENOSPC names no file)."""
    import errno

    real_save = Image.Image.save
    calls = []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == call:
            Path(fp).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)


def test_a_full_disk_names_the_file_and_keeps_none_of_the_outputs(capsys, tmp_path, tiny_recipe_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "grid.png").write_bytes(b"the previous grid")
    before = files_in(folder)
    full_disk_at(3, monkeypatch)  # the grid, the first image, then the second fails
    status, stdout, stderr = run(capsys, "generate", PROMPT, "-r", tiny_recipe_path, "-n", 4, "-o", folder / "grid.png")
    assert_one_line_refusal(status, stderr, f"No space left on device: {folder / 'grid-1.png'}")
    assert stdout == ""
    assert files_in(folder) == before
    assert sorted(p.name for p in folder.iterdir()) == ["grid.png"]  # no temporaries either


def test_a_full_disk_on_a_single_output_names_it(capsys, tmp_path, tiny_recipe_path, monkeypatch):
    full_disk_at(1, monkeypatch)
    out = tmp_path / "out" / "one.png"
    status, _, stderr = run(capsys, "generate", PROMPT, "-r", tiny_recipe_path, "-o", out)
    assert_one_line_refusal(status, stderr, f"No space left on device: {out}")
    assert list(out.parent.iterdir()) == []


def test_a_full_disk_that_names_no_file_is_still_one_line():
    import errno

    from unclip_core.cli.main import _user_message

    assert _user_message(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device (while writing an output)"


# ------------------------------------------------------------------ 11: a plugin that exits
@pytest.mark.parametrize("command", [["plugins"], ["recipe", "validate", "{recipe}"], ["generate", PROMPT, "-r", "{recipe}", "-o", "{out}"]])
def test_a_plugin_calling_sys_exit_at_import_is_named_and_the_rest_works(capsys, tmp_path, monkeypatch, tiny_recipe_path, command):
    import sys

    import unclip_core.registry as reg
    from tests.test_registry import make_distribution

    monkeypatch.syspath_prepend(str(tmp_path))
    make_distribution(tmp_path, "exiting-plugin", "fake_unclip_exiting", "import sys\nsys.exit(3)\n")
    monkeypatch.setattr(reg, "_DEFAULT", None)
    try:
        out = tmp_path / "out.png"
        argv = [str(tiny_recipe_path) if a == "{recipe}" else str(out) if a == "{out}" else a for a in command]
        status, stdout, stderr = run(capsys, *argv)
        assert status == 0, stderr
        registry = reg.default_registry()
        failures = {f.plugin: f.error for f in registry.failures}
        assert failures["exiting-plugin"] == "called sys.exit(3)"
        if command == ["plugins"]:
            assert "exiting-plugin (exiting-plugin): called sys.exit(3)" in stdout and "ddim" in stdout
    finally:
        monkeypatch.setattr(reg, "_DEFAULT", None)
        sys.modules.pop("fake_unclip_exiting", None)


# ------------------------------------------------------------------ 7: weights that are all +inf
def test_weights_that_are_all_inf_are_refused_before_drawing(capsys, tmp_path, tiny_recipe_data, registry):
    import math

    import torch

    from unclip_core.recipe.assemble import build_component
    from unclip_core.recipe.validate import validate_recipe
    from unclip_core.weights import save_weights

    decoder = build_component(validate_recipe(tiny_recipe_data, registry).decoder)
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.fill_(math.inf)
    save_weights(decoder, tmp_path / "decoder.safetensors")
    data = {**tiny_recipe_data, "decoder": {**tiny_recipe_data["decoder"], "weights": "decoder.safetensors"}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "out" / "black.png"
    status, _, stderr = run(capsys, "generate", PROMPT, "-r", tmp_path / "recipe.yaml", "-o", out)
    assert_one_line_refusal(status, stderr, f"{tmp_path / 'decoder.safetensors'} holds infinite values")
    assert not out.parent.exists()


# ------------------------------------------------------------------ 12, 13: checkpoints on --resume
TRAIN_RECIPE = Path(__file__).parent / "recipes" / "tiny-train-decoder.yaml"


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory) -> Path:
    """A run folder after one step of the tiny decoder recipe (its checkpoint is the reference)."""
    from unclip_core.cli.main import main

    run_dir = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", str(TRAIN_RECIPE), "--out", str(run_dir), "--max-steps", "1", "-q"]) == 0
    return run_dir


def corrupt(tensors: dict, metadata: dict, how: str) -> None:
    import torch

    ema_name = next(k for k in tensors if k.startswith("ema/") and tensors[k].ndim == 4)
    optim_name = next(k for k in tensors if k.startswith("optim/") and k.endswith("/exp_avg") and tensors[k].ndim >= 2)
    if how == "missing rng":
        del tensors["rng/train"]
    elif how == "step abc":
        metadata["step"] = "abc"
    elif how == "ema shape":
        tensors[ema_name] = tensors[ema_name][:1].clone()
    elif how == "ema nan":
        tensors[ema_name] = torch.full_like(tensors[ema_name], float("nan"))
    elif how == "rng state":
        tensors["rng/torch"] = tensors["rng/torch"][:100].clone()
    elif how == "rng dtype":
        tensors["rng/train"] = tensors["rng/train"].float()
    elif how == "optim shape":
        tensors[optim_name] = tensors[optim_name].flatten()[:3].clone()
    elif how == "optim index":
        tensors["optim/99999/exp_avg"] = tensors[optim_name].clone()
    elif how == "param groups":
        metadata["param_groups"] = "[{]"


@pytest.mark.parametrize("how, message", [
    ("missing rng", "checkpoint entry rng/train is missing"),
    ("step abc", "checkpoint entry step should be a whole number ≥ 0, got 'abc'"),
    ("ema shape", "(ema) does not fit the model's config: shape mismatch"),
    ("ema nan", "(ema) holds NaN values"),
    ("rng state", "checkpoint entry rng/torch is not a random-generator state"),
    ("rng dtype", "checkpoint entry rng/train is not a random-generator state (float32"),
    ("optim shape", "has shape (3,), its parameter"),
    ("optim index", "checkpoint entry optim/99999/exp_avg names no parameter"),
    ("param groups", "checkpoint entry param_groups is not the optimiser's groups as JSON"),
])
def test_a_corrupt_checkpoint_is_refused_before_step_1(capsys, tmp_path, one_step_run, how, message):
    import shutil

    from safetensors.torch import load_file, save_file

    from unclip_core.weights import read_metadata

    run_dir = tmp_path / "run"
    shutil.copytree(one_step_run, run_dir)
    checkpoint = run_dir / "last.safetensors"
    tensors, metadata = load_file(str(checkpoint)), read_metadata(checkpoint)
    corrupt(tensors, metadata, how)
    save_file(tensors, str(checkpoint), metadata=metadata)
    before = files_in(run_dir)
    status, _, stderr = run(capsys, "train", TRAIN_RECIPE, "--out", run_dir, "--resume", "--max-steps", 2, "-q")
    assert_one_line_refusal(status, stderr, str(checkpoint), message)
    assert files_in(run_dir) == before


def test_a_good_checkpoint_still_resumes(capsys, tmp_path, one_step_run):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(one_step_run, run_dir)
    status, _, stderr = run(capsys, "train", TRAIN_RECIPE, "--out", run_dir, "--resume", "--max-steps", 2, "-q")
    assert status == 0, stderr


def test_temporaries_a_killed_save_left_are_removed_at_start(capsys, tmp_path, one_step_run):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(one_step_run, run_dir)
    stale = [run_dir / f".last.safetensors.{token}.tmp" for token in ("0123456789abcdef", "fedcba9876543210")]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    unrelated = [run_dir / ".notes.txt.0123456789abcdef.tmp", run_dir / ".last.safetensors.mine.tmp"]
    for path in unrelated:
        path.write_bytes(b"not ours")
    status, _, stderr = run(capsys, "train", TRAIN_RECIPE, "--out", run_dir, "--resume", "--max-steps", 2, "-q")
    assert status == 0, stderr
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in unrelated)


# ------------------------------------------------------------------ docs/shapes.md
def test_the_shapes_page_states_the_worlds_numbers():
    """docs/shapes.md is the user's description of the world: its numbers are the code's."""
    from unclip_plugins.shapes import checker, world

    page = (Path(__file__).parents[1] / "docs" / "shapes.md").read_text(encoding="utf-8")
    for name, rgb in world.PALETTE.items():
        assert f"| {name} | {rgb} |" in page
    assert str(world.BACKGROUND) in page
    for shape in world.SHAPES:
        assert f"**{shape}**" in page
    for relation in world.RELATIONS:
        assert f"`{relation}`" in page
    for color, shape in world.HELD_OUT_PAIRS:
        assert f"**{color} {shape}**" in page
    low, high = world.SIZE_RANGE
    assert f"between {low} and {high}" in page
    assert f"{world.ONE_OBJECT_PROBABILITY:.0%} of scenes" in page and f"{1 - world.ONE_OBJECT_PROBABILITY:.0%})" in page
    assert f"±{world.ONE_OBJECT_JITTER}" in page and f"±{world.TWO_OBJECT_JITTER}" in page
    assert f"{world.TWO_OBJECT_OFFSET} left or right" in page
    assert f"at least {checker.MIN_OBJECT_FRACTION:.1%} of the canvas" in page


def test_user_docs_never_point_outside_the_project():
    root = Path(__file__).parents[1]
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted((root / "recipes").rglob("*.yaml"))]:
        assert "../shared" not in page.read_text(encoding="utf-8"), page
        assert "SHAPES.md" not in page.read_text(encoding="utf-8"), page


def test_a_full_disk_during_registry_export_keeps_the_old_catalogue(capsys, tmp_path, monkeypatch):
    import errno

    assert run(capsys, "registry", "export", "--out", tmp_path / "reg")[0] == 0
    before = files_in(tmp_path / "reg")
    real_write_text = Path.write_text
    calls = []

    def write_text(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    status, _, stderr = run(capsys, "registry", "export", "--out", tmp_path / "reg")
    assert_one_line_refusal(status, stderr, "No space left on device: ", str(tmp_path / "reg"))
    monkeypatch.undo()
    assert files_in(tmp_path / "reg") == before
    assert not [p for p in (tmp_path / "reg").rglob("*.tmp")]


@pytest.mark.parametrize("setting, field", [
    ("prompts_per_group=1000000000", "prompts_per_group"),
    ("diversity_samples=100000", "diversity_samples"),
    (f"prompt_seed={2**64}", "prompt_seed"),
])
def test_eval_settings_that_could_never_finish_are_refused(capsys, tmp_path, setting, field):
    status, _, stderr = run(capsys, "eval", "shapes", "-s", setting, "--save", tmp_path / "out")
    assert_one_line_refusal(status, stderr, f"evaluation 'shapes' settings: {field}: Input should be less than or equal to")
    assert not (tmp_path / "out").exists()


def test_a_slot_file_is_copied_and_stays_a_slot_file(capsys, tmp_path):
    """A slot file is one stage, not a recipe: cp reads it within the YAML limits and keeps
    its ``# Slot:`` mark first, so the copy still works as ``prior: copy.yaml``."""
    from unclip_core.recipe.files import expand_slot_files, is_slot_file, shipped_recipes_dir

    source = shipped_recipes_dir() / "shapes-prior-ar.yaml"
    copy = tmp_path / "my-prior.yaml"
    status, _, stderr = run(capsys, "recipe", "cp", source, copy)
    assert status == 0, stderr
    assert is_slot_file(copy)
    expanded = expand_slot_files({"prior": copy.name}, tmp_path)["prior"]
    assert Path(expanded["weights"]).is_file()
