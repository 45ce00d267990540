"""unclip: a plugin-based framework for unCLIP (DALL·E 2) image generation.

The names below are loaded on first use (PEP 562), not when ``unclip_core`` is imported:
most of them need torch, which takes about 1.5 s to import, and ``unclip --version``,
``--help`` or ``recipe ls`` have no use for it (docs/benchmarks.md, "Start-up").
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    **{name: "unclip_core.errors" for name in ("CheckpointError", "InputError", "PluginError", "RecipeError", "UnclipError")},
    "hookimpl": "unclip_core.hookspecs",
    **{
        name: "unclip_core.interfaces"
        for name in (
            "Autoencoder", "Component", "ComponentConfig", "Declared", "Decoder", "DecoderCondition", "Denoiser",
            "DiffusionModel", "Encoder", "LatentDecoder", "Prior", "PriorCondition", "Sampler", "StepInfo",
            "TextEncoding", "Upsampler", "UpsamplerCondition",
        )
    },
    "NoiseSchedule": "unclip_core.diffusion.schedule",
    "load_pipeline": "unclip_core.recipe.assemble",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'unclip_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from unclip_core.diffusion.schedule import NoiseSchedule
    from unclip_core.errors import CheckpointError, InputError, PluginError, RecipeError, UnclipError
    from unclip_core.hookspecs import hookimpl
    from unclip_core.interfaces import (
        Autoencoder, Component, ComponentConfig, Declared, Decoder, DecoderCondition, Denoiser, DiffusionModel,
        Encoder, LatentDecoder, Prior, PriorCondition, Sampler, StepInfo, TextEncoding, Upsampler, UpsamplerCondition,
    )
    from unclip_core.recipe.assemble import load_pipeline
