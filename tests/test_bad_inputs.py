"""Bad input gets one line naming what was wrong and where, before any work, and nothing on
disk is lost: output paths, devices, weights that hold no usable numbers, training that would
export untrained weights, and the CLI's last line of defence (OS errors, memory, warnings)."""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from unclip_core.cli.main import _user_message, main
from unclip_core.devices import check_device
from unclip_core.errors import CheckpointError, InputError, RecipeError, UnclipError
from unclip_core.output_paths import check_writable
from unclip_core.weights import check_state_dict


# ------------------------------------------------------------------ output paths
def test_check_writable_accepts_new_files_and_missing_folders(tmp_path):
    assert check_writable(tmp_path / "a" / "b" / "out.png") == tmp_path / "a" / "b" / "out.png"
    assert check_writable(tmp_path / "run", folder=True) == tmp_path / "run"
    (tmp_path / "old.png").write_bytes(b"x")
    assert check_writable(tmp_path / "old.png") == tmp_path / "old.png"  # replaced atomically later


@pytest.mark.parametrize(
    "target, folder, message",
    [
        ("", False, "the output path is empty"),
        ("  ", True, "the output path is empty"),
        ("notes/out.png", False, "cannot write output {t}/notes/out.png: {t}/notes is a file, not a folder"),
        ("notes/deeper/out.png", False, "cannot write output {t}/notes/deeper/out.png: {t}/notes is a file, not a folder"),
        ("notes", True, "cannot write output {t}/notes: it is a file, not a folder"),
        ("dir", False, "cannot write output {t}/dir: it is a folder"),
    ],
)
def test_check_writable_refuses_with_one_line(tmp_path, target, folder, message):
    (tmp_path / "notes").write_text("x")
    (tmp_path / "dir").mkdir()
    path = tmp_path / target if target.strip() else target
    with pytest.raises(InputError) as error:
        check_writable(path, folder=folder)
    assert str(error.value) == message.format(t=tmp_path)


def test_check_writable_refuses_a_folder_it_may_not_write_in(tmp_path, monkeypatch):
    """Tested through os.access, since these tests may run as root (who may write anywhere)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    with pytest.raises(InputError, match=rf"cannot write output {locked}/new/o.png: no permission to write in {locked}$"):
        check_writable(locked / "new" / "o.png")


def test_a_temporary_file_that_cannot_be_made_is_reported_under_the_real_name(tmp_path, monkeypatch):
    from unclip_core.atomic import atomic_write

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PermissionError) as error:
        atomic_write(tmp_path / "out.png", lambda tmp: None)
    assert error.value.filename == str(tmp_path / "out.png")


# ------------------------------------------------------------------ the CLI's last line
def test_os_errors_and_running_out_of_memory_are_one_line():
    assert _user_message(FileExistsError(17, "File exists", "afile")) == "File exists: afile"
    assert _user_message(OSError(28, "No space left on device", "a.png", None, "b.png")) == "No space left on device: a.png -> b.png"
    alloc = RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 26214400000 bytes.")
    message = _user_message(alloc)
    assert message.startswith("out of memory ([enforce fail") and message.endswith("ask for fewer images at once (-n) or free memory")
    assert "\n" not in message
    assert _user_message(MemoryError()).startswith("out of memory (MemoryError)")
    assert _user_message(ValueError("a bug")) is None  # bugs keep their traceback
    assert _user_message(RuntimeError("shape mismatch")) is None


def test_a_warning_prints_as_one_line(capsys, monkeypatch):
    """Python's default format adds the source file and line under the message; users get the
    message, on one line (``--debug`` keeps Python's format)."""
    import argparse

    def warn(args):
        warnings.warn("this prompt is longer than\n the encoder's 16 tokens", UserWarning)
        return 0

    def build_parser():
        parser = argparse.ArgumentParser()
        parser.add_argument("--debug", action="store_true")
        parser.set_defaults(handler=warn)
        return parser

    monkeypatch.setattr("unclip_core.cli.main.build_parser", build_parser)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main replaces it; restore after
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main([]) == 0
    assert capsys.readouterr().err == "unclip: warning: this prompt is longer than the encoder's 16 tokens\n"


# ------------------------------------------------------------------ devices
@pytest.mark.parametrize(
    "name, message",
    [
        ("tpu", "runtime.device 'tpu' is not a torch device"),
        ("meta", "runtime.device meta holds no data"),
    ],
)
def test_check_device_refuses_what_cannot_compute(name, message):
    with pytest.raises(ValueError, match=message):
        check_device(name)


def test_check_device_knows_whether_a_gpu_is_there():
    assert check_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert check_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(ValueError, match="this machine has"):
            check_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="runtime.device is cuda but this machine has no usable cuda device"):
            check_device("cuda")


def test_a_recipe_on_a_missing_device_fails_before_weights_load(tiny_recipe_path, monkeypatch):
    from unclip_core.recipe.assemble import load_pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("unclip_core.recipe.assemble.load_weights", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(RecipeError, match=r"runtime.device is cuda but this machine has no usable cuda device") as error:
        load_pipeline(tiny_recipe_path, ["runtime.device=cuda"])
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e309"])
def test_guidance_must_be_finite(tiny_recipe_path, value):
    from unclip_core.recipe.files import load_recipe

    with pytest.raises(RecipeError, match=r"decoder.guidance_scale: Input should be a finite number"):
        load_recipe(tiny_recipe_path, [f"decoder.guidance_scale={value}"])


def test_weights_with_nan_or_integer_numbers_are_refused():
    model = nn.Linear(3, 2)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    check_state_dict(model, good, "w.safetensors")
    poisoned = {**good, "bias": torch.tensor([0.0, math.nan])}
    with pytest.raises(CheckpointError, match=r"^w.safetensors holds NaN values \(a diverged or corrupt save\) in bias$"):
        check_state_dict(model, poisoned, "w.safetensors")
    as_integers = {**good, "weight": good["weight"].to(torch.int32)}
    with pytest.raises(CheckpointError, match=r"^w.safetensors stores tensors in the wrong number type: weight \(int32 vs model float32\)$"):
        check_state_dict(model, as_integers, "w.safetensors")


def test_infinite_buffers_are_allowed_but_not_infinite_parameters():
    """-inf is a legitimate masked value in a buffer (attention masks); an infinite parameter
    is never a weight (all +inf drew all-black images without a word)."""
    model = nn.Linear(3, 2)
    model.register_buffer("mask", torch.tensor([0.0, -math.inf]))
    check_state_dict(model, {**model.state_dict(), "mask": torch.tensor([-math.inf, 0.0])}, "w.safetensors")
    with pytest.raises(CheckpointError, match=r"^w.safetensors holds infinite values \(a diverged or corrupt save\) in bias$"):
        check_state_dict(model, {**model.state_dict(), "bias": torch.tensor([-math.inf, 0.0])}, "w.safetensors")


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("max_steps", [0, -2])
def test_no_training_steps_never_overwrites_the_export(registry, tiny_recipe_data, tmp_path, max_steps):
    from tests.test_training import recipe_for
    from unclip_core.training.loop import train
    from unclip_core.training.validate import validate_training

    data = recipe_for("decoder", tiny_recipe_data)
    export = tmp_path / "decoder.safetensors"
    export.write_bytes(b"trained weights")
    data["output"]["export"] = str(export)
    resolved = validate_training(data, registry, base_dir=tmp_path)
    with pytest.raises(UnclipError, match=rf"^--max-steps must be at least 1, got {max_steps}$"):
        train(resolved, registry=registry, out_dir=tmp_path / "run", max_steps=max_steps, progress=False)
    assert export.read_bytes() == b"trained weights"
    assert not (tmp_path / "run").exists()


def test_an_export_that_cannot_be_written_stops_training_before_it_starts(registry, tiny_recipe_data, tmp_path):
    from tests.test_training import recipe_for
    from unclip_core.training.loop import train
    from unclip_core.training.validate import validate_training

    (tmp_path / "notes").write_text("x")
    data = recipe_for("decoder", tiny_recipe_data)
    data["output"]["export"] = str(tmp_path / "notes" / "decoder.safetensors")
    resolved = validate_training(data, registry, base_dir=tmp_path)
    with pytest.raises(InputError, match=r"cannot write output.export .*notes/decoder.safetensors: .*notes is a file, not a folder"):
        train(resolved, registry=registry, out_dir=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
