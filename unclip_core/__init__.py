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
