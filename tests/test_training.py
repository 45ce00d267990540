"""Training: schedules, data order, EMA, a smoke run per stage, exact resume, kill safety."""
from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from unclip_core.errors import RecipeError, UnclipError
from unclip_core.training.checkpoint import TrainingState, load_checkpoint
from unclip_core.training.ema import EMA
from unclip_core.training.loop import CHECKPOINT_NAME, batch_indices, lr_factor, train
from unclip_core.training.validate import validate_training
from unclip_core.weights import read_safetensors


def recipe_for(stage: str, tiny: dict, **train) -> dict:
    """A training recipe for one stage of the tiny stack, on 16 shapes scenes."""
    model = {"encoder": tiny["encoder"], "prior": {k: tiny["prior"][k] for k in ("type", "config")},
             "decoder": {k: tiny["decoder"][k] for k in ("type", "config")},
             "upsampler": {k: tiny["upsamplers"][0][k] for k in ("type", "config")}}[stage]
    size = {"encoder": 32, "prior": 32, "decoder": 16, "upsampler": 32}[stage]
    data = {
        "name": f"tiny-{stage}",
        "stage": stage,
        "model": copy.deepcopy(model),
        "dataset": {"type": "shapes", "config": {"size": size, "length": 16, "seed": 0}},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "decay": "constant"},
        "ema": {"decay": 0.9},
        "train": {"steps": 40, "batch_size": 8, "seed": 0, **train},
        "output": {"checkpoint_every": 5, "log_every": 1},
    }
    if stage in ("prior", "decoder"):
        data["encoder"] = copy.deepcopy(tiny["encoder"])
    return data


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r and "event" not in r]


# ------------------------------------------------------------------ pure functions
def test_lr_schedule_hand_values():
    assert lr_factor(0, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine", 0.1) == pytest.approx(1.0)
    # half-way through the decay: 0.1 + 0.9 * 0.5 * (1 + cos(pi/2)) = 0.55
    assert lr_factor(55, 100, 10, "cosine", 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 100, 10, "linear", 0.2) == pytest.approx(0.2)
    assert lr_factor(50, 100, 0, "constant", 0.2) == 1.0


def test_batch_indices_cover_each_epoch_once():
    length, batch = 10, 4
    seen = sum((batch_indices(step, batch, length, seed=3) for step in range(5)), [])  # 20 = 2 epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert batch_indices(2, batch, length, 3) == batch_indices(2, batch, length, 3)
    assert batch_indices(0, batch, length, 3) != batch_indices(0, batch, length, 4)


def test_ema_warmup_and_update():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.999, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(10**6) == 0.999
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=1)  # decay (1+1)/(10+1) = 2/11 → shadow = 9/11
    assert float(ema.shadow["weight"]) == pytest.approx(9 / 11)


def test_training_recipe_validation(registry, tiny_recipe_data):
    data = recipe_for("decoder", tiny_recipe_data)
    del data["encoder"]
    data["optim"]["lr"] = -1
    data["datasett"] = {}
    with pytest.raises(RecipeError) as info:
        validate_training(data, registry)
    paths = info.value.paths
    assert "encoder" in paths and "optim.lr" in paths and "datasett" in paths
    data = recipe_for("prior", tiny_recipe_data)
    data["model"]["config"]["embed_dim"] = 8
    with pytest.raises(RecipeError, match="embedding size 8 does not match the encoder's 16"):
        validate_training(data, registry)
    data = recipe_for("decoder", tiny_recipe_data)
    assert "inversion" in validate_training(data, registry).preview_sampler.spec.roles
    assert validate_training(data, registry).preview_sampler.config.steps == 25
    data.setdefault("output", {})["preview_sampler"] = {"type": "dpm-solver", "config": {}}
    with pytest.raises(RecipeError, match=r"output.preview_sampler.type: 'dpm-solver' is not a registered sampler"):
        validate_training(data, registry)


# ------------------------------------------------------------------ smoke runs
@pytest.mark.parametrize("stage", ["encoder", "prior", "decoder", "upsampler"])
def test_each_stage_trains_and_loss_goes_down(stage, registry, tiny_recipe_data, tmp_path):
    data = recipe_for(stage, tiny_recipe_data)
    data["output"]["export"] = str(tmp_path / "exported.safetensors")
    resolved = validate_training(data, registry, base_dir=tmp_path)
    summary = train(resolved, registry=registry, out_dir=tmp_path / "run", progress=False)
    assert summary["step"] == 40
    values = losses(tmp_path / "run")
    assert len(values) == 40 and all(math.isfinite(v) for v in values)
    first, last = sum(values[:8]) / 8, sum(values[-8:]) / 8
    assert last < first, f"{stage}: loss did not go down ({first:.4f} → {last:.4f})"
    exported = read_safetensors(tmp_path / "exported.safetensors")
    from unclip_core.recipe.assemble import build_component
    from unclip_core.weights import load_weights

    fresh = build_component(resolved.model)
    load_weights(fresh, tmp_path / "exported.safetensors")  # exported EMA weights fit the component
    assert exported
    if stage in ("decoder", "upsampler"):
        assert list((tmp_path / "run" / "samples").glob("step-*.png"))


@pytest.mark.parametrize("stage", ["decoder", "prior"])
def test_resume_is_exact(registry, tiny_recipe_data, tmp_path, stage):
    """Bit-exact, cached frozen-encoder embeddings included (they are re-encoded in the batches
    they first came in: a different batch changes a product's last bits)."""
    data = recipe_for(stage, tiny_recipe_data, steps=8)
    data["output"]["checkpoint_every"] = 100
    resolved = validate_training(data, registry, base_dir=tmp_path)
    train(resolved, registry=registry, out_dir=tmp_path / "straight", progress=False)
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, max_steps=4)
    with pytest.raises(UnclipError, match="--resume"):
        train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False)
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, resume=True)
    a = read_safetensors(tmp_path / "straight" / CHECKPOINT_NAME)
    b = read_safetensors(tmp_path / "split" / CHECKPOINT_NAME)
    for key in a:
        if key.startswith(("model/", "ema/", "optim/")):
            assert torch.equal(a[key], b[key]), key


SCRIPT = """
import sys, yaml
from unclip_core.training.validate import validate_training
from unclip_core.training.loop import train
from unclip_core.registry import discover
data = yaml.safe_load(open(sys.argv[1]))
train(validate_training(data, discover(), base_dir="."), out_dir=sys.argv[2], progress=False)
"""


def _start(tmp_path: Path, data: dict) -> tuple[subprocess.Popen, Path]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(recipe), str(run)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, run


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def _loadable(run: Path, registry, data: dict) -> int:
    resolved = validate_training(data, registry)
    from unclip_core.recipe.assemble import build_component

    model = build_component(resolved.model, trainable=True)
    state = TrainingState(model, EMA(model), torch.optim.AdamW(model.parameters()), torch.Generator())
    return load_checkpoint(run / CHECKPOINT_NAME, state)


def test_sigterm_saves_and_kill_leaves_a_loadable_checkpoint(registry, tiny_recipe_data, tmp_path):
    data = recipe_for("decoder", tiny_recipe_data, steps=100000)
    data["output"]["checkpoint_every"] = 1
    data["output"]["sample_every"] = 0
    first = tmp_path / "a"
    first.mkdir()
    proc, run = _start(first, data)
    _wait_for(run / CHECKPOINT_NAME, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    step = _loadable(run, registry, data)
    assert step >= 1
    last = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()][-1]
    assert last["event"] == "end" and last["stopped_early"] and last["step"] == step

    # SIGKILL at many moments, some of them mid-save: the checkpoint always loads.
    other = tmp_path / "b"
    other.mkdir()
    proc, run = _start(other, data)
    _wait_for(run / CHECKPOINT_NAME, proc)
    for delay in (0.01, 0.03, 0.07, 0.11):
        time.sleep(delay)
        _loadable(run, registry, data)  # reads race with atomic replaces: must never see a partial file
    proc.kill()
    proc.wait()
    assert _loadable(run, registry, data) >= 1
