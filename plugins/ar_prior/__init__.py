"""unCLIP's autoregressive prior, registered as ``ar-prior``."""
from __future__ import annotations

from unclip_core import hookimpl
from unclip_plugins.ar_prior.codebook import PCACodebook
from unclip_plugins.ar_prior.config import ARPriorConfig
from unclip_plugins.ar_prior.model import ARPrior

__all__ = ["ARPrior", "ARPriorConfig", "PCACodebook"]


@hookimpl
def register_priors(register):
    register(
        "ar-prior",
        ARPrior,
        ARPriorConfig,
        summary="unCLIP's autoregressive prior: a causal transformer predicting the CLIP image "
        "embedding's quantised PCA codes from the caption (no sampler)",
    )
