"""Precomputed CLIP embeddings stored beside tar shards, so the prior trains without CLIP.

Layout, one set of ``.npy`` files per tar shard, named after the shard (``00012.tar`` →
``00012.*``), in one folder::

    embeddings.json            which encoder computed them (type, config, weights digest), image size
    00012.keys.npy             [N] str    the shard's sample keys, in tar order (the alignment check)
    00012.image_embed.npy      [N, D]     CLIP image embedding (what the prior predicts, the decoder's condition)
    00012.text_embed.npy       [N, D]     CLIP text embedding   } the caption's TextEncoding,
    00012.text_tokens.npy      [N, L, W]  final token states    } as the prior and the decoder
    00012.text_mask.npy        [N, L]     bool                  } read it

Row ``i`` of every array belongs to the shard's ``i``-th sample; the reader checks the key of
every row against the tar's. Every file is written under a temporary name and renamed, the
keys file last, so a shard whose keys file exists is complete.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unclip_core.atomic import atomic_write
from unclip_core.errors import InputError, UnclipError
from unclip_core.interfaces import TextEncoding

FORMAT = "unclip-embeddings-v1"
MANIFEST = "embeddings.json"
FIELDS = ("image_embed", "text_embed", "text_tokens", "text_mask")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def shard_stem(url: str) -> str:
    """``.../00012.tar`` → ``00012``: the name a shard's embedding files start with."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in TAR_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def shard_files(folder: Path, stem: str) -> dict[str, Path]:
    return {field: folder / f"{stem}.{field}.npy" for field in ("keys", *FIELDS)}


def encoder_identity(resolved: Any) -> dict[str, Any]:
    """What names an encoder for the purpose of reusing its embeddings: registered type,
    settings and the SHA-256 of its weights file (None for seeded random weights)."""
    digest = None
    if resolved.weights is not None:
        sha = hashlib.sha256()
        with open(resolved.weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digest = sha.hexdigest()
    return {
        "type": resolved.spec.name,
        "config": resolved.config.model_dump(mode="json"),
        "weights_sha256": digest,
    }


def check_embedding_source(source: dict[str, Any], encoder: Any) -> None:
    """Refuse embeddings another encoder computed: the prior would learn the wrong space."""
    mine = encoder_identity(encoder)
    theirs = source.get("encoder", {})
    for key, what in (("type", "type"), ("config", "settings"), ("weights_sha256", "weights")):
        if theirs.get(key) != mine[key]:
            raise UnclipError(
                f"the precomputed embeddings in {source.get('folder', '?')} were made by another encoder "
                f"(its {what} differ from the recipe's encoder); re-run unclip embed with this recipe"
            )


def write_manifest(folder: Path, info: dict[str, Any]) -> None:
    atomic_write(folder / MANIFEST, lambda path: path.write_text(json.dumps({"format": FORMAT, **info}, indent=1)))


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder} holds no {MANIFEST}: not a folder written by unclip embed")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        shown = info.get("format") if isinstance(info, dict) else None
        raise InputError(f"{path} is not an unclip embeddings manifest (format {shown!r})")
    info["folder"] = str(folder)
    return info


def write_shard(folder: Path, stem: str, keys: list[str], arrays: dict[str, np.ndarray]) -> None:
    """Write one shard's arrays, then its keys (the file whose presence means 'complete')."""
    files = shard_files(folder, stem)
    for field in FIELDS:
        if len(arrays[field]) != len(keys):
            raise ValueError(f"{field} has {len(arrays[field])} rows for {len(keys)} keys")
        atomic_write(files[field], lambda path, field=field: _save(path, arrays[field]))
    atomic_write(files["keys"], lambda path: _save(path, np.array(keys, dtype=str)))


def shard_done(folder: Path, stem: str) -> bool:
    return all(path.is_file() for path in shard_files(folder, stem).values())


class ShardEmbeddings:
    """One shard's precomputed rows, memory-mapped; ``row(i, key)`` checks the alignment."""

    def __init__(self, folder: Path, stem: str, tar: str):
        files = shard_files(folder, stem)
        missing = [str(path) for path in files.values() if not path.is_file()]
        if missing:
            raise InputError(f"no precomputed embeddings for shard {tar}: {missing[0]} is missing (run unclip embed)")
        self.tar = tar
        self.keys = np.load(files["keys"], allow_pickle=False)
        self.arrays = {field: np.load(files[field], mmap_mode="r", allow_pickle=False) for field in FIELDS}
        for field, array in self.arrays.items():
            if len(array) != len(self.keys):
                raise InputError(f"{files[field]} has {len(array)} rows but {files['keys']} has {len(self.keys)} keys")
        self.folder = folder
        self.stem = stem

    def row(self, index: int, key: str) -> dict[str, torch.Tensor]:
        if index >= len(self.keys):
            raise InputError(
                f"{self.tar} has more samples than {self.folder}/{self.stem}.keys.npy ({len(self.keys)}): "
                "the embeddings do not match the shard; re-run unclip embed"
            )
        if str(self.keys[index]) != key:
            raise InputError(
                f"misaligned embeddings: row {index} of {self.folder}/{self.stem}.keys.npy is {str(self.keys[index])!r} "
                f"but sample {index} of {self.tar} is {key!r}; re-run unclip embed"
            )
        return {field: torch.from_numpy(np.array(array[index])) for field, array in self.arrays.items()}

    def check_complete(self, count: int) -> None:
        """After the shard's last sample: it must have used every row."""
        if count != len(self.keys):
            raise InputError(
                f"{self.tar} has {count} samples but {self.folder}/{self.stem}.keys.npy has {len(self.keys)} rows; "
                "re-run unclip embed"
            )


def text_encoding(raw: dict[str, Any]) -> TextEncoding:
    """The caption encoding of a raw batch that carries precomputed embeddings."""
    return TextEncoding(
        embed=raw["text_embed"].float(), tokens=raw["text_tokens"].float(), mask=raw["text_mask"].bool()
    )


def _save(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
