"""The dataset's contract: items (or streamed batches) of images in [-1, 1] with captions, the same each read."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from unclip_core.contracts._support import _require


def check_dataset(dataset: Any) -> None:
    """Items are ``{"image": [3, H, W] float in [-1, 1], "caption": str}``, the same item
    each time it is read."""
    label = f"dataset {type(dataset).__name__}"
    if not hasattr(dataset, "__getitem__") and hasattr(dataset, "batches"):
        _check_streaming_dataset(dataset, label)
        return
    _require(len(dataset) >= 1, label, "is empty")
    for index in sorted({0, len(dataset) - 1}):
        item = dataset[index]
        _require(isinstance(item, Mapping), label, f"item {index} must be a mapping, got {type(item).__name__}")
        _require({"image", "caption"} <= set(item), label, f"item {index} must have 'image' and 'caption', has {sorted(item)}")
        image, caption = item["image"], item["caption"]
        _require(
            isinstance(image, Tensor) and image.ndim == 3 and image.shape[0] == 3 and image.is_floating_point(),
            label,
            f"item {index}'s image must be a float tensor [3, H, W], got "
            f"{list(image.shape) if isinstance(image, Tensor) else type(image).__name__}",
        )
        _require(bool(((image >= -1) & (image <= 1)).all()), label, f"item {index}'s image has values outside [-1, 1]")
        _require(isinstance(caption, str), label, f"item {index}'s caption must be a str, got {type(caption).__name__}")
        again = dataset[index]
        _require(torch.equal(again["image"], image) and again["caption"] == caption, label, f"item {index} differs when read twice")


def _check_streaming_dataset(dataset: Any, label: str) -> None:
    """A streaming dataset (``batches(rank=, world_size=, batch_size=, workers=, seed=, skip=)``)
    yields raw batches ``{"image": [B, 3, H, W] in [-1, 1], "caption": [str] * B, "index": [...]}``,
    and the same first batch each time it is started with the same seed."""
    def first_batch() -> Mapping:
        return next(iter(dataset.batches(rank=0, world_size=1, batch_size=2, workers=0, seed=0, skip=0)))

    batch = first_batch()
    _require(isinstance(batch, Mapping), label, f"batches must be mappings, got {type(batch).__name__}")
    _require({"image", "caption", "index"} <= set(batch), label, f"a batch must have 'image', 'caption' and 'index', has {sorted(batch)}")
    image, captions = batch["image"], batch["caption"]
    _require(
        isinstance(image, Tensor) and image.ndim == 4 and image.shape[:2] == (2, 3) and image.is_floating_point(),
        label,
        f"a batch's image must be a float tensor [2, 3, H, W], got {list(image.shape) if isinstance(image, Tensor) else type(image).__name__}",
    )
    _require(bool(((image >= -1) & (image <= 1)).all()), label, "a batch's images have values outside [-1, 1]")
    _require(len(captions) == 2 and all(isinstance(c, str) for c in captions), label, "a batch's captions must be 2 str")
    again = first_batch()
    _require(torch.equal(again["image"], image) and list(again["caption"]) == list(captions), label, "the first batch differs when started twice")
