"""What a batch run has finished: the out-dir's settings file and its JSONL manifest.

The manifest is the truth a rerun resumes from. A line's PNGs are renamed into place first
(all of them, atomically) and only then recorded, one JSON object per image, flushed and
fsynced; so a record always names a whole file, and a run killed at any moment loses at
most the batch it was drawing. A record torn by the kill (a last line without its newline)
is ignored and cut off before the next append.

Under ``torchrun`` every rank appends to its own part (``manifest.rank<r>.jsonl``: no two
processes ever write one file); the parts and ``manifest.jsonl`` together are the manifest,
and a run that ends well merges them into ``manifest.jsonl``.

``unclip-batch.json`` holds the settings every image of the folder shares (recipe digest,
precision, format, default ``-n``/``--seed``); another run into the folder must match them,
or pass ``--force``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from unclip_core.atomic import atomic_write
from unclip_core.batch.prompt_file import Item
from unclip_core.errors import InputError, shorten

SETTINGS_FILE = "unclip-batch.json"
MANIFEST = "manifest.jsonl"
PART_GLOB = "manifest.rank*.jsonl"

Key = tuple[int, int]
"""``(line, index)``: one image of the prompt file."""


def part_name(rank: int, world_size: int) -> str:
    """The manifest file this rank appends to (the plain manifest for a single process)."""
    return MANIFEST if world_size <= 1 else f"manifest.rank{rank}.jsonl"


def manifest_files(out_dir: Path) -> list[Path]:
    """The merged manifest first, then the ranks' parts (later records win)."""
    files = [out_dir / MANIFEST] if (out_dir / MANIFEST).is_file() else []
    return files + sorted(out_dir.glob(PART_GLOB))


def read_records(out_dir: Path) -> dict[Key, dict[str, Any]]:
    """Every image recorded in ``out_dir``, by ``(line, index)``; a later record replaces an
    earlier one (a line redrawn with ``--force``)."""
    records: dict[Key, dict[str, Any]] = {}
    for path in manifest_files(out_dir):
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        if lines and lines[-1]:  # torn by a kill mid-append: that image was not finished
            lines[-1] = ""
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = (int(record["line"]), int(record["index"]))
                str(record["file"])
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{path}:{number}: not a manifest record: {shorten(line)}") from None
            records[key] = record
    return records


class ManifestWriter:
    """Appends records to one manifest file, each batch flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = path
        _cut_torn_tail(path)
        self._file = open(path, "a", encoding="utf-8")

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        self._file.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line left without its newline, so the next record starts on its own line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as file:
            file.truncate(data.rfind(b"\n") + 1)


def merge_parts(out_dir: Path) -> None:
    """One ``manifest.jsonl``, one record per image in line order, in place of the ranks'
    parts and of records a ``--force`` run superseded. The merged file is written atomically
    before any part is removed, so a kill here loses nothing."""
    parts = sorted(out_dir.glob(PART_GLOB))
    records = read_records(out_dir)
    lines = sum(path.read_text(encoding="utf-8", errors="replace").count("\n") for path in manifest_files(out_dir))
    if not parts and lines == len(records):
        return
    write_manifest(out_dir, records)
    for part in parts:
        part.unlink(missing_ok=True)


def write_manifest(out_dir: Path, records: dict[Key, dict[str, Any]]) -> None:
    """``records`` as ``manifest.jsonl`` in line order, replacing it atomically."""
    text = "".join(json.dumps(records[key], ensure_ascii=False) + "\n" for key in sorted(records))
    atomic_write(out_dir / MANIFEST, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


COMPARED = ("recipe_digest", "precision", "format")
"""The settings another run into the folder must share (the recipe's path and overrides may
differ when they come to the same recipe: the digest is of the resolved recipe)."""

NAMES = {"recipe_digest": "another recipe or other overrides: recipe digest", "format": "--format"}
"""How the refusal names a setting."""


def check_settings(out_dir: Path, settings: dict[str, Any], force: bool) -> None:
    """Refuse a folder made with other settings (unless ``force``); record them if new."""
    path = out_dir / SETTINGS_FILE
    if path.is_file():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise InputError(f"{path} is not the JSON unclip wrote; move the folder aside or pass --force") from None
        differ = [key for key in COMPARED if recorded.get(key) != settings.get(key)] if isinstance(recorded, dict) else ["settings"]
        if not differ:
            return

        if not force:
            key = differ[0]
            was = recorded.get(key) if isinstance(recorded, dict) else recorded
            raise InputError(
                f"{out_dir} was made with {NAMES.get(key, key)} {shorten(json.dumps(was))}, not {shorten(json.dumps(settings.get(key)))}; "
                "use another --out-dir, or pass --force to redraw its images with these settings"
            )
    elif any(out_dir.iterdir()) and not force:
        raise InputError(f"{out_dir} holds files but no {SETTINGS_FILE}: it was not made by unclip generate --prompts; "
                         "use an empty or new --out-dir (or pass --force)")
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8"))


def pending_items(items: list[Item], records: dict[Key, dict[str, Any]], out_dir: Path, made_with: dict[str, Any],
                  force: bool, source: str) -> list[Item]:
    """The items not finished in ``out_dir``: a line is finished when each of its images has a
    record with the line's settings and ``made_with`` (recipe digest, precision), and its file
    is there (a loose PNG or a shard).

    A line recorded with other settings (the prompt file was edited) is refused, naming it,
    unless ``force``: its images would be replaced."""
    pending = []
    for item in items:
        wanted = item.settings()
        recorded = [records.get((item.line, index)) for index in range(item.n)]
        changed = next((r for r in recorded if r is not None and _item_settings(r) != wanted), None)
        if changed is not None and not force:
            raise InputError(
                f"{source}:{item.line} changed since {out_dir} was made (it recorded {shorten(json.dumps(_item_settings(changed)))}); "
                "pass --force to redraw that line, or use another --out-dir"
            )
        finished = all(
            r is not None and _item_settings(r) == wanted and all(r.get(k) == v for k, v in made_with.items())
            and (out_dir / r["file"]).is_file()
            for r in recorded
        )
        if not finished:
            pending.append(item)
    return pending


def _item_settings(record: dict[str, Any]) -> dict[str, Any]:
    out = {key: record.get(key) for key in ("prompt", "seed", "n")}
    if record.get("negative") is not None:
        out["negative"] = record["negative"]
    return out
