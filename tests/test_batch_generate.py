"""``unclip generate --prompts FILE --out-dir DIR``: prompt files, batching, resuming, sharding.

References are the library called directly, one line at a time
(``pipeline.generate_tensors([prompt], n, seed)``: what ``unclip generate PROMPT -n N --seed S``
draws), never the batch run's own output. The torchrun tests run 2 CPU ranks (gloo) through
tests/torchrun_driver.py, which logs every file each rank renamed into place.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unclip_core.batch.plan import pack, rank_slice, steps_for
from unclip_core.batch.prompt_file import Item, read_prompt_file
from unclip_core.cli.main import main
from unclip_core.errors import InputError
from unclip_core.images import read_png_metadata

TESTS = Path(__file__).parent
DRIVER = TESTS / "torchrun_driver.py"
FAST = ["prior.sampler.config.steps=4", "decoder.sampler.config.steps=4", "upsamplers.0.sampler.config.steps=4"]
LINES = [
    {"prompt": "a red circle", "seed": 11, "n": 2},
    {"prompt": "a blue square to the left of a green triangle"},
    {"prompt": "a yellow star", "n": 3},
    {"prompt": "a red circle", "seed": 12},
    {"prompt": "a purple triangle above a red square", "seed": 5},
]


@pytest.fixture(scope="module")
def pipeline():
    from unclip_core.recipe.assemble import load_pipeline

    return load_pipeline("shapes", FAST)


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def as_uint8(tensor) -> np.ndarray:  # noqa: ANN001 - [B, 3, H, W] in [-1, 1]
    return ((tensor.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy().astype(int)


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to one rounding step: a batch of another size may round the last float bit
    differently (BLAS blocking), moving a pixel across a level; another seed's image differs
    by far more."""
    return a.shape == b.shape and int(np.abs(a - b).max()) <= 2


def reference(pipeline, items: list[Item]) -> dict[str, np.ndarray]:
    """Each line drawn alone: file name → pixels."""
    out = {}
    for item in items:
        for index, image in enumerate(as_uint8(pipeline.generate_tensors([item.prompt], n=item.n, seed=item.seed))):
            out[item.file_name(index)] = image
    return out


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def generate(*args: str) -> int:
    return main(["generate", *args, "-q", *FAST])


# ------------------------------------------------------------------ the prompt file
def test_text_and_jsonl_files_with_per_line_settings_winning(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("a red circle\n\n# a comment\n  a blue square  \n", encoding="utf-8")
    assert read_prompt_file(text, n=2, seed=7) == [Item(1, "a red circle", 7, 2), Item(4, "a blue square", 8, 2)]
    jsonl = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a", "seed": 3}, {"prompt": "b", "n": 4, "negative": "c"}])
    assert read_prompt_file(jsonl, n=2, seed=7) == [Item(1, "a", 3, 2), Item(2, "b", 8, 4, "c")]


@pytest.mark.parametrize("line, complaint", [
    ('{"prompt": "a", "sed": 3}', "p.jsonl:2: unknown key 'sed'"),
    ('{"prompt": ""}', "p.jsonl:2: the prompt is empty"),
    ('{"prompt": "a", "n": 0}', "p.jsonl:2: 'n' must be a whole number from 1 to 256"),
    ('{"prompt": "a", "n": 2.5}', "p.jsonl:2: 'n' must be a whole number"),
    ('{"prompt": "a", "seed": -1}', "p.jsonl:2: 'seed' must be a whole number from 0"),
    ('{"prompt": 3}', "p.jsonl:2: 'prompt' must be text"),
    ('["a"]', "p.jsonl:2: a line must be a JSON object"),
    ('{"prompt": "a"', "p.jsonl:2: not JSON"),
])
def test_a_bad_line_is_one_error_naming_file_and_line_before_any_model_loads(tmp_path, capsys, line, complaint):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n", encoding="utf-8")
    assert main(["generate", "--prompts", str(path), "--out-dir", str(tmp_path / "out"), "-r", "missing.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unclip: error: ") and complaint in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_prompts_and_out_dir_go_together(tmp_path, capsys):
    assert main(["generate", "--prompts", str(tmp_path / "p.txt")]) == 2
    assert "--prompts FILE and --out-dir DIR go together" in capsys.readouterr().err


# ------------------------------------------------------------------ batching
def test_packing_never_splits_a_line_and_ranks_take_disjoint_slices():
    items = [Item(i, "p", i, n) for i, n in enumerate([1, 2, 3, 9, 1, 1], start=1)]
    assert [[item.line for item in batch] for batch in pack(items, 4)] == [[1, 2], [3], [4], [5, 6]]
    slices = [rank_slice(items, rank, 2) for rank in range(2)]
    assert sorted(item.line for part in slices for item in part) == [1, 2, 3, 4, 5, 6]
    assert not {i.line for i in slices[0]} & {i.line for i in slices[1]}
    assert steps_for(items, 2, 4) == max(len(pack(part, 4)) for part in slices)


def test_batched_lines_draw_what_each_line_draws_alone(tmp_path, pipeline, monkeypatch):
    prompts = write_jsonl(tmp_path / "p.jsonl", LINES)
    calls = []
    real = type(pipeline).generate_tensors

    def counting(self, prompts, *args, **kwargs):
        calls.append(len(prompts))
        return real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(type(pipeline), "generate_tensors", counting)
    assert generate("--prompts", str(prompts), "--out-dir", str(tmp_path / "out"), "--batch-size", "4", "--seed", "3") == 0
    assert calls == [3, 4, 1], "lines were not packed into batches of at most 4 images"
    monkeypatch.undo()
    items = read_prompt_file(prompts, seed=3)
    wanted = reference(pipeline, items)
    written = {r["file"]: r for r in records(tmp_path / "out")}
    assert set(written) == set(wanted) == {p.name for p in (tmp_path / "out").glob("*.png")}
    for name, image in wanted.items():
        assert same_image(pixels(tmp_path / "out" / name), image), name
    # the two "a red circle" lines have other seeds, so other images: the comparison can fail
    assert not same_image(wanted["000001-000.png"], wanted["000004-000.png"])
    meta = read_png_metadata(tmp_path / "out" / "000003-002.png")
    assert (meta["prompt"], meta["seed"], meta["n"], meta["index"], meta["command"]) == ("a yellow star", 5, 3, 2, "generate")
    assert written["000003-002.png"]["seed"] == 5 and written["000003-002.png"]["recipe_digest"] == pipeline.recipe.digest


def test_a_batch_run_png_reproduces_with_generate_from(tmp_path):
    prompts = write_jsonl(tmp_path / "p.jsonl", LINES[:2])
    assert generate("--prompts", str(prompts), "--out-dir", str(tmp_path / "out")) == 0
    assert main(["generate", "--from", str(tmp_path / "out" / "000001-001.png"), "-o", str(tmp_path / "again.png"), "-q"]) == 0
    assert same_image(pixels(tmp_path / "again.png"), pixels(tmp_path / "out" / "000001-001.png"))


def test_negative_prompts_pass_through_or_are_refused_naming_the_line(tmp_path, pipeline, capsys):
    import inspect

    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "a red circle"}, {"prompt": "a blue square", "negative": "red"}])
    status = generate("--prompts", str(prompts), "--out-dir", str(tmp_path / "out"))
    if "negative_prompt" in inspect.signature(pipeline.generate_tensors).parameters:
        assert status == 0
        alone = as_uint8(pipeline.generate_tensors(["a blue square"], n=1, seed=1, negative_prompt="red"))[0]
        assert same_image(pixels(tmp_path / "out" / "000002-000.png"), alone)
    else:
        assert status == 2
        assert f"{prompts}:2: 'negative' needs negative prompts" in capsys.readouterr().err
        assert not list((tmp_path / "out").glob("*.png")) if (tmp_path / "out").exists() else True


# ------------------------------------------------------------------ resuming
def test_a_rerun_skips_finished_lines_and_a_torn_record_is_redrawn(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "p.jsonl", LINES[:3])
    out = tmp_path / "out"
    assert generate("--prompts", str(prompts), "--out-dir", str(out)) == 0
    first = {r["file"]: r for r in records(out)}
    # a kill during an append leaves a record without its newline: that image counts as not done
    manifest = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
    torn = [line for line in manifest if json.loads(line)["line"] != 3]
    (out / "manifest.jsonl").write_text("".join(torn) + manifest[-1][:20])
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    write_jsonl(prompts, LINES[:4])  # and a line added since
    assert main(["generate", "--prompts", str(prompts), "--out-dir", str(out), *FAST]) == 0
    assert "2 of 4 lines were already done" in capsys.readouterr().err
    after = {r["file"]: r for r in records(out)}
    assert set(after) == set(first) | {"000004-000.png"}
    for name in ("000001-000.png", "000001-001.png", "000002-000.png"):
        assert (out / name).stat().st_mtime_ns == stamps[name], f"{name} was drawn again"


def test_another_recipe_or_an_edited_line_is_refused_unless_forced(tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "p.jsonl", LINES[:2])
    out = tmp_path / "out"
    assert generate("--prompts", str(prompts), "--out-dir", str(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert generate("--prompts", str(prompts), "--out-dir", str(out), "decoder.guidance_scale=1.5") == 2
    err = capsys.readouterr().err.strip()
    assert "was made with another recipe or other overrides: recipe digest" in err and "--force" in err and "\n" not in err
    write_jsonl(prompts, [LINES[0], {"prompt": "a green star"}])
    assert generate("--prompts", str(prompts), "--out-dir", str(out)) == 2
    assert f"{prompts}:2 changed since {out} was made" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "a refused run changed the folder"
    assert generate("--prompts", str(prompts), "--out-dir", str(out), "--force") == 0
    assert [r["prompt"] for r in records(out) if r["line"] == 2] == ["a green star"]
    assert (out / "000001-000.png").read_bytes() == before["000001-000.png"], "an unchanged line was redrawn"


def test_a_killed_run_loses_at_most_its_batch_and_the_rerun_completes_it(tmp_path, pipeline):
    lines = [{"prompt": p, "seed": s} for s, p in enumerate(["a red circle", "a blue square", "a green triangle", "a yellow star",
                                                           "a purple circle", "a red square", "a blue star", "a green circle"])]
    prompts = write_jsonl(tmp_path / "p.jsonl", lines)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "unclip_core.cli.main", "generate", "--prompts", str(prompts), "--out-dir", str(out),
               "--batch-size", "1", "-q", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        manifest = out / "manifest.jsonl"
        if manifest.is_file() and manifest.read_text().count("\n") >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed: " + process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    recorded = {r["file"] for r in records(out)}
    assert 2 <= len(recorded) < len(lines)
    for name in recorded:  # every recorded image is whole
        Image.open(out / name).load()
    loose = {p.name for p in out.glob("*.png")}
    assert len(loose - recorded) <= 1, "more than the batch in flight was lost or left unrecorded"
    stamps = {name: (out / name).stat().st_mtime_ns for name in recorded}
    done = subprocess.run([*command[:-len(FAST) - 1], *FAST], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(recorded)} of {len(lines)} lines were already done" in done.stderr
    assert not list(out.glob(".*.tmp"))
    wanted = reference(pipeline, read_prompt_file(prompts))
    assert {r["file"] for r in records(out)} == set(wanted)
    for name, image in wanted.items():
        assert same_image(pixels(out / name), image), name
    assert all((out / name).stat().st_mtime_ns == stamp for name, stamp in stamps.items())


# ------------------------------------------------------------------ webdataset
def test_webdataset_shards_are_read_by_the_shards_dataset(tmp_path, pipeline):
    pytest.importorskip("webdataset")
    from unclip_core.registry import default_registry

    prompts = write_jsonl(tmp_path / "p.jsonl", LINES[:3])
    out = tmp_path / "out"
    assert generate("--prompts", str(prompts), "--out-dir", str(out), "--format", "webdataset", "--shard-size", "4") == 0
    shards = sorted(p.name for p in out.glob("*.tar"))
    assert shards == ["shard-000001-000.tar", "shard-000003-001.tar"] and not list(out.glob("*.png"))
    spec = default_registry().get("dataset", "shards")
    dataset = spec.build(spec.config_model.model_validate({"urls": str(out / "*.tar"), "size": 64, "image_key": "png"}))
    items = read_prompt_file(prompts)
    wanted = reference(pipeline, items)
    captions = {item.file_name(i)[:-4]: item.prompt for item in items for i in range(item.n)}
    seen = {}
    for url in dataset.urls:
        for sample in dataset.shard_items(url):
            assert sample["caption"] == captions[sample["key"]]
            seen[sample["key"] + ".png"] = as_uint8(sample["image"][None])[0]
    assert set(seen) == set(wanted)
    for name, image in wanted.items():
        assert same_image(seen[name], image), name
    # a rerun finds every image recorded (in its shard) and draws nothing
    assert generate("--prompts", str(prompts), "--out-dir", str(out), "--format", "webdataset") == 0
    assert sorted(p.name for p in out.glob("*.tar")) == shards


# ------------------------------------------------------------------ torchrun
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(record: Path, *args: str) -> list[str]:
    record.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), str(DRIVER), str(record), "generate", *args, *FAST]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
SHARDED = [{"prompt": p, "seed": 40 + s, "n": 1 + s % 2} for s, p in enumerate(
    ["a red circle", "a blue square", "a green triangle", "a yellow star", "a purple circle", "a red square",
     "a blue star", "a green circle", "a yellow square", "a purple star", "a red triangle", "a blue circle"])]


def pngs_written(record: Path, rank: int) -> list[str]:
    path = record / f"rank{rank}.writes.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [name for line in lines for name in json.loads(line) if name.endswith(".png")]


def check_against_reference(pipeline, prompts: Path, out: Path) -> None:
    wanted = reference(pipeline, read_prompt_file(prompts))
    assert sorted(r["file"] for r in records(out)) == sorted(wanted), "the manifest is not one record per image"
    assert {p.name for p in out.glob("*.png")} == set(wanted) and not list(out.glob("manifest.rank*"))
    for name, image in wanted.items():
        assert same_image(pixels(out / name), image), name


@pytest.mark.slow
def test_two_ranks_write_each_image_once_and_draw_what_one_process_draws(tmp_path, pipeline):
    prompts = write_jsonl(tmp_path / "p.jsonl", SHARDED)
    out, record = tmp_path / "out", tmp_path / "record"
    done = subprocess.run(torchrun_command(record, "--prompts", str(prompts), "--out-dir", str(out), "--batch-size", "3"),
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    per_rank = [pngs_written(record, rank) for rank in range(2)]
    assert per_rank[0] and per_rank[1], "a rank drew nothing"
    everything = per_rank[0] + per_rank[1]
    assert len(everything) == len(set(everything)), "an image was written twice"
    check_against_reference(pipeline, prompts, out)
    assert done.stdout.count("manifest.jsonl") == 1, "only rank 0 reports"
    assert done.stderr.count("unclip: drew 18 images") == 1, "rank 0's report does not count every rank's images"


@pytest.mark.slow
def test_a_rank_killed_mid_run_leaves_a_state_that_resumes_to_the_same_images(tmp_path, pipeline):
    prompts = write_jsonl(tmp_path / "p.jsonl", SHARDED)
    out, record = tmp_path / "out", tmp_path / "record"
    run = subprocess.Popen(torchrun_command(record, "--prompts", str(prompts), "--out-dir", str(out), "--batch-size", "1", "-q"),
                           env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = out / "manifest.rank1.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and run.poll() is None and not (part.is_file() and part.read_text().count("\n") >= 1):
        time.sleep(0.02)
    victim = rank_process(run.pid, rank=1)
    assert run.poll() is None and victim is not None, "the run ended before rank 1 could be killed"
    os.kill(victim, signal.SIGKILL)
    _, err = run.communicate(timeout=300)
    assert run.returncode != 0
    recorded = {}
    for path in [out / "manifest.jsonl", *out.glob("manifest.rank*.jsonl")]:
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.endswith("}"):
                    recorded[json.loads(line)["file"]] = (out / json.loads(line)["file"]).stat().st_mtime_ns
    assert 0 < len(recorded) < sum(line["n"] for line in SHARDED)
    # the same command on one process finishes the rest, drawing none of what was recorded
    again = tmp_path / "again"
    again.mkdir()
    done = subprocess.run([sys.executable, str(DRIVER), str(again), "generate", "--prompts", str(prompts), "--out-dir", str(out),
                           "--batch-size", "4", *FAST], env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not set(pngs_written(again, 0)) & set(recorded), "a recorded image was drawn again"
    assert all((out / name).stat().st_mtime_ns == stamp for name, stamp in recorded.items())
    check_against_reference(pipeline, prompts, out)


def rank_process(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker ``rank`` (its child whose environment says RANK=rank)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


# ------------------------------------------------------------------ unclip eval folder
def test_eval_folder_scores_clip_and_the_shapes_checker_against_direct_computation(tmp_path, pipeline, capsys):
    from unclip_plugins.shapes import check, prompt_set

    shapes_prompts = prompt_set("seen_one", 3, 0) + prompt_set("seen_two", 2, 0)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": p, "n": 1 + i % 2} for i, p in enumerate(shapes_prompts)])
    out, shards = tmp_path / "out", tmp_path / "shards"
    assert generate("--prompts", str(prompts), "--out-dir", str(out), "--batch-size", "4") == 0
    assert generate("--prompts", str(prompts), "--out-dir", str(shards), "--format", "webdataset", "--shard-size", "3") == 0
    capsys.readouterr()
    assert main(["eval", "folder", str(out), str(shards), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    written = records(out)
    cosines = [dict(pipeline.rerank([out / r["file"]], r["prompt"]))[0] for r in written]
    wanted = float(np.mean([100 * max(c, 0.0) for c in cosines]))
    first, second = report["folders"]
    assert first["images"] == len(written) == 7 and first["lines"] == 5
    assert abs(first["clip_score"] - wanted) < 1e-3 * max(1.0, wanted)
    assert abs(second["clip_score"] - first["clip_score"]) < 1e-3 * max(1.0, wanted), "the shards hold other images"
    exact = [check(Image.open(out / r["file"]).convert("RGB"), r["prompt"]).exact for r in written if r["index"] == 0]
    assert first["judges"]["shapes"]["overall"]["exact"] == pytest.approx(np.mean(exact))
    assert first["judges"]["shapes"]["overall"]["n"] == 5
    # a prompt the checker cannot read: no shapes figures by default, a clear error when asked for
    mixed = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "a photograph of a cat"}])
    assert generate("--prompts", str(mixed), "--out-dir", str(tmp_path / "cat")) == 0
    capsys.readouterr()
    assert main(["eval", "folder", str(tmp_path / "cat"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folders"][0]["judges"] == {}
    assert main(["eval", "folder", str(tmp_path / "cat"), "--judge", "shapes"]) == 2
    assert "evaluation 'shapes' cannot judge these images" in capsys.readouterr().err


def test_eval_folder_refuses_a_folder_generate_did_not_write(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["eval", "folder", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "was not written by unclip generate --prompts" in err and "\n" not in err


def test_a_recipe_that_cannot_batch_lines_draws_them_one_at_a_time(tmp_path, capsys):
    """The autoregressive prior samples with torch.multinomial, which takes one plain
    generator: the run notes it once and draws each line alone, as ``unclip generate`` would."""
    from unclip_core.recipe.assemble import load_pipeline

    ar = ["prior=shapes-prior-ar.yaml", "decoder.sampler.config.steps=4", "upsamplers.0.sampler.config.steps=4"]
    prompts = write_jsonl(tmp_path / "p.jsonl", LINES[:3])
    assert main(["generate", "--prompts", str(prompts), "--out-dir", str(tmp_path / "out"), "--batch-size", "8", *ar]) == 0
    assert capsys.readouterr().err.count("drawing them one at a time") == 1
    alone = load_pipeline("shapes", ar)
    for name, image in reference(alone, read_prompt_file(prompts)).items():
        assert same_image(pixels(tmp_path / "out" / name), image), name


def test_the_progress_bar_counts_images_with_rate_and_time_left(tmp_path):
    import io

    from unclip_core.batch.runner import BatchJob, run_batch
    from unclip_core.recipe.assemble import load_pipeline

    prompts = write_jsonl(tmp_path / "p.jsonl", LINES[:3])
    bar = io.StringIO()
    outcome = run_batch(BatchJob(str(prompts), str(tmp_path / "out"), batch_size=2), lambda: load_pipeline("shapes", FAST), bar)
    shown = bar.getvalue().replace("\r", "\n").splitlines()
    assert outcome.images_drawn == 6 and any(" 6/6 " in line for line in shown), shown[-3:]
    assert any("img/s" in line for line in shown) and any("<00:00" in line or "<" in line for line in shown)
