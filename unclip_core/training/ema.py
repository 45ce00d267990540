"""Exponential moving average of model weights, with a warming-up decay.

A fixed decay of 0.999 over a run of a few thousand steps would mostly average in the
untrained start; ``min(decay, (1 + step) / (10 + step))`` (the schedule of Karras-style and
many diffusion codebases) lets the average follow the model early and settle later.
"""
from __future__ import annotations

import torch
from torch import nn
from unclip_core.errors import CheckpointError


class EMA:
    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.shadow = {name: t.detach().clone().float() if t.is_floating_point() else t.detach().clone()
                       for name, t in model.state_dict().items()}

    def decay_at(self, step: int) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        for name, value in model.state_dict().items():
            shadow = self.shadow[name]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().float(), 1.0 - decay)
            else:
                shadow.copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise CheckpointError(f"EMA state lacks {sorted(missing)[:3]}")
        for name in self.shadow:
            self.shadow[name].copy_(state[name])

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (cast to its dtypes)."""
        current = model.state_dict()
        model.load_state_dict({k: v.to(current[k].dtype) for k, v in self.shadow.items()})
