"""``training_loss`` trains: a few optimiser steps on a fixed batch lower it."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from unclip_core.contracts._support import _generator, _label, _require


def check_train_step_reduces_loss(
    component: Any, batch: Mapping[str, Any], *, steps: int = 5, lr: float = 1e-3, seed: int = 0
) -> None:
    """A few AdamW steps on one fixed batch (and fixed timesteps and noise: the generator is
    reseeded each step) lower ``training_loss(batch, generator)``: the loss reaches the
    trainable parameters and its sign is right. Works on a copy; ``component`` is untouched."""
    label = _label(component)
    model = copy.deepcopy(component)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    _require(bool(params), label, "has training_loss but no trainable parameters")

    def loss() -> Tensor:
        return model.training_loss(dict(batch), _generator(seed))

    first = loss()
    _require(
        isinstance(first, Tensor) and first.ndim == 0 and bool(torch.isfinite(first.detach())),
        label,
        f"training_loss must return a finite scalar tensor, got {first!r}",
    )
    _require(first.requires_grad, label, "training_loss returned a tensor that carries no gradient")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        before, after = first.item(), loss().item()
    _require(
        after < before,
        label,
        f"training_loss did not decrease over {steps} AdamW steps (lr {lr}) on a fixed batch and seed: "
        f"{before:.5g} -> {after:.5g}",
    )
