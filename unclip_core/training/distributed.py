"""Running one training loop on many processes: torch.distributed as ``torchrun`` sets it up.

Three rules make a run on W processes the same computation as one process:

* **Micro-batches have global numbers.** A step's global batch is cut into ``K = W × A``
  micro-batches (A = ``train.accumulation``); micro-batch ``k`` is items
  ``[k·m, (k+1)·m)`` of the step's batch, and rank ``r`` trains micro-batches ``r, r+W, …``.
  One process with accumulation ``W × A`` trains the same micro-batches.
* **Each micro-batch has its own random stream.** Micro-batch 0 draws from the run's
  checkpointed generator (so a one-process run without accumulation draws exactly as it
  always has); micro-batch ``k > 0`` from a generator seeded by ``(seed, step, k)``. The
  draws therefore depend on which micro-batch a sample is in, never on which process
  trains it — and ranks other than 0 never touch the checkpointed generator, so rank 0's
  checkpoint holds all the random state there is.
* **Gradients are averaged by DDP**, each rank's loss being its micro-batches' mean
  divided by A: the average over ranks is the mean over the global batch.

So W ranks × A accumulation equals one process × (W·A) accumulation up to the order of a
float sum, and a checkpoint resumes with any world size (exactly when W·A is kept).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from unclip_core.training.stages import stage_loss


@dataclass
class Distributed:
    """This process's place in the run: ``rank`` of ``world_size`` (0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        """Leave the process group if this run joined it (a clean exit, no warnings)."""
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: torch.device | str = "cpu") -> Distributed:
    """Join the process group torchrun set up, or stay single (no ``WORLD_SIZE`` > 1).

    The backend follows where the model trains: nccl for a CUDA device, gloo otherwise (the
    loop trains on the CPU today, so a GPU in the machine does not by itself mean nccl)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
        owns = True
    return Distributed(dist.get_rank(), dist.get_world_size(), owns)


def my_micro_batches(dist: Distributed, accumulation: int) -> list[int]:
    """Global numbers of the micro-batches this rank trains in every step."""
    return [chunk * dist.world_size + dist.rank for chunk in range(accumulation)]


def micro_generator(generator: torch.Generator, seed: int, step: int, micro: int) -> torch.Generator:
    """The random stream of micro-batch ``micro`` of ``step`` (see the module docstring)."""
    if micro == 0:
        return generator
    digest = hashlib.blake2b(f"unclip/{seed}/{step}/{micro}".encode(), digest_size=8).digest()
    return torch.Generator(device=generator.device).manual_seed(int.from_bytes(digest, "little") >> 1)


class StageLoss(nn.Module):
    """The stage's loss as a module ``forward``, so DistributedDataParallel can wrap it.

    DDP synchronises gradients of what runs through its own ``forward``; a component's
    ``training_loss`` is a plain method, so calling it on a DDP wrapper would fail (and
    calling it on the inner module would skip the synchronisation)."""

    def __init__(self, stage: str, model: nn.Module):
        super().__init__()
        self.stage = stage
        self.model = model

    def forward(self, batch: dict[str, Any], generator: torch.Generator) -> Tensor:
        return stage_loss(self.stage, self.model, batch, generator)


def wrap_for_training(stage: str, model: nn.Module, dist: Distributed) -> nn.Module:
    """The module a step calls: the stage loss, under DDP when there are several processes."""
    loss = StageLoss(stage, model)
    if dist.world_size <= 1:
        return loss
    on_cuda = any(p.is_cuda for p in model.parameters())
    device_ids = [torch.cuda.current_device()] if on_cuda else None
    return nn.parallel.DistributedDataParallel(loss, device_ids=device_ids)


def agree(dist: Distributed, loss: float, stop: bool) -> tuple[float, bool]:
    """The mean loss over ranks, and whether any rank was asked to stop.

    One small all-reduce per step: every rank logs the same loss, fails together on a
    non-finite one, and stops at the same step (a rank that stopped alone would leave the
    others waiting in their next gradient all-reduce)."""
    if dist.world_size <= 1:
        return loss, stop
    import torch.distributed as tdist

    device = torch.device("cuda", torch.cuda.current_device()) if tdist.get_backend() == "nccl" else torch.device("cpu")
    values = torch.tensor([loss, 1.0 if stop else 0.0], dtype=torch.float64, device=device)
    tdist.all_reduce(values)
    return float(values[0]) / dist.world_size, bool(values[1] > 0)
