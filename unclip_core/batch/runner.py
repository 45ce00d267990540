"""``unclip generate --prompts FILE --out-dir DIR``: the run, on one process or under torchrun.

Order of work, so that a mistake costs nothing and a kill loses at most one batch:

1. every line of FILE is checked (all ranks alike: the same error everywhere);
2. the pipeline loads; rank 0 compares DIR's settings (refusing other ones unless
   ``--force``), reads the manifest, removes temporaries a killed run left, and sends the
   pending lines and the precision to every rank (so ``runtime.precision: auto`` cannot pick
   differently on two ranks, or differently from the run being resumed);
3. each rank draws its slice (:mod:`.plan`) batch by batch: PNGs renamed into place, then
   recorded in its manifest part; after each batch the ranks add up their counts (one tiny
   all-reduce), and rank 0's progress bar shows the total;
4. when every rank is done, rank 0 merges the manifest parts (and packs shards).

A rank that fails makes torchrun stop the others; what they recorded stays recorded, and the
same command (with any number of ranks) finishes the rest.
"""
from __future__ import annotations

import inspect
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from unclip_core.batch.manifest import ManifestWriter, check_settings, merge_parts, part_name, pending_items, read_records
from unclip_core.batch.plan import pack, rank_slice, steps_for
from unclip_core.batch.prompt_file import Item, read_prompt_file
from unclip_core.errors import InputError, UnclipError

FORMATS = ("png", "webdataset")


@dataclass
class BatchJob:
    """What ``unclip generate --prompts`` was asked for."""

    prompts: str
    out_dir: str
    n: int = 1
    seed: int = 0
    batch_size: int = 8
    format: str = "png"
    shard_size: int = 1000
    force: bool = False
    quiet: bool = False
    recipe: str | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What a run did (rank 0's view: the totals over ranks)."""

    lines: int
    images_drawn: int
    lines_already_done: int
    seconds: float
    out_dir: Path
    main: bool = True
    """This process is rank 0 (the one that reports)."""


def run_batch(job: BatchJob, load: Callable[[], Any], progress_file: Any = None) -> Outcome:
    """Run ``job`` with the pipeline ``load()`` builds. ``progress_file``: where rank 0's bar
    goes (default: stderr when it is a terminal and not ``quiet``)."""
    from unclip_core.output_paths import check_writable
    from unclip_core.training.distributed import init_distributed

    if job.format not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {job.format!r}")
    if job.batch_size < 1 or job.shard_size < 1:
        raise InputError(f"--batch-size and --shard-size must be at least 1, got {job.batch_size} and {job.shard_size}")
    if job.n < 1:
        raise InputError(f"-n must be at least 1, got {job.n}")
    items = read_prompt_file(job.prompts, n=job.n, seed=job.seed)
    out_dir = check_writable(job.out_dir, "--out-dir", folder=True)
    dist = init_distributed("cpu")  # gloo: the ranks exchange a few numbers, never tensors of images
    try:
        pipeline = load()
        pipeline.progress = None  # one bar for the run, not one per stage
        _check_negatives(items, pipeline, job.prompts)
        plan = _share(dist, lambda: _prepare(job, items, out_dir, pipeline))
        if isinstance(plan, str):
            raise InputError(plan)
        pending_lines, precision = plan
        if precision != pipeline.settings.precision:
            import dataclasses

            pipeline.settings = dataclasses.replace(pipeline.settings, precision=precision)
        pending = [item for item in items if item.line in pending_lines]
        return _draw(job, items, pending, out_dir, pipeline, dist, progress_file)
    finally:
        dist.close()


def _check_negatives(items: list[Item], pipeline: Any, source: str) -> None:
    """A ``negative`` line needs a pipeline whose ``generate_tensors`` takes ``negative_prompt``."""
    first = next((item for item in items if item.negative is not None), None)
    if first is not None and "negative_prompt" not in inspect.signature(pipeline.generate_tensors).parameters:
        raise InputError(f"{source}:{first.line}: 'negative' needs negative prompts, which this unclip's pipeline does not take; "
                         "remove the key")


def _settings(job: BatchJob, pipeline: Any) -> dict[str, Any]:
    from unclip_core import __version__

    recipe = pipeline.recipe
    return {
        "recipe": str(recipe.source) if recipe is not None else None,
        "recipe_digest": recipe.digest if recipe is not None else None,
        "overrides": list(job.overrides),
        "precision": pipeline.settings.precision,
        "format": job.format,
        "n": job.n,
        "seed": job.seed,
        "unclip_version": __version__,
    }


def _prepare(job: BatchJob, items: list[Item], out_dir: Path, pipeline: Any) -> tuple[set[int], str]:
    """Rank 0's part of step 2: the pending lines and the precision every rank draws in."""
    import json

    from unclip_core.atomic import remove_stale_temporaries
    from unclip_core.batch.manifest import SETTINGS_FILE
    from unclip_core.cli.generate_cmd import _keep_recorded_precision

    out_dir.mkdir(parents=True, exist_ok=True)
    recorded_file = out_dir / SETTINGS_FILE
    if recorded_file.is_file():  # resume in the precision the folder was drawn in (auto may pick otherwise now)
        try:
            recorded = json.loads(recorded_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            recorded = None
        if isinstance(recorded, dict):
            _keep_recorded_precision(pipeline, recorded, str(out_dir), list(job.overrides))
    settings = _settings(job, pipeline)
    check_settings(out_dir, settings, job.force)
    remove_stale_temporaries(out_dir, [item.file_name(i) for item in items for i in range(item.n)])
    made_with = {"recipe_digest": settings["recipe_digest"], "precision": settings["precision"]}
    pending = pending_items(items, read_records(out_dir), out_dir, made_with, job.force, job.prompts)
    return {item.line for item in pending}, pipeline.settings.precision


def _share(dist: Any, prepare: Callable[[], Any]) -> Any:
    """``prepare()`` on rank 0, its result (or its error's message) on every rank."""
    if dist.world_size <= 1:
        return prepare()
    import torch.distributed as tdist

    box: list[Any] = [None]
    if dist.is_main:
        try:
            box[0] = prepare()
        except UnclipError as exc:
            box[0] = str(exc)
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def _draw(job: BatchJob, items: list[Item], pending: list[Item], out_dir: Path, pipeline: Any, dist: Any,
          progress_file: Any) -> Outcome:
    mine = pack(rank_slice(pending, dist.rank, dist.world_size), job.batch_size)
    steps = steps_for(pending, dist.world_size, job.batch_size) if pending else 0
    total = sum(item.n for item in pending)
    bar = _progress_bar(total, len(items) - len(pending), job, progress_file) if dist.is_main else None
    writer = ManifestWriter(out_dir / part_name(dist.rank, dist.world_size))
    started, drawn = time.perf_counter(), 0
    try:
        for step in range(steps):
            done = _draw_batch(mine[step], out_dir, pipeline, job, writer) if step < len(mine) else 0
            done = _sum_over_ranks(dist, done)
            drawn += done
            if bar is not None:
                bar.update(done)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    if dist.world_size > 1:
        import torch.distributed as tdist

        tdist.barrier()
    if dist.is_main:
        merge_parts(out_dir)
        if job.format == "webdataset":
            from unclip_core.batch.shards_out import pack_shards

            pack_shards(out_dir, job.shard_size)
    return Outcome(len(items), drawn, len(items) - len(pending), time.perf_counter() - started, out_dir, dist.is_main)


def _draw_batch(batch: list[Item], out_dir: Path, pipeline: Any, job: BatchJob, writer: ManifestWriter) -> int:
    """One batch drawn, its PNGs renamed into place, then recorded; returns its image count."""
    import argparse

    from unclip_core.atomic import atomic_write_all
    from unclip_core.cli.generate_cmd import _metadata
    from unclip_core.images import png_writer, tensor_to_pil

    options = {} if batch[0].negative is None else {"negative_prompt": batch[0].negative}
    started = time.perf_counter()
    tensors = _batched_or_alone(pipeline, batch, options, job.quiet)
    images = iter(tensor_to_pil(tensors))
    seconds = (time.perf_counter() - started) / tensors.shape[0]
    writes, records = [], []
    digest = pipeline.recipe.digest if pipeline.recipe is not None else None
    for item in batch:
        made = argparse.Namespace(overrides=list(job.overrides), seed=item.seed)
        for index in range(item.n):
            extra = {} if item.negative is None else {"negative": item.negative}
            meta = _metadata(made, pipeline, command="generate", prompt=item.prompt, n=item.n, index=index, **extra)
            writes.append((out_dir / item.file_name(index), png_writer(next(images), meta)))
            records.append({"line": item.line, "index": index, **item.settings(), "file": item.file_name(index),
                            "recipe_digest": digest, "precision": pipeline.settings.precision, "seconds": round(seconds, 4)})
    atomic_write_all(writes)
    writer.append(records)
    return len(records)


def _batched_or_alone(pipeline: Any, batch: list[Item], options: dict[str, Any], quiet: bool) -> torch.Tensor:
    """The batch's images, drawn together; or line by line when the recipe's components cannot
    draw per-line noise side by side (a sampler or prior that takes only a plain
    ``torch.Generator``, as ``unclip serve`` also finds out): the same images, more slowly.
    Once one batch has failed so, the rest of the run goes line by line at once."""
    from unclip_core.batch.requests import generate_requests

    asks = [(item.prompt, item.n, item.seed) for item in batch]
    if len(asks) > 1 and not getattr(pipeline, "_unclip_lines_alone", False):
        try:
            return generate_requests(pipeline, asks, **options)
        except (TypeError, UnclipError) as exc:
            pipeline._unclip_lines_alone = True
            if not quiet:
                print(f"unclip: this recipe cannot draw several lines in one batch ({type(exc).__name__}: {exc}); "
                      "drawing them one at a time", file=sys.stderr)
    return torch.cat([generate_requests(pipeline, [ask], **options) for ask in asks])


def _sum_over_ranks(dist: Any, count: int) -> int:
    if dist.world_size <= 1:
        return count
    import torch.distributed as tdist

    value = torch.tensor([count], dtype=torch.int64)
    tdist.all_reduce(value)
    return int(value.item())


def _progress_bar(total: int, already: int, job: BatchJob, file: Any) -> Any:
    """Rank 0's bar over every rank's images: rate (img/s) and time left, as tqdm shows them."""
    if job.quiet:
        return None
    if file is None:
        if not sys.stderr.isatty():
            return None
        file = sys.stderr
    from tqdm.auto import tqdm

    note = f" ({already} lines already done)" if already else ""
    return tqdm(total=total, desc=f"generate{note}", unit="img", file=file, dynamic_ncols=True)
