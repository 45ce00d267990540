"""Which training timesteps a sampler visits when it takes fewer steps than the model was trained with.

The three spacings are those of diffusers' ``timestep_spacing`` (Table 2 of Lin et al. 2023,
"Common Diffusion Noise Schedules and Sample Steps are Flawed"), computed with the very same
NumPy expressions so that a recipe moved between diffusers and unclip visits the same steps:

* ``leading``  — ``0, k, 2k, …`` with ``k = T // steps``; never reaches the noisiest step.
* ``trailing`` — counts down from ``T - 1`` in strides of ``T / steps``; always starts at
  the noisiest step, which is why few-step samplers prefer it.
* ``linspace`` — ``steps`` points evenly between ``0`` and ``T - 1``, rounded.

Multistep ODE solvers (DPM-Solver++, UniPC) visit a variant, :func:`solver_timesteps`: their
last step goes all the way to the clean sample (σ = 0) by itself, so diffusers spaces
``leading`` and ``linspace`` over ``steps + 1`` points and drops the clean end ``t = 0``
rather than spend a model call on the nearly clean ``t = 0``.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

TimestepSpacing = Literal["leading", "trailing", "linspace"]
SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")


def inference_timesteps(num_train_timesteps: int, steps: int, spacing: TimestepSpacing) -> list[int]:
    """The ``steps`` training timesteps to visit, in descending order (diffusers, steps_offset 0).

    One deliberate difference: for some step counts (61 of 1000, for instance) diffusers'
    ``trailing`` float ``arange`` yields one element too many, a spurious timestep ``-1``;
    it is dropped here, so the result always has exactly ``steps`` valid timesteps.
    """
    total = int(num_train_timesteps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if steps > total:
        raise ValueError(f"steps={steps} exceeds the {total} timesteps the model was trained with")
    if spacing == "linspace":
        timesteps = np.linspace(0, total - 1, steps).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        timesteps = (np.arange(0, steps) * (total // steps)).round()[::-1].astype(np.int64)
    elif spacing == "trailing":
        timesteps = np.round(np.arange(total, 0, -total / steps)).astype(np.int64)[:steps] - 1
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    return [int(t) for t in timesteps]


def solver_timesteps(num_train_timesteps: int, steps: int, spacing: TimestepSpacing) -> list[int]:
    """The timesteps diffusers' ``DPMSolverMultistepScheduler`` visits (``lambda_min_clipped``
    off, ``steps_offset`` 0): ``leading`` and ``linspace`` over ``steps + 1`` points with the
    final ``t = 0`` dropped; ``trailing`` as :func:`inference_timesteps`.

    Raises ``ValueError`` where the ``steps + 1`` points would not be distinct timesteps.
    """
    total = int(num_train_timesteps)
    if spacing == "trailing" or steps < 1 or steps > total or spacing not in SPACINGS:
        return inference_timesteps(total, steps, spacing)
    if spacing == "linspace":
        timesteps = np.linspace(0, total - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    else:
        timesteps = (np.arange(0, steps + 1) * (total // (steps + 1))).round()[::-1][:-1].astype(np.int64)
    if len(set(timesteps.tolist())) != steps or timesteps.min() < 1:
        raise ValueError(f"steps={steps} is too many for {spacing!r} spacing over {total} timesteps; use 'trailing'")
    return [int(t) for t in timesteps]


def strength_start(steps: int, strength: float) -> int:
    """The index of the first of ``steps`` steps img2img takes at ``strength`` (diffusers'
    ``get_timesteps``): the last ``int(steps · strength)`` steps run."""
    if not 0 <= strength <= 1:  # also refuses nan
        raise ValueError(f"strength must be a number in [0, 1], got {strength}")
    return steps - min(int(steps * strength), steps)
