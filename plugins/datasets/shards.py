"""WebDataset tar shards of (image, caption) pairs, as img2dataset writes them, streamed.

A shard is a tar file of samples: files sharing a key (``000120034.jpg``, ``000120034.txt``,
…) make one sample. The ``webdataset`` package reads them (its tar iterator and grouping);
this module decides who reads which shard:

* **Epochs.** Epoch ``e`` is every sample of every shard once. Its shard order is a
  permutation seeded by ``(seed, e)``; within a shard, samples come in tar order (write the
  shards from a shuffled list, as img2dataset does).
* **Slots.** A rank's DataLoader worker is a slot: ``slot = rank + world_size × worker`` of
  ``world_size × max(1, workers)``. Slot ``s`` reads shards ``order[s::slots]`` of every
  epoch, so each sample of an epoch goes to exactly one rank (and one worker). There must
  be at least as many shards as slots.
* **A slot's stream never ends:** when its shards of epoch ``e`` are done it starts on its
  shards of ``e+1``. Slots with more samples fall behind the others by a few items per
  epoch; each item carries its ``epoch``, which is what "once per epoch" is counted by.
* **Resume.** A rank's batches come round-robin from its workers, so the first ``skip``
  batches of a rank are a known number per worker; a worker skips its share by reading
  (not decoding) samples from the start of its stream. Same world size and workers: the
  run continues exactly where it stopped. Another layout: each slot starts where it would
  be had the run used the new layout from its first step — the same epoch and the same
  fraction of it, but not the same samples.
"""
from __future__ import annotations

import glob
import io
import tarfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from unclip_core import ComponentConfig
from unclip_core.errors import InputError
from unclip_core.images import pil_to_tensor
from unclip_core.training.embeddings import FIELDS, ShardEmbeddings, read_manifest, shard_done, shard_stem

INSTALL_HINT = "the shards dataset needs the webdataset package: pip install 'unclip[shards]'"


class ShardsConfig(ComponentConfig):
    """Settings of the ``shards`` dataset."""

    urls: str = Field(
        description="Tar shards: a brace pattern ('data/{00000..00099}.tar') or a glob ('data/*.tar'), "
        "relative to the recipe's folder.",
    )
    size: int = Field(64, ge=8, le=4096, description="Images are centre-cropped to a square and resized to this side.")
    image_key: str = Field("jpg;jpeg;png;webp", description="Extensions tried for a sample's image, ';'-separated.")
    caption_key: str = Field("txt", description="Extension of a sample's caption.")
    embeddings: str | None = Field(
        None,
        description="Folder of precomputed CLIP embeddings aligned with the shards (unclip embed), relative to "
        "the recipe's folder; the prior and decoder stages then run no encoder.",
    )

    @field_validator("urls")
    @classmethod
    def _shards_exist(cls, value: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base_dir") if info.context else None
        pattern = _absolute(value, base)
        try:
            expand_shards(pattern)  # a bad path is a validation error, reported at its recipe path
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return pattern

    @field_validator("embeddings")
    @classmethod
    def _embeddings_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir") if info.context else None
        folder = Path(_absolute(value, base))
        if not folder.is_dir():
            raise ValueError(f"embeddings folder not found: {folder}")
        return str(folder)


def _absolute(value: str, base: Any) -> str:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base or Path.cwd()) / path
    return str(path)


def expand_shards(pattern: str) -> list[str]:
    """Brace-expand, then glob the parts with wildcards; every named shard must exist."""
    try:
        import braceexpand  # optional (the shards extra): imported when the dataset is read
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    urls: list[str] = []
    for part in braceexpand.braceexpand(pattern):
        if any(char in part for char in "*?["):
            found = sorted(glob.glob(part))
            if not found:
                raise InputError(f"no shard matches {part}")
            urls.extend(found)
        elif not Path(part).is_file():
            raise InputError(f"shard not found: {part}")
        else:
            urls.append(part)
    if not urls:
        raise InputError(f"no shard matches {pattern}")
    return urls


def read_shard(url: str) -> Iterator[dict[str, Any]]:
    """The raw samples of one tar (``__key__`` and bytes per extension), through webdataset."""
    try:
        from webdataset.tariterators import tarfile_samples  # optional (the shards extra): imported when the dataset is read
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    try:
        yield from tarfile_samples([{"url": url}])
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"cannot read shard {url}: {exc.args[0] if exc.args else exc}") from None


class ShardsDataset:
    """The ``shards`` dataset: a streaming dataset for the training loop (``batches``)."""

    def __init__(self, config: ShardsConfig):
        self.config = config
        self.urls = expand_shards(config.urls)
        self.image_keys = [key.strip().lower() for key in config.image_key.split(";") if key.strip()]
        self.caption_key = config.caption_key.strip().lower()
        self.manifest: dict[str, Any] | None = None
        self.embeddings = Path(config.embeddings) if config.embeddings else None
        if self.embeddings is not None:
            self.manifest = read_manifest(self.embeddings)
            for url in self.urls:
                if not shard_done(self.embeddings, shard_stem(url)):
                    raise InputError(
                        f"no precomputed embeddings for shard {url} in {self.embeddings} (run unclip embed)"
                    )

    def embedding_source(self) -> dict[str, Any] | None:
        return self.manifest

    def batches(
        self, *, rank: int, world_size: int, batch_size: int, workers: int, seed: int, skip: int
    ) -> Iterator[dict[str, Any]]:
        slots = world_size * max(1, workers)
        if len(self.urls) < slots:
            raise InputError(
                f"{len(self.urls)} shards cannot feed {world_size} ranks x {max(1, workers)} workers: "
                "every slot needs at least one shard per epoch; write more, smaller shards"
            )
        stream = _RankStream(self, rank, world_size, max(1, workers), batch_size, seed, skip)
        if workers == 0:
            return iter(stream)
        return iter(DataLoader(stream, batch_size=None, num_workers=workers))

    def shard_items(self, url: str) -> Iterator[dict[str, Any]]:
        """The decoded items of one shard in tar order (what ``unclip embed`` encodes)."""
        for index, sample in enumerate(read_shard(url)):
            yield self.decode(sample, url, 0, index, None)

    # -- one slot --------------------------------------------------------------------------
    def slot_items(self, slot: int, slots: int, seed: int, skip: int) -> Iterator[dict[str, Any]]:
        """Slot ``slot``'s endless stream of decoded items, after ``skip`` items (read, not decoded)."""
        for epoch in count():
            order = torch.randperm(len(self.urls), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
            mine = [self.urls[i] for i in order[slot::slots].tolist()]
            produced = 0
            for url in mine:
                embeds = None
                index = -1
                for index, sample in enumerate(read_shard(url)):
                    produced += 1
                    if skip:
                        skip -= 1
                        continue
                    if self.embeddings is not None and embeds is None:
                        embeds = ShardEmbeddings(self.embeddings, shard_stem(url), url)
                    yield self.decode(sample, url, epoch, index, embeds)
                if embeds is not None:
                    embeds.check_complete(index + 1)
            if not produced:
                raise InputError(f"shards {', '.join(mine)} hold no samples")

    def decode(self, sample: dict[str, Any], url: str, epoch: int, index: int, embeds: ShardEmbeddings | None) -> dict[str, Any]:
        key = sample["__key__"]
        image_ext = next((k for k in self.image_keys if k in sample), None)
        if image_ext is None:
            raise InputError(
                f"{url}: sample {key!r} has no image (looked for {', '.join(self.image_keys)}; it has "
                f"{', '.join(sorted(k for k in sample if not k.startswith('__'))) or 'nothing'})"
            )
        if self.caption_key not in sample:
            raise InputError(f"{url}: sample {key!r} has no caption (.{self.caption_key})")
        from PIL import Image, UnidentifiedImageError  # imported where a member is decoded (the module loads at discovery)

        try:
            image = Image.open(io.BytesIO(sample[image_ext]))
            image.load()
        except Exception as exc:
            # PIL's messages name its in-memory file (<_io.BytesIO object at 0x...>): name the member instead
            reason = "not an image format PIL knows" if isinstance(exc, UnidentifiedImageError) else " ".join(str(exc).split())
            raise InputError(f"{url}: member {key}.{image_ext} cannot be decoded as an image ({reason})") from None
        try:
            caption = sample[self.caption_key].decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InputError(f"{url}: member {key}.{self.caption_key} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        item = {
            "image": pil_to_tensor([image.convert("RGB")], self.config.size)[0],
            "caption": caption,
            "key": key,
            "shard": url,
            "epoch": epoch,
        }
        if embeds is not None:
            item.update(embeds.row(index, key))
        return item


class _RankStream(IterableDataset):
    """One rank's micro-batches; in a DataLoader worker, that worker's share of them."""

    def __init__(self, dataset: ShardsDataset, rank: int, world_size: int, workers: int, batch_size: int, seed: int, skip: int):
        super().__init__()
        self.dataset, self.rank, self.world_size, self.workers = dataset, rank, world_size, workers
        self.batch_size, self.seed, self.skip = batch_size, seed, skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        # The DataLoader takes a rank's batches from its workers in turn: batch j from worker j % workers.
        skipped = len(range(worker, self.skip, self.workers))
        slot = self.rank + self.world_size * worker
        items = self.dataset.slot_items(slot, self.world_size * self.workers, self.seed, skipped * self.batch_size)
        while True:
            yield collate_items([next(items) for _ in range(self.batch_size)])


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Decoded items → the loop's raw batch (``index`` holds the keys; the loop caches no stream)."""
    batch: dict[str, Any] = {
        "image": torch.stack([item["image"] for item in items]),
        "caption": [item["caption"] for item in items],
        "key": [item["key"] for item in items],
        "shard": [item["shard"] for item in items],
        "epoch": [item["epoch"] for item in items],
        "index": [f"{item['shard']}#{item['key']}" for item in items],
    }
    for field in FIELDS:
        if field in items[0]:
            batch[field] = torch.stack([item[field] for item in items])
    return batch
