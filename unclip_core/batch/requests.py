"""Several requests' images in one batch, each request drawing what it would draw alone.

A request is ``(prompt, n, seed)``: alone it is ``pipeline.generate_tensors([prompt], n, seed)``.
Side by side, its prompt is repeated ``n`` times and its noise comes from its own seed
(:class:`~unclip_core.diffusion.row_generators.RowGenerators`), so the batch holds the same
images (up to the rounding of kernels run at another batch size). ``unclip serve`` batches
concurrent HTTP requests with this; ``unclip generate --prompts`` batches a file's lines.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from unclip_core.interfaces import StepInfo


def generate_requests(
    pipeline: Any,
    requests: Sequence[tuple[str, int, int]],
    *,
    on_step: Callable[[str, StepInfo], None] | None = None,
    **options: Any,
) -> Tensor:
    """Images ``[Σn, 3, H, W]`` of every ``(prompt, n, seed)`` in order; ``options`` go to
    ``generate_tensors`` unchanged (every request of the batch shares them)."""
    from unclip_core.diffusion.row_generators import RowGenerators

    if len(requests) == 1:
        prompt, n, seed = requests[0]
        return pipeline.generate_tensors([prompt], n=n, seed=seed, on_step=on_step, **options)
    prompts = [prompt for prompt, n, _ in requests for _ in range(n)]
    generator = RowGenerators([(seed, n) for _, n, seed in requests], device=pipeline.device)
    return pipeline.generate_tensors(prompts, n=1, generator=generator, on_step=on_step, **options)
