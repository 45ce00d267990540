"""``unclip eval folder DIR…``: scores for a folder ``unclip generate --prompts`` wrote.

* **CLIP score**: ``100 × max(cos(image, prompt), 0)`` averaged over every image (the
  definition torchmetrics' ``CLIPScore`` uses), with one encoder: the folder's recipe's own,
  or the ``encoder`` slot of any recipe given. Several folders are scored with the same
  encoder, so their figures compare (scores from two encoders do not).
* **Judges**: every registered evaluation (``unclip plugins``; the shapes world's checker
  is one) that can judge all of the folder's prompts reports its figures on the folder's
  images, a line's images together (the checker reads the first, the diversity figure all).

The images are read back from the manifest's files (loose PNGs or shard members), so the
scorer judges exactly what was written.
"""
from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from unclip_core.batch.manifest import MANIFEST, SETTINGS_FILE, read_records
from unclip_core.errors import InputError

ENCODE_BATCH = 64
"""Images (and prompts) encoded at once."""


def read_folder(folder: Path) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Image.Image]]]:
    """The folder's settings and every recorded image with its record, in line order."""
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    if not (folder / SETTINGS_FILE).is_file() or not (folder / MANIFEST).is_file() and not list(folder.glob("manifest.rank*")):
        raise InputError(f"{folder} holds no {SETTINGS_FILE} and {MANIFEST}: it was not written by unclip generate --prompts")
    settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    records = read_records(folder)
    if not records:
        raise InputError(f"{folder}: its manifest records no image yet")
    shards: dict[str, tarfile.TarFile] = {}
    images = []
    try:
        for key in sorted(records):
            record = records[key]
            path = folder / record["file"]
            try:
                if "shard_key" in record:
                    tar = shards.get(record["file"]) or shards.setdefault(record["file"], tarfile.open(path))
                    data = tar.extractfile(f"{record['shard_key']}.png").read()  # type: ignore[union-attr]
                    image = Image.open(io.BytesIO(data))
                else:
                    image = Image.open(path)
                image.load()
            except (OSError, KeyError, tarfile.TarError) as exc:
                raise InputError(f"{folder}: cannot read image {record['file']} of line {key[0]}: {exc}") from None
            images.append((record, image.convert("RGB")))
    finally:
        for tar in shards.values():
            tar.close()
    return settings, images


def clip_score(encoder: Any, images: Sequence[tuple[dict[str, Any], Image.Image]]) -> float:
    """Mean of ``100 × max(cos, 0)`` between each image and its record's prompt."""
    scores = []
    with torch.inference_mode():
        for start in range(0, len(images), ENCODE_BATCH):
            chunk = images[start : start + ENCODE_BATCH]
            z_i = torch.nn.functional.normalize(encoder.encode_image([image for _, image in chunk]).float(), dim=-1)
            z_t = torch.nn.functional.normalize(encoder.encode_text([r["prompt"] for r, _ in chunk]).embed.float(), dim=-1)
            scores.append(100 * (z_i * z_t.to(z_i.device)).sum(-1).clamp(min=0))
    return float(torch.cat(scores).mean())


def judge_reports(images: Sequence[tuple[dict[str, Any], Image.Image]], names: Sequence[str] | None) -> dict[str, Any]:
    """Each evaluation's report on the folder: those in ``names`` (an error if one cannot judge
    these prompts), or with ``names=None`` every registered one that can judge them all."""
    from unclip_core.cli.eval_cmd import build_evaluation
    from unclip_core.evaluation import EvalCase, EvalSamples
    from unclip_core.registry import default_registry

    lines: dict[int, list[tuple[dict[str, Any], Image.Image]]] = {}
    for record, image in images:
        lines.setdefault(int(record["line"]), []).append((record, image))
    prompts = [group[0][0]["prompt"] for group in lines.values()]
    reports = {}
    for name in default_registry().names("evaluation") if names is None else names:
        evaluation = build_evaluation(name, {})
        try:
            cases = evaluation.cases(prompts)
        except InputError as exc:
            if names is None:
                continue
            raise InputError(f"evaluation {name!r} cannot judge these images: {exc}") from None
        samples = [EvalSamples(EvalCase(case.prompt, case.group, len(group)), [image for _, image in group])
                   for case, group in zip(cases, lines.values())]
        report = evaluation.report(samples)
        report["run"] = {"seed": "per line", "prompts": len(samples), "images": len(images)}
        reports[name] = report
    return reports
