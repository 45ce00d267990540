"""``unclip embed``: CLIP embeddings of tar shards, computed once, so the prior trains without
running CLIP (the layout: :mod:`unclip_core.training.embeddings`).

The shards are read by the registered ``shards`` dataset (the same decoding the training
loop uses), one shard at a time, and every shard's arrays are written before the next is
started; a shard whose files are all there (and which ``embeddings.json`` lists as this
encoder's) is skipped, so an interrupted run continues.

A run that fails on bad input (an undecodable image, a missing caption, a wrong
``--image-key``) leaves ``--out`` as it was: a folder it created is removed, files it replaced
are put back and ``embeddings.json`` keeps its old content. ``embeddings.json`` lists only
shards whose files are complete.
"""
from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unclip_core.atomic import atomic_write
from unclip_core.errors import InputError, RecipeError, UnclipError
from unclip_core.output_paths import check_writable
from unclip_core.recipe.assemble import build_component
from unclip_core.registry import Registry
from unclip_core.training.embeddings import (
    MANIFEST,
    encoder_identity,
    read_manifest,
    shard_done,
    shard_files,
    shard_stem,
    write_manifest,
    write_shard,
)
from unclip_core.recipe.validate import _resolve_component

DTYPES = {"float32": np.float32, "float16": np.float16}
SIZES = (8, 4096)
"""The image sides the ``shards`` dataset accepts (its ``size`` setting's bounds)."""


def check_size(size: int | None) -> None:
    """``--size``: unset (the encoder's input size) or a side the dataset can decode to."""
    if size is not None and not SIZES[0] <= size <= SIZES[1]:
        raise InputError(f"--size must be between {SIZES[0]} and {SIZES[1]} (pixels), got {size}")


def check_out(out: str | Path) -> None:
    """``--out`` must be a folder, or a path where one can be made (and written in)."""
    check_writable(out, "--out folder", folder=True)


def shards_dataset(pattern: str, registry: Registry, *, size: int, image_key: str, caption_key: str) -> Any:
    """The registered ``shards`` dataset over ``pattern`` (relative to the working folder)."""
    problems: list[tuple[str, str]] = []
    config = {"urls": pattern, "size": size, "image_key": image_key, "caption_key": caption_key}
    resolved = _resolve_component({"type": "shards", "config": config}, "dataset", "shards", registry, Path.cwd(), problems)
    if problems or resolved is None:
        raise RecipeError(problems or [("shards", "the shards dataset is not available")], None)
    return build_component(resolved)


def precompute_embeddings(
    pattern: str,
    encoder_slot: Any,
    out: Path,
    registry: Registry,
    *,
    size: int | None = None,
    batch_size: int = 64,
    dtype: str = "float32",
    image_key: str = "jpg;jpeg;png;webp",
    caption_key: str = "txt",
    overwrite: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Encode every sample of every shard with the encoder of ``encoder_slot`` (a resolved
    recipe slot) and write the arrays under ``out``; returns counts for the command's summary."""
    report = report or (lambda line: print(line, file=sys.stderr))
    check_size(size)
    out = Path(out)
    check_out(out)
    identity = encoder_identity(encoder_slot)
    size = int(size or encoder_slot.declared.image_size or 224)
    manifest = out / MANIFEST
    old_manifest = manifest.read_bytes() if manifest.is_file() else None
    listed: list[str] = []  # shards of this encoder whose files are complete, for embeddings.json
    if old_manifest is not None:
        try:
            existing = read_manifest(out)
        except UnclipError:
            if not overwrite:
                raise
            existing = {}
        same = existing.get("encoder") == identity and existing.get("size") == size
        if not same and not overwrite:
            raise UnclipError(f"{out} holds embeddings of another encoder or image size; pass --overwrite or choose another --out")
        if same:
            listed = [stem for stem in existing.get("shards") or [] if isinstance(stem, str) and shard_done(out, stem)]
    dataset = shards_dataset(pattern, registry, size=size, image_key=image_key, caption_key=caption_key)
    stems = [shard_stem(url) for url in dataset.urls]
    if len(set(stems)) != len(stems):
        raise UnclipError("two shards have the same file name; their embeddings would overwrite each other")
    encoder = build_component(encoder_slot)

    created = [path for path in (out, *out.parents) if not path.exists()]  # innermost first
    written: list[Path] = []  # files this run put in place
    replaced: list[tuple[Path, Path]] = []  # (file, its previous content set aside)
    done = skipped = samples = 0
    try:
        out.mkdir(parents=True, exist_ok=True)
        for url, stem in zip(dataset.urls, stems):
            if stem in listed and not overwrite:
                skipped += 1
                continue
            keys, rows = _encode_shard(dataset, encoder, url, batch_size)
            arrays = {name: np.concatenate(parts).astype(np.bool_ if name == "text_mask" else DTYPES[dtype])
                      for name, parts in rows.items()}
            for path in shard_files(out, stem).values():
                if path.exists():
                    replaced.append((path, _set_aside(path)))
                written.append(path)
            write_shard(out, stem, keys, arrays)
            listed = [s for s in listed if s != stem] + [stem]
            write_manifest(out, {"encoder": identity, "size": size, "dtype": dtype, "shards": listed})
            done += 1
            samples += len(keys)
            report(f"{out / stem}.*: {len(keys)} samples")
    except BaseException as exc:
        if isinstance(exc, UnclipError) or not done:
            # bad input (or nothing finished): the folder goes back to what it was
            _roll_back(out, created, written, replaced, old_manifest)
        else:
            # interrupted, or the encoder failed: the finished shards stay, so a rerun continues
            for _, aside in replaced:
                aside.unlink(missing_ok=True)
        raise
    for _, aside in replaced:
        aside.unlink(missing_ok=True)
    return {"shards_written": done, "shards_skipped": skipped, "samples": samples, "out": str(out)}


def _set_aside(path: Path) -> Path:
    """A hidden second name for ``path``'s current content (a hard link where the file system
    has them), so a failed run can put it back after replacing the file."""
    aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}.previous")
    try:
        os.link(path, aside)
    except OSError:
        shutil.copy2(path, aside)
    return aside


def _roll_back(out: Path, created: list[Path], written: list[Path], replaced: list[tuple[Path, Path]],
               old_manifest: bytes | None) -> None:
    """Undo a failed run: remove what it made, put back what it replaced."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        for folder in created[1:]:  # parents made for it, if nothing else has appeared in them
            try:
                folder.rmdir()
            except OSError:
                break
        return
    for path in written:
        path.unlink(missing_ok=True)
    for path, aside in replaced:
        os.replace(aside, path)
    manifest = out / MANIFEST
    if old_manifest is None:
        manifest.unlink(missing_ok=True)
    elif not manifest.is_file() or manifest.read_bytes() != old_manifest:
        atomic_write(manifest, lambda path: path.write_bytes(old_manifest))


@torch.no_grad()
def _encode_shard(dataset: Any, encoder: Any, url: str, batch_size: int) -> tuple[list[str], dict[str, list[np.ndarray]]]:
    """One shard's keys and arrays, encoded ``batch_size`` samples at a time, in tar order."""
    keys: list[str] = []
    rows: dict[str, list[np.ndarray]] = {"image_embed": [], "text_embed": [], "text_tokens": [], "text_mask": []}
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        text = encoder.encode_text([item["caption"] for item in pending])
        image_embed = encoder.encode_image(torch.stack([item["image"] for item in pending]))
        for name, value in (("image_embed", image_embed), ("text_embed", text.embed), ("text_tokens", text.tokens),
                            ("text_mask", text.mask)):
            rows[name].append(value.detach().float().cpu().numpy() if name != "text_mask" else value.cpu().numpy())
        keys.extend(item["key"] for item in pending)
        pending.clear()

    for item in dataset.shard_items(url):
        pending.append(item)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if not keys:
        raise UnclipError(f"shard {url} holds no samples")
    return keys, rows
