"""Figures reported over a prompt set: checker accuracies, and sample diversity per prompt."""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from unclip_core.errors import InputError

from .checker import CheckResult
from .images import ImageLike, as_rgb_float


def score(results: Sequence[CheckResult]) -> dict[str, float | int | None]:
    """Accuracies over ``results``: ``exact``, ``color``, ``shape``, ``count`` over all of them,
    ``relation`` over the two-object captions only (``None`` when there are none), and the
    counts ``n`` and ``n_relation`` they were taken over."""
    if not results:
        raise InputError("score needs at least one CheckResult, got none")
    relational = [result.relation for result in results if result.relation is not None]
    figures: dict[str, float | int | None] = {
        name: float(np.mean([getattr(result, name) for result in results]))
        for name in ("exact", "color", "shape", "count")
    }
    figures["relation"] = float(np.mean(relational)) if relational else None
    figures["n"] = len(results)
    figures["n_relation"] = len(relational)
    return figures


def diversity(images: Sequence[ImageLike]) -> float:
    """Mean pairwise RMS distance between samples of one prompt, in ``[0, 1]`` pixel space.

    For every unordered pair ``(a, b)``: ``‖a − b‖₂ / sqrt(H·W·3)`` with pixels scaled to
    ``[0, 1]``, i.e. the root-mean-square pixel difference; the result is its mean over all
    pairs. 0 means identical samples; two unrelated renders of this world sit near 0.1–0.3.
    The unCLIP paper's claim (more diverse than GLIDE at equal fidelity) is measured with it.
    """
    if len(images) < 2:
        raise InputError(f"diversity needs at least two images of one prompt, got {len(images)}")
    arrays = [as_rgb_float(image) / 255.0 for image in images]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise InputError(f"diversity needs images of one size, got sizes {sorted(shapes)}")
    stacked = np.stack(arrays).reshape(len(arrays), -1).astype(np.float64)
    norm = math.sqrt(stacked.shape[1])
    distances = [np.linalg.norm(stacked[i] - stacked[j]) / norm for i, j in itertools.combinations(range(len(arrays)), 2)]
    return float(np.mean(distances))
