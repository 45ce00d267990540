"""The shapes world as a registered dataset."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from unclip_core import ComponentConfig
from unclip_plugins.shapes import ShapesDataset


class ShapesConfig(ComponentConfig):
    """Settings of the ``shapes`` dataset."""

    split: Literal["train", "all"] = Field("train", description="'train' skips every scene with a held-out pair.")
    size: int = Field(64, ge=8, le=1024, description="Side of the rendered images (pixels).")
    length: int = Field(100_000, ge=1, description="Number of distinct scenes (items); scene i is seeded by (seed, i).")
    seed: int = Field(0, ge=0, description="Seed of the scene generator.")
    cache: bool = Field(True, description="Keep rendered images in memory after first use.")
    hard_negatives: int = Field(
        0, ge=0, le=8,
        description="Captions false for each scene (swapped colours, shapes or objects, another relation, one "
        "attribute changed) added to CLIP's contrastive loss as that image's extra candidates (NegCLIP); 0: none.",
    )


def build_shapes(config: ShapesConfig) -> ShapesDataset:
    """The shapes world dataset (docs/shapes.md), deterministic per index."""
    return ShapesDataset(split=config.split, size=config.size, length=config.length, seed=config.seed, cache=config.cache,
                         hard_negatives=config.hard_negatives)
