"""Cutting the pending lines into batches, and the batches among ranks.

Ranks take lines round-robin (rank ``r`` of ``W``: pending lines ``r, r+W, …``): disjoint
slices whose union is all the work, balanced to one line, decided by every rank alike from
the same pending list. Each rank then packs its lines, in order, into batches of at most
``batch_size`` images; a line is never split (its ``n`` images share one seed's stream, so
they are drawn together), and a line of more than ``batch_size`` images runs alone. Lines
with different negative prompts are not mixed (the pipeline takes one per call).
"""
from __future__ import annotations

from collections.abc import Sequence

from unclip_core.batch.prompt_file import Item


def rank_slice(items: Sequence[Item], rank: int, world_size: int) -> list[Item]:
    return list(items[rank::world_size])


def pack(items: Sequence[Item], batch_size: int) -> list[list[Item]]:
    """Consecutive items grouped into batches of at most ``batch_size`` images."""
    batches: list[list[Item]] = []
    current: list[Item] = []
    images = 0
    for item in items:
        fits = current and images + item.n <= batch_size and item.negative == current[0].negative
        if current and not fits:
            batches.append(current)
            current, images = [], 0
        current.append(item)
        images += item.n
    if current:
        batches.append(current)
    return batches


def steps_for(items: Sequence[Item], world_size: int, batch_size: int) -> int:
    """How many batches the busiest rank runs (every rank takes part in that many progress
    exchanges, so none waits on a collective another never joins)."""
    return max(len(pack(rank_slice(items, rank, world_size), batch_size)) for rank in range(world_size))
