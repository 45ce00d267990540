"""Several seeded generators behind one batch, so a batch of independent requests draws the
same noise for each request as that request would draw alone.

A sampler draws its noise ``[R, ...]`` in one call. Run alone with seed ``s`` and ``n``
images, a request draws ``[n·k, ...]`` from ``Generator().manual_seed(s)`` (``k``: rows per
image at this stage, e.g. the prior's candidates). In a batch its rows sit next to the other
requests' (prompt-major order), so :meth:`RowGenerators.randn` draws each request's rows from
its own generator, in the request's own order, and stacks them. ``unclip serve`` uses this to
run concurrent requests as one batch (:mod:`unclip_core.serve.batching`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unclip_core.errors import UnclipError


class RowGenerators:
    """``(seed, rows)`` per request, in batch order; ``rows``: the request's images."""

    def __init__(self, groups: Sequence[tuple[int, int]], device: str | torch.device = "cpu"):
        if not groups or any(rows < 1 for _, rows in groups):
            raise UnclipError(f"row generators need at least one group of at least one row, got {list(groups)}")
        self.device = torch.device(device)
        self.rows = [int(rows) for _, rows in groups]
        self.generators = [torch.Generator(device=self.device).manual_seed(int(seed)) for seed, _ in groups]

    def randn(self, shape: Sequence[int], dtype: torch.dtype | None = None) -> Tensor:
        """Standard normal noise ``shape``, each request's rows from its own generator."""
        shape = tuple(shape)
        total = sum(self.rows)
        if shape[0] % total:
            raise UnclipError(f"a draw of {shape[0]} rows does not split over requests of {self.rows} images")
        per_image = shape[0] // total
        parts = [
            torch.randn((rows * per_image, *shape[1:]), generator=generator, device=self.device, dtype=dtype)
            for generator, rows in zip(self.generators, self.rows)
        ]
        return torch.cat(parts)
