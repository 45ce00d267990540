"""What every diffusion model (prior, decoder, upsampler) promises: output shape, its denoiser, guidance, drop flags."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from unclip_core.contracts._support import _close, _differ, _label, _require
from unclip_core.diffusion.guidance import guide
from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.interfaces import Denoiser, DiffusionModel


def check_diffusion_model(
    model: DiffusionModel, x_t: Tensor, t: Tensor, cond: Any, *, drop_flags: Sequence[str] = ()
) -> None:
    """A diffusion model's one call and the denoiser built on it.

    ``model(x_t, t, cond)`` returns ``x_t``'s shape — with the channels (dim 1) doubled for
    ``variance_type="learned_range"`` — finite and floating; ``prediction_type``,
    ``variance_type`` and ``schedule`` are valid; ``model.denoiser(cond, 1.0)`` satisfies the
    :class:`Denoiser` protocol and equals the plain call; with guidance ``s`` it equals
    ``uncond + s (cond - uncond)`` (when the condition has an unconditional form); setting any
    of ``drop_flags`` changes the prediction.
    """
    label = _label(model)
    _require(model.prediction_type in ("eps", "x0", "v"), label, f"unknown prediction_type {model.prediction_type!r}")
    _require(
        model.variance_type in ("fixed_small", "fixed_large", "learned_range"),
        label,
        f"unknown variance_type {model.variance_type!r}",
    )
    _require(isinstance(model.schedule, NoiseSchedule), label, "schedule must be a NoiseSchedule")
    with torch.no_grad():
        out = model(x_t, t, cond)
        channels = x_t.shape[1] * (2 if model.variance_type == "learned_range" else 1)
        expected = (x_t.shape[0], channels, *x_t.shape[2:])
        _require(
            tuple(out.shape) == expected,
            label,
            f"forward must return {list(expected)} for x_t {list(x_t.shape)} with variance_type "
            f"{model.variance_type!r}, got {list(out.shape)}",
        )
        _require(out.is_floating_point() and bool(torch.isfinite(out).all()), label, "forward returned non-finite or non-float values")

        denoiser = model.denoiser(cond, 1.0)
        _require(isinstance(denoiser, Denoiser), label, "denoiser() must return an object with the Denoiser protocol's attributes")
        for attr in ("prediction_type", "variance_type", "clip_range"):
            _require(
                getattr(denoiser, attr) == getattr(model, attr),
                label,
                f"its denoiser's {attr} {getattr(denoiser, attr)!r} differs from the model's {getattr(model, attr)!r}",
            )
        _require(_close(denoiser(x_t, t), out), label, "denoiser(cond, guidance_scale=1) must equal the plain forward call")

        try:
            uncond = cond.unconditional()
        except NotImplementedError:
            uncond = None
        if uncond is not None:
            scale = 3.0
            expected_guided = guide(out, model(x_t, t, uncond), scale, model.variance_type)
            guided = model.denoiser(cond, scale)(x_t, t)
            _require(
                _close(guided, expected_guided, tolerance=1e-4),
                label,
                f"denoiser(cond, guidance_scale={scale}) must equal uncond + {scale}·(cond − uncond) "
                "(classifier-free guidance on the prediction)",
            )
        for flag in drop_flags:
            dropped = dataclasses.replace(cond, **{flag: torch.ones_like(getattr(cond, flag))})
            _require(
                _differ(model(x_t, t, dropped), out),
                label,
                f"setting {flag} does not change its prediction; it must swap in the null input "
                "(that is how conditioning dropout and classifier-free guidance work)",
            )
