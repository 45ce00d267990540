"""The unCLIP diffusion prior, registered as ``diffusion-prior``."""
from __future__ import annotations

from unclip_core import hookimpl
from unclip_plugins.diffusion_prior.config import DiffusionPriorConfig
from unclip_plugins.diffusion_prior.model import DiffusionPrior, select_best_candidates

__all__ = ["DiffusionPrior", "DiffusionPriorConfig", "select_best_candidates"]


@hookimpl
def register_priors(register):
    register(
        "diffusion-prior",
        DiffusionPrior,
        DiffusionPriorConfig,
        summary="unCLIP's diffusion prior: a causal transformer (diffusers PriorTransformer) "
        "predicting the CLIP image embedding from the caption",
    )
