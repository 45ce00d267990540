"""``unclip embed``: CLIP embeddings of tar shards, computed once, so the prior trains without
running CLIP (the layout: :mod:`unclip_core.training.embeddings`).

The shards are read by the registered ``shards`` dataset (the same decoding the training
loop uses), one shard at a time, and every shard's arrays are written before the next is
started; a shard whose files are all there is skipped, so an interrupted run continues.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unclip_core.errors import RecipeError, UnclipError
from unclip_core.recipe.assemble import build_component
from unclip_core.registry import Registry
from unclip_core.training.embeddings import (
    MANIFEST,
    encoder_identity,
    read_manifest,
    shard_done,
    shard_stem,
    write_manifest,
    write_shard,
)

DTYPES = {"float32": np.float32, "float16": np.float16}


def shards_dataset(pattern: str, registry: Registry, *, size: int, image_key: str, caption_key: str) -> Any:
    """The registered ``shards`` dataset over ``pattern`` (relative to the working folder)."""
    from unclip_core.recipe.validate import _resolve_component

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
    identity = encoder_identity(encoder_slot)
    size = int(size or encoder_slot.declared.image_size or 224)
    out = Path(out)
    if (out / MANIFEST).is_file() and not overwrite:
        existing = read_manifest(out)
        if existing.get("encoder") != identity or existing.get("size") != size:
            raise UnclipError(f"{out} holds embeddings of another encoder or image size; pass --overwrite or choose another --out")
    dataset = shards_dataset(pattern, registry, size=size, image_key=image_key, caption_key=caption_key)
    encoder = build_component(encoder_slot)
    write_manifest(out, {"encoder": identity, "size": size, "dtype": dtype, "shards": [shard_stem(u) for u in dataset.urls]})
    stems = [shard_stem(url) for url in dataset.urls]
    if len(set(stems)) != len(stems):
        raise UnclipError("two shards have the same file name; their embeddings would overwrite each other")
    written = skipped = samples = 0
    for url, stem in zip(dataset.urls, stems):
        if shard_done(out, stem) and not overwrite:
            skipped += 1
            continue
        keys, rows = _encode_shard(dataset, encoder, url, batch_size)
        arrays = {name: np.concatenate(parts).astype(np.bool_ if name == "text_mask" else DTYPES[dtype])
                  for name, parts in rows.items()}
        write_shard(out, stem, keys, arrays)
        written += 1
        samples += len(keys)
        report(f"{out / stem}.*: {len(keys)} samples")
    return {"shards_written": written, "shards_skipped": skipped, "samples": samples, "out": str(out)}


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
