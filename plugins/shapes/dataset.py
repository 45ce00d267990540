"""The shapes world as a map-style torch dataset of rendered image–caption pairs."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from unclip_core.errors import InputError

from .captions import caption
from .negatives import draw_negatives
from .renderer import render_array
from .world import SPLITS, Scene, Split, sample_scene


class ShapesDataset(Dataset):
    """``length`` scenes of ``split``; item ``i`` is ``{"image": float [3, size, size] in [-1, 1],
    "caption": str}``.

    Scene ``i`` is drawn from a generator seeded by ``(seed, i)``, so an item is the same
    whichever worker, epoch or order asks for it. ``cache=True`` keeps each rendered
    ``uint8`` array in memory after its first use (per worker process): rendering is cheap
    but shows in training profiles at small model sizes.

    ``hard_negatives=k`` adds ``"negatives"``: ``k`` captions false for the scene that differ
    from its caption by a minimal edit (:mod:`.negatives`), for CLIP's contrastive loss;
    drawn from their own generator, seeded by ``(seed, i, 1)``, so the scenes stay the same.
    """

    def __init__(
        self, split: Split = "train", size: int = 64, length: int = 10_000, seed: int = 0, cache: bool = False,
        hard_negatives: int = 0,
    ):
        if split not in SPLITS:
            raise InputError(f"unknown shapes split {split!r}; expected one of {SPLITS}")
        if not isinstance(size, int) or size < 1:
            raise InputError(f"ShapesDataset size must be a positive integer, got {size!r}")
        if not isinstance(length, int) or length < 0:
            raise InputError(f"ShapesDataset length must be a non-negative integer, got {length!r}")
        if not isinstance(seed, int) or seed < 0:
            raise InputError(f"ShapesDataset seed must be a non-negative integer, got {seed!r}")
        if not isinstance(hard_negatives, int) or hard_negatives < 0:
            raise InputError(f"ShapesDataset hard_negatives must be a non-negative integer, got {hard_negatives!r}")
        self.hard_negatives = hard_negatives
        self.split = split
        self.size = size
        self.length = length
        self.seed = seed
        self._cache: dict[int, tuple[np.ndarray, str]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.length

    def _index(self, index: int) -> int:
        if not -self.length <= index < self.length:
            raise IndexError(f"ShapesDataset index {index} out of range for length {self.length}")
        return index % self.length

    def scene(self, index: int) -> Scene:
        """The scene behind item ``index``."""
        return sample_scene(np.random.default_rng((self.seed, self._index(index))), self.split)

    def _rendered(self, index: int) -> tuple[np.ndarray, str]:
        index = self._index(index)
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        scene = self.scene(index)
        entry = (render_array(scene, self.size), caption(scene))
        if self._cache is not None:
            self._cache[index] = entry
        return entry

    def negatives(self, index: int) -> list[str]:
        """Item ``index``'s hard negative captions (``hard_negatives`` of them)."""
        rng = np.random.default_rng((self.seed, self._index(index), 1))
        return draw_negatives(self.scene(index), self.hard_negatives, rng)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | list[str]]:
        pixels, text = self._rendered(index)
        image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        item: dict[str, torch.Tensor | str | list[str]] = {"image": image, "caption": text}
        if self.hard_negatives:
            item["negatives"] = self.negatives(index)
        return item
