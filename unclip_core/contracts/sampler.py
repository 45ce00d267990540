"""The sampler's contract: it owns the loop, lands on x0 under an exact denoiser, reports each step, uses x_T."""
from __future__ import annotations

import torch
from torch import Tensor

from unclip_core.contracts._support import _differ, _generator, _label, _require
from unclip_core.contracts.inputs import make_exact_denoiser
from unclip_core.diffusion.parameterization import alpha_sigma
from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.interfaces import PredictionType, Sampler, StepInfo, VarianceType


def check_sampler(sampler: Sampler, *, atol: float = 1e-4) -> None:
    """The sampler owns the loop: driven by an exact denoiser (:func:`make_exact_denoiser`)
    it returns the known ``x0`` for every prediction type and variance type, for image-shaped
    and embedding-shaped samples; it returns the requested shape; it calls the callback once
    per step, in order (``config.steps`` times, where the config has ``steps``); and it
    uses ``x_T`` when given."""
    label = _label(sampler)
    schedule = NoiseSchedule.from_name("cosine", 1000)
    cases: tuple[tuple[tuple[int, ...], PredictionType, VarianceType], ...] = (
        ((2, 3, 8, 8), "eps", "fixed_small"),
        ((3, 16), "x0", "learned_range"),
        ((2, 3, 8, 8), "v", "fixed_large"),
    )
    for shape, prediction_type, variance_type in cases:
        generator = _generator(10)
        x0 = (torch.rand(shape, generator=generator) * 1.8 - 0.9)
        denoiser = make_exact_denoiser(x0, schedule, prediction_type=prediction_type, variance_type=variance_type)
        steps: list[StepInfo] = []
        out = sampler.sample(denoiser, shape, generator=_generator(0), callback=steps.append)
        case = f"(shape {list(shape)}, prediction {prediction_type!r}, variance {variance_type!r})"
        _require(tuple(out.shape) == shape, label, f"sample must return the requested shape {list(shape)} {case}, got {list(out.shape)}")
        error = float((out.float() - x0).abs().max())
        _require(
            error <= atol,
            label,
            f"with an exact denoiser sample must return the clean sample x0 {case}; off by {error:.3g} (max abs)",
        )
        _require(len(steps) >= 1, label, f"never called the callback {case}")
        _require(
            [s.index for s in steps] == list(range(len(steps))) and all(s.total == len(steps) for s in steps),
            label,
            f"must call the callback once per step with index 0..total-1 in order {case}; got "
            f"{[(s.index, s.total) for s in steps]}",
        )
        _require(all(tuple(s.x.shape) == shape for s in steps), label, f"callback StepInfo.x must have the sample's shape {case}")
        wanted = getattr(sampler.config, "steps", None)
        _require(
            wanted is None or len(steps) == wanted,
            label,
            f"config.steps is {wanted} but the callback was called {len(steps)} times {case}",
        )
        _require(denoiser.calls >= len(steps), label, f"reported {len(steps)} steps but called the denoiser {denoiser.calls} times")

    shape = (2, 3, 8, 8)
    smooth = _SmoothDenoiser(schedule)
    x_a = torch.randn(shape, generator=_generator(11))
    with torch.no_grad():
        from_a = sampler.sample(smooth, shape, generator=_generator(0), x_T=x_a)
        from_b = sampler.sample(smooth, shape, generator=_generator(0), x_T=-x_a)
    _require(_differ(from_a, from_b), label, "ignores the x_T it is given")


class _SmoothDenoiser:
    """An x0-predicting denoiser whose answer depends on ``x_t`` (it shrinks it), so a
    sampler's result depends on where it starts: for seed and x_T checks."""

    prediction_type: PredictionType = "x0"
    variance_type: VarianceType = "fixed_small"
    clip_range: float | None = 1.0
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        a, _ = alpha_sigma(self.schedule, torch.as_tensor(t).cpu().long(), x_t)
        return torch.tanh(0.5 * a * x_t)
