"""unclip: a plugin-based framework for unCLIP (DALL·E 2) image generation."""
from unclip_core.errors import CheckpointError, InputError, PluginError, RecipeError, UnclipError
from unclip_core.hookspecs import hookimpl
from unclip_core.interfaces import (
    Component,
    ComponentConfig,
    Declared,
    DecoderCondition,
    Decoder,
    Denoiser,
    DiffusionModel,
    Encoder,
    Prior,
    PriorCondition,
    Sampler,
    StepInfo,
    TextEncoding,
    Upsampler,
    UpsamplerCondition,
)
from unclip_core.diffusion.schedule import NoiseSchedule

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "InputError", "PluginError", "RecipeError", "UnclipError", "hookimpl",
    "Component", "ComponentConfig", "Declared", "Decoder", "DecoderCondition", "Denoiser",
    "DiffusionModel", "Encoder", "NoiseSchedule", "Prior", "PriorCondition", "Sampler",
    "StepInfo", "TextEncoding", "Upsampler", "UpsamplerCondition",
]


def load_pipeline(recipe=None, overrides=(), registry=None):
    """Validate and build a pipeline from a recipe (see :func:`unclip_core.recipe.assemble.load_pipeline`)."""
    from unclip_core.recipe.assemble import load_pipeline as _load

    return _load(recipe, overrides, registry)


__all__ += ["load_pipeline"]
