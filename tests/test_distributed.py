"""Training on several processes (torchrun, DDP, gloo on loopback) and from streamed tar shards.

The torchrun tests launch ``python -m torch.distributed.run --nproc_per_node 2`` on
tests/torchrun_driver.py, which runs ``unclip train`` and records each rank's final weights
and the micro-batches it trained. References are one-process runs of the same recipe.
"""
from __future__ import annotations

import collections
import copy
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from unclip_core.cli.main import main as unclip
from unclip_core.errors import InputError, RecipeError, UnclipError
from unclip_core.training.loop import CHECKPOINT_NAME, batch_indices, train
from unclip_core.training.validate import load_training, validate_training
from unclip_core.weights import read_safetensors

TESTS = Path(__file__).parent
DRIVER = TESTS / "torchrun_driver.py"
TINY_DECODER = TESTS / "recipes" / "tiny-train-decoder.yaml"

pytest.importorskip("webdataset")


# ------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(record: Path, *args: str, cwd: Path) -> None:
    """``unclip ARGS`` on 2 CPU processes; each rank's weights and batches land in ``record``."""
    record.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(DRIVER), str(record), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def micro_batches(record: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (record / f"rank{rank}.jsonl").read_text().splitlines()]


def losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r and "event" not in r]


def model_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return {k[len("model/"):]: v for k, v in read_safetensors(checkpoint).items() if k.startswith("model/")}


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        diff = float((a[key].double() - b[key].double()).abs().max()) if a[key].numel() else 0.0
        assert diff <= atol, f"{key}: differs by {diff}"


def png(seed: int, size: int = 24) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def write_shards(folder: Path, sizes: list[int]) -> list[str]:
    """Tar shards as img2dataset writes them (``<key>.png`` + ``<key>.txt``), with the
    standard library's tarfile; returns every key written."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for shard, size in enumerate(sizes):
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as tar:
            for item in range(size):
                key = f"{shard:05d}{item:04d}"
                keys.append(key)
                for suffix, data in ((".png", png(len(keys))), (".txt", f"caption {key}".encode())):
                    info = tarfile.TarInfo(key + suffix)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return keys


def shards_recipe(tiny: dict, stage: str, urls: str, **dataset) -> dict:
    """A tiny training recipe for ``stage`` reading tar shards."""
    slot = {"prior": tiny["prior"], "decoder": tiny["decoder"], "upsampler": tiny["upsamplers"][0]}[stage]
    size = {"prior": 32, "decoder": 16, "upsampler": 32}[stage]
    data = {
        "name": f"shards-{stage}", "stage": stage,
        "model": {k: copy.deepcopy(slot[k]) for k in ("type", "config")},
        "dataset": {"type": "shards", "config": {"urls": urls, "size": size, "image_key": "png", **dataset}},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "decay": "constant"},
        "ema": {"decay": 0.9},
        "train": {"steps": 40, "batch_size": 4, "seed": 0},
        "output": {"checkpoint_every": 100, "log_every": 1},
    }
    if stage in ("prior", "decoder"):
        data["encoder"] = copy.deepcopy(tiny["encoder"])
    return data


# ------------------------------------------------------------------ torchrun, map-style data
@pytest.mark.slow
def test_two_ranks_equal_one_process_and_resume_on_another_world_size(tmp_path):
    """2 ranks × accumulation 1 = 1 process × accumulation 2 (same global batch of 4, same
    micro-batches): identical weights on both ranks, equal to the one-process run; and the
    2-rank checkpoint resumed by one process ends where one process alone does."""
    overrides = ["train.steps=6", "output.sample_every=0"]
    torchrun(tmp_path / "record", "train", str(TINY_DECODER), "--out", str(tmp_path / "two"), "-q",
             "--max-steps", "3", *overrides, cwd=tmp_path)

    rank0 = load_file(tmp_path / "record" / "rank0.safetensors")
    rank1 = load_file(tmp_path / "record" / "rank1.safetensors")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), f"ranks disagree on {key}"

    # Each rank trained its own half of every global batch: disjoint, together the whole batch.
    for step in range(3):
        halves = [[m["indices"] for m in micro_batches(tmp_path / "record", r) if m["step"] == step] for r in (0, 1)]
        assert len(halves[0]) == len(halves[1]) == 1
        assert not set(halves[0][0]) & set(halves[1][0])
        assert sorted(halves[0][0] + halves[1][0]) == sorted(batch_indices(step, 4, 16, 0))

    # Only rank 0 wrote: one start record, stating the effective batch.
    log = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    starts = [r for r in log if r.get("event") == "start"]
    assert len(starts) == 1 and starts[0]["world_size"] == 2 and starts[0]["effective_batch"] == 4
    assert starts[0]["micro_batch_per_rank"] == 2 and "2 per rank x 2 ranks x 1 accumulation" in starts[0]["note"]
    assert [r["step"] for r in log if "loss" in r and "event" not in r] == [1, 2, 3]

    one = load_training(TINY_DECODER, [*overrides, "train.accumulation=2"])
    train(one, out_dir=tmp_path / "one", max_steps=3, progress=False)
    assert_close(rank0, model_weights(tmp_path / "one" / CHECKPOINT_NAME))
    assert_close(rank0, model_weights(tmp_path / "two" / CHECKPOINT_NAME), atol=0)

    # Resume the 2-rank run on 1 process (accumulation 2 keeps the micro-batches) and finish.
    train(one, out_dir=tmp_path / "two", resume=True, progress=False)
    train(one, out_dir=tmp_path / "one", resume=True, progress=False)
    a, b = read_safetensors(tmp_path / "two" / CHECKPOINT_NAME), read_safetensors(tmp_path / "one" / CHECKPOINT_NAME)
    assert_close({k: v for k, v in a.items() if k.startswith(("model/", "ema/"))},
                 {k: v for k, v in b.items() if k.startswith(("model/", "ema/"))})


# ------------------------------------------------------------------ torchrun, tar shards
@pytest.mark.slow
def test_two_ranks_see_every_shard_sample_once_per_epoch(tmp_path, tiny_recipe_data):
    keys = write_shards(tmp_path / "shards", [3, 5, 4, 2, 6])
    data = shards_recipe(tiny_recipe_data, "upsampler", "shards/{00000..00004}.tar")
    data["train"].update(steps=16, workers=2)  # 4 slots (2 ranks x 2 workers) for 5 shards
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(data))
    torchrun(tmp_path / "record", "train", str(tmp_path / "recipe.yaml"), "--out", str(tmp_path / "run"), "-q",
             cwd=tmp_path)

    seen = {0: collections.Counter(), 1: collections.Counter()}
    by_rank = {0: set(), 1: set()}
    for rank in (0, 1):
        batches = micro_batches(tmp_path / "record", rank)
        assert len(batches) == 16 and all(len(b["keys"]) == 2 for b in batches)
        for batch in batches:
            for key, epoch in zip(batch["keys"], batch["epochs"]):
                if epoch in seen:
                    seen[epoch][key] += 1
                by_rank[rank].add((epoch, key))
    # 16 steps x 2 items per rank-worker pair... every slot is at least 14 items in: epoch 0 done everywhere.
    assert seen[0] == collections.Counter(keys), "epoch 0 is not every sample exactly once"
    assert max(seen[1].values()) == 1 and set(seen[1]) <= set(keys)
    assert not by_rank[0] & by_rank[1]
    assert by_rank[0] and by_rank[1]


# ------------------------------------------------------------------ one process, tar shards
def test_shards_stream_resumes_exactly(tmp_path, registry, tiny_recipe_data):
    write_shards(tmp_path / "shards", [3, 5, 4])
    data = shards_recipe(tiny_recipe_data, "upsampler", "shards/*.tar")
    data["train"]["steps"] = 6
    resolved = validate_training(data, registry, base_dir=tmp_path)
    train(resolved, registry=registry, out_dir=tmp_path / "straight", progress=False)
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, max_steps=2)
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, resume=True)
    a = read_safetensors(tmp_path / "straight" / CHECKPOINT_NAME)
    b = read_safetensors(tmp_path / "split" / CHECKPOINT_NAME)
    for key in a:
        if key.startswith(("model/", "ema/", "optim/")):
            assert torch.equal(a[key], b[key]), key


def test_stream_split_by_rank_and_worker_covers_each_epoch_once(tmp_path, registry, tiny_recipe_data):
    """The dataset alone, no training: 3 ranks x 2 workers, endless streams, epochs counted by tag."""
    from unclip_core.recipe.assemble import build_component

    keys = write_shards(tmp_path / "shards", [2, 3, 1, 4, 2, 3, 1])
    resolved = validate_training(shards_recipe(tiny_recipe_data, "upsampler", "shards/*.tar"), registry, base_dir=tmp_path)
    dataset = build_component(resolved.dataset)
    seen: collections.Counter = collections.Counter()
    for rank in range(3):
        for worker in range(2):
            items = dataset.slot_items(rank + 3 * worker, 6, seed=0, skip=0)
            tags = [(item["epoch"], item["key"]) for item in (next(items) for _ in range(40))]
            assert tags[-1][0] >= 2, "a slot of 40 items did not reach epoch 2"
            seen.update(tag for tag in tags if tag[0] < 2)
    assert seen == collections.Counter([(0, k) for k in keys] + [(1, k) for k in keys])
    with pytest.raises(InputError, match="7 shards cannot feed 4 ranks x 2 workers"):
        dataset.batches(rank=0, world_size=4, batch_size=2, workers=2, seed=0, skip=0)


def test_shard_errors_name_what_and_where(tmp_path, registry, tiny_recipe_data):
    from unclip_core.recipe.assemble import build_component

    with pytest.raises(RecipeError, match="shard not found") as info:
        validate_training(shards_recipe(tiny_recipe_data, "upsampler", "shards/{0..2}.tar"), registry, base_dir=tmp_path)
    assert "dataset.config.urls" in info.value.paths
    write_shards(tmp_path / "shards", [2])
    resolved = validate_training(shards_recipe(tiny_recipe_data, "upsampler", "shards/*.tar", image_key="jpg"),
                                 registry, base_dir=tmp_path)
    with pytest.raises(InputError, match=r"00000.tar: sample '000000000' has no image \(looked for jpg; it has png, txt\)"):
        next(build_component(resolved.dataset).slot_items(0, 1, seed=0, skip=0))
    # Raised in a DataLoader worker, it still reaches the user as its one line.
    from unclip_core.training.data import StreamBatches
    from unclip_core.training.distributed import Distributed

    batches = StreamBatches(build_component(resolved.dataset), 2, 1, 0, 1, Distributed(), 0)
    with pytest.raises(InputError) as info:
        batches.step(0)
    assert str(info.value).startswith("/") and "\n" not in str(info.value) and "has no image" in str(info.value)


# ------------------------------------------------------------------ precomputed embeddings
def test_embed_then_prior_trains_without_running_clip(tmp_path, registry, tiny_recipe_data, monkeypatch):
    from unclip_core.images import pil_to_tensor
    from unclip_core.recipe.assemble import build_component
    from unclip_plugins.open_clip_encoder.encoder import OpenClipEncoder

    monkeypatch.chdir(tmp_path)
    keys = write_shards(tmp_path / "shards", [5, 4])
    data = shards_recipe(tiny_recipe_data, "prior", "shards/*.tar")
    data["train"]["steps"] = 6
    Path("prior.yaml").write_text(yaml.safe_dump(data))
    assert unclip(["embed", "shards/*.tar", "--recipe", "prior.yaml", "--out", "emb", "--batch-size", "3"]) == 0

    # The arrays are the encoder's outputs for each sample, in tar order (computed here directly).
    resolved = validate_training(data, registry, base_dir=tmp_path)
    encoder = build_component(resolved.encoder)
    with tarfile.open("shards/00001.tar") as tar:
        names = tar.getnames()
        shard_keys = [n[: -len(".png")] for n in names if n.endswith(".png")]
        images = pil_to_tensor([Image.open(tar.extractfile(f"{k}.png")) for k in shard_keys], 32)
        captions = [tar.extractfile(f"{k}.txt").read().decode() for k in shard_keys]
    assert np.load("emb/00001.keys.npy").tolist() == shard_keys == keys[5:]
    with torch.no_grad():
        text, image_embed = encoder.encode_text(captions), encoder.encode_image(images)
    for name, expected in (("image_embed", image_embed), ("text_embed", text.embed), ("text_tokens", text.tokens)):
        np.testing.assert_allclose(np.load(f"emb/00001.{name}.npy"), expected.numpy(), atol=1e-5, err_msg=name)
    assert np.array_equal(np.load("emb/00001.text_mask.npy"), text.mask.numpy())

    # Trained with the live encoder (reference) and from the arrays with CLIP forbidden.
    train(resolved, registry=registry, out_dir=tmp_path / "live", progress=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("CLIP ran although the embeddings were precomputed")

    monkeypatch.setattr(OpenClipEncoder, "encode_text", forbidden)
    monkeypatch.setattr(OpenClipEncoder, "encode_image", forbidden)
    data["dataset"]["config"]["embeddings"] = "emb"
    precomputed = validate_training(data, registry, base_dir=tmp_path)
    summary = train(precomputed, registry=registry, out_dir=tmp_path / "npy", progress=False)
    assert summary["step"] == 6
    # Same training up to the embeddings' last bits (computed in other batches); weights are a
    # poor gauge of that (Adam turns a key bias's zero gradient ± rounding into ± lr), losses are not.
    assert losses(tmp_path / "npy") == pytest.approx(losses(tmp_path / "live"), rel=1e-4)

    # Embeddings of another encoder, and rows that do not match the tar, are refused.
    other = copy.deepcopy(data)
    other["encoder"]["config"]["model_cfg"]["vision_cfg"]["layers"] = 2
    with pytest.raises(UnclipError, match="made by another encoder"):
        train(validate_training(other, registry, base_dir=tmp_path), registry=registry, out_dir=tmp_path / "x",
              progress=False)
    swapped = np.load("emb/00000.keys.npy")
    swapped[[1, 2]] = swapped[[2, 1]]
    np.save("emb/00000.keys.npy", swapped)
    with pytest.raises(InputError, match=r"misaligned embeddings: row 1 of .*00000.keys.npy is '000000002'"):
        train(precomputed, registry=registry, out_dir=tmp_path / "y", progress=False)
    Path("emb/00001.text_mask.npy").unlink()
    with pytest.raises(UnclipError, match=r"no precomputed embeddings for shard .*00001.tar"):
        train(precomputed, registry=registry, out_dir=tmp_path / "z", progress=False)


def _folder_state(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_embed_failures_leave_the_output_folder_as_it_was(tmp_path, tiny_recipe_data, capsys, monkeypatch):
    """A run that fails on bad input (an undecodable image, a wrong --image-key or --caption-key,
    one bad shard among good ones) creates no folder, and leaves an existing one byte for byte
    as it was: its embeddings.json never lists a shard that failed, replaced files come back.
    The bad image is named by shard and member, not by PIL's in-memory file."""
    monkeypatch.chdir(tmp_path)
    write_shards(tmp_path / "shards", [3, 2])
    for shard, members in (("00002", (("bad.png", b"not a png"), ("bad.txt", b"a caption"))),
                           ("latin", (("cafe.png", png(0)), ("cafe.txt", "café".encode("latin-1"))))):
        with tarfile.open(f"shards/{shard}.tar", "w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    Path("prior.yaml").write_text(yaml.safe_dump(shards_recipe(tiny_recipe_data, "prior", "shards/*.tar")))

    def embed(*args: str) -> tuple[int, str]:
        code = unclip(["embed", *args, "--recipe", "prior.yaml"])
        return code, capsys.readouterr().err.strip().splitlines()[-1]

    # A new folder (and its new parent) is not left behind.
    code, err = embed("shards/00002.tar", "--out", "new/emb")
    assert code == 2 and err.endswith("shards/00002.tar: member bad.png cannot be decoded as an image (not an image format PIL knows)")
    assert "BytesIO" not in err and not Path("new").exists()
    for option, message in ((["--image-key", "jpg"], "has no image (looked for jpg; it has png, txt)"),
                            (["--caption-key", "md"], "has no caption (.md)")):
        code, err = embed("shards/00000.tar", *option, "--out", "new/emb")
        assert code == 2 and err.endswith(message) and not Path("new").exists()
    code, err = embed("shards/latin.tar", "--out", "new/emb")
    assert code == 2 and err.endswith("shards/latin.tar: member cafe.txt is not UTF-8 text (unexpected end of data at byte 3)")
    assert not Path("new").exists()
    code, err = embed("shards/{00000,00002}.tar", "--out", "new/emb")
    assert code == 2 and "member bad.png" in err and not Path("new").exists(), "the good shard's files were left"

    # An existing folder comes back as it was, replaced files included (--overwrite in float16).
    assert embed("shards/00000.tar", "--out", "emb")[0] == 0
    before = _folder_state(tmp_path / "emb")
    assert json.loads(before["embeddings.json"])["shards"] == ["00000"]
    for args in (["shards/{00001,00002}.tar"], ["shards/{00000,00002}.tar", "--overwrite", "--dtype", "float16"]):
        code, err = embed(*args, "--out", "emb")
        assert code == 2 and "member bad.png" in err
        assert _folder_state(tmp_path / "emb") == before, args

    # The good shards of a later run are added; the manifest lists exactly the complete shards.
    assert embed("shards/{00000,00001}.tar", "--out", "emb")[0] == 0
    assert json.loads(Path("emb/embeddings.json").read_text())["shards"] == ["00000", "00001"]


def test_embed_interrupted_keeps_the_finished_shards(tmp_path, tiny_recipe_data, capsys, monkeypatch):
    """An interruption (not bad input) keeps the shards already written, so a rerun continues;
    the manifest lists only those."""
    from unclip_core.training import precompute

    monkeypatch.chdir(tmp_path)
    write_shards(tmp_path / "shards", [3, 2])
    Path("prior.yaml").write_text(yaml.safe_dump(shards_recipe(tiny_recipe_data, "prior", "shards/*.tar")))
    encode = precompute._encode_shard

    def interrupted(dataset, encoder, url, batch_size):
        if url.endswith("00001.tar"):
            raise KeyboardInterrupt
        return encode(dataset, encoder, url, batch_size)

    monkeypatch.setattr(precompute, "_encode_shard", interrupted)
    assert unclip(["embed", "shards/*.tar", "--recipe", "prior.yaml", "--out", "emb"]) == 130
    assert json.loads(Path("emb/embeddings.json").read_text())["shards"] == ["00000"]
    assert not [p for p in Path("emb").iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(precompute, "_encode_shard", encode)
    capsys.readouterr()
    assert unclip(["embed", "shards/*.tar", "--recipe", "prior.yaml", "--out", "emb"]) == 0
    assert json.loads(capsys.readouterr().out)["shards_skipped"] == 1
    assert json.loads(Path("emb/embeddings.json").read_text())["shards"] == ["00000", "00001"]


@pytest.mark.parametrize("size", ["0", "-5", "7", "4097"])
def test_embed_names_a_bad_size_before_anything_else(tmp_path, tiny_recipe_data, capsys, monkeypatch, size):
    """--size 0 is not the default size; a bad --size is named as the option, also when --out
    already holds embeddings (it was "another encoder or image size")."""
    monkeypatch.chdir(tmp_path)
    Path("emb").mkdir()
    Path("emb/embeddings.json").write_text(json.dumps({"format": "unclip-embeddings-v1", "size": 32}))
    before = _folder_state(tmp_path / "emb")
    assert unclip(["embed", "shards/*.tar", "--recipe", "prior.yaml", "--out", "emb", "--size", size]) == 2
    assert capsys.readouterr().err.strip() == f"unclip: error: --size must be between 8 and 4096 (pixels), got {size}"
    assert _folder_state(tmp_path / "emb") == before


def test_embed_refuses_an_empty_or_file_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("keep")
    for out, message in (("", "the --out folder path is empty"),
                         ("afile", "cannot write --out folder afile: it is a file, not a folder"),
                         ("afile/emb", "cannot write --out folder afile/emb: afile is a file, not a folder")):
        assert unclip(["embed", "shards/*.tar", "--recipe", "prior.yaml", "--out", out]) == 2
        assert capsys.readouterr().err.strip() == f"unclip: error: {message}"
    assert Path("afile").read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
