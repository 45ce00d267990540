"""Where a rank's micro-batches come from: a map-style dataset or a stream of shards.

A **map-style** dataset (``len`` and ``[i]``) is read by index. Each step's global batch is
a pure function of ``(seed, step)`` — consecutive slices of per-epoch seeded permutations —
so resume is exact and any world size sees the same batches.

A **streaming** dataset (one with a ``batches`` method, :class:`StreamingDataset`) hands
each rank an endless iterator of raw micro-batches, already split by rank and DataLoader
worker, each item tagged with the epoch it belongs to. A rank consumes exactly
``accumulation`` micro-batches per step, so after ``s`` steps it has consumed
``s × accumulation`` of them: that count is where a resumed run starts its iterator again.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch

from unclip_core.errors import InputError
from unclip_core.training.distributed import Distributed, my_micro_batches


@runtime_checkable
class StreamingDataset(Protocol):
    """What the loop needs from a dataset too large to index (e.g. ``shards``)."""

    def batches(
        self, *, rank: int, world_size: int, batch_size: int, workers: int, seed: int, skip: int
    ) -> Iterator[dict[str, Any]]:
        """Raw micro-batches of ``batch_size`` items for ``rank`` of ``world_size``, after
        skipping the first ``skip`` of them: ``image`` [B,3,H,W] in [-1,1], ``caption``,
        ``key``, ``epoch`` and, where precomputed, ``image_embed``, ``text_embed``,
        ``text_tokens``, ``text_mask``. Every item of an epoch goes to exactly one rank."""

    def embedding_source(self) -> dict[str, Any] | None:
        """The encoder that computed the precomputed embeddings, or None if there are none."""


def is_streaming(dataset: Any) -> bool:
    return callable(getattr(dataset, "batches", None))


def batch_indices(step: int, batch_size: int, length: int, seed: int) -> list[int]:
    """Dataset indices of global batch ``step``: consecutive slices of per-epoch permutations."""
    start = step * batch_size
    indices: list[int] = []
    while len(indices) < batch_size:
        position = start + len(indices)
        epoch, offset = divmod(position, length)
        order = torch.randperm(length, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = min(batch_size - len(indices), length - offset)
        indices.extend(order[offset : offset + take].tolist())
    return indices


def collate(dataset: Any, indices: list[int]) -> dict[str, Any]:
    items = [dataset[i] for i in indices]
    batch = {
        "image": torch.stack([item["image"] for item in items]),
        "caption": [item["caption"] for item in items],
        "index": list(indices),
    }
    if items and "negatives" in items[0]:  # hard negative captions, one list per image (CLIP's loss)
        batch["negatives"] = [list(item["negatives"]) for item in items]
    return batch


class MapBatches:
    """A rank's micro-batches of a map-style dataset: ``(k, raw)`` for its global numbers k."""

    def __init__(self, dataset: Any, batch_size: int, accumulation: int, seed: int, dist: Distributed):
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.micro = batch_size // dist.world_size // accumulation
        self.mine = my_micro_batches(dist, accumulation)

    def indices(self, step: int) -> list[tuple[int, list[int]]]:
        everything = batch_indices(step, self.batch_size, len(self.dataset), self.seed)
        return [(k, everything[k * self.micro : (k + 1) * self.micro]) for k in self.mine]

    def step(self, step: int) -> list[tuple[int, dict[str, Any]]]:
        return [(k, collate(self.dataset, part)) for k, part in self.indices(step)]


class StreamBatches:
    """A rank's micro-batches of a streaming dataset, resumed after ``start_step`` steps."""

    def __init__(
        self, dataset: StreamingDataset, batch_size: int, accumulation: int, seed: int, workers: int,
        dist: Distributed, start_step: int,
    ):
        self.micro = batch_size // dist.world_size // accumulation
        self.mine = my_micro_batches(dist, accumulation)
        self._iterator = dataset.batches(
            rank=dist.rank, world_size=dist.world_size, batch_size=self.micro, workers=workers, seed=seed,
            skip=start_step * accumulation,
        )

    def step(self, step: int) -> list[tuple[int, dict[str, Any]]]:
        try:
            return [(k, next(self._iterator)) for k in self.mine]
        except InputError as exc:
            raise _unwrapped(exc) from None


def _unwrapped(exc: InputError) -> InputError:
    """A DataLoader worker's error as its one line (the loader re-raises it with the worker's
    traceback folded into the message)."""
    lines = str(exc).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return InputError(lines[-1].split(": ", 1)[-1])
    return exc


def first_items(dataset: Any, count: int, seed: int) -> Iterator[dict[str, Any]]:
    """Raw batches of the dataset's first ``count`` items (fewer if it is smaller), in at
    most 256 at a time: the preview batch, and the prior's normalisation statistics."""
    if is_streaming(dataset):
        stream = dataset.batches(rank=0, world_size=1, batch_size=min(count, 256), workers=0, seed=seed, skip=0)
        done = 0
        while done < count:
            raw = next(stream)
            keep = [i for i, epoch in enumerate(raw["epoch"]) if epoch == 0][: count - done]
            if not keep:
                return
            yield select(raw, keep)
            done += len(keep)
            if len(keep) < len(raw["epoch"]):
                return
        return
    count = min(len(dataset), count)
    for start in range(0, count, 256):
        yield collate(dataset, list(range(start, min(count, start + 256))))


def select(raw: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """The raw batch restricted to ``rows``."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, torch.Tensor):
            out[key] = value[rows]
        else:
            out[key] = [value[i] for i in rows]
    return out
