"""``--format webdataset``: finished images packed into tar shards the ``shards`` dataset reads.

Images are drawn and recorded as PNGs exactly as in the PNG format (so resuming works the
same), and packed once every rank is done: each shard holds up to ``shard_size`` samples in
line order, a sample being ``<line>-<index>.png`` (the PNG, metadata and all),
``<line>-<index>.txt`` (its prompt, the caption ``unclip train`` and ``unclip embed`` read)
and ``<line>-<index>.json`` (its manifest record). A shard is written atomically and
recorded in the manifest before its PNGs are removed, so a kill while packing loses nothing:
the next run packs what is still loose (into a shard of the same name).
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from unclip_core.atomic import atomic_write
from unclip_core.batch.manifest import Key, read_records, write_manifest


def sample_key(key: Key) -> str:
    return f"{key[0]:06d}-{key[1]:03d}"


def pack_shards(out_dir: Path, shard_size: int) -> list[Path]:
    """Pack every recorded loose PNG into shards; returns the shards written."""
    records = read_records(out_dir)
    loose = sorted(key for key, record in records.items() if "shard_key" not in record)
    written = []
    for start in range(0, len(loose), shard_size):
        chunk = loose[start : start + shard_size]
        shard = out_dir / f"shard-{sample_key(chunk[0])}.tar"
        pngs = [out_dir / records[key]["file"] for key in chunk]
        packed = {key: {**records[key], "file": shard.name, "shard_key": sample_key(key)} for key in chunk}
        samples = [(key, packed[key], png.read_bytes()) for key, png in zip(chunk, pngs)]
        atomic_write(shard, lambda tmp: _write_tar(Path(tmp), samples))
        records.update(packed)
        write_manifest(out_dir, records)
        for png in pngs:
            png.unlink(missing_ok=True)
        written.append(shard)
    return written


def _write_tar(path: Path, samples: list[tuple[Key, dict[str, Any], bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, record, png in samples:
            name = sample_key(key)
            for suffix, data in (("png", png), ("txt", record["prompt"].encode()), ("json", json.dumps(record).encode())):
                info = tarfile.TarInfo(f"{name}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
