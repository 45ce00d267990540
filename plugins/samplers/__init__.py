"""Built-in samplers: ``ddpm`` (ancestral) and ``ddim`` (deterministic, invertible)."""
from __future__ import annotations

from unclip_core import hookimpl

from .ddim import DDIMConfig, DDIMSampler
from .ddpm import DDPMConfig, DDPMSampler


@hookimpl
def register_samplers(register):
    register("ddpm", DDPMSampler, DDPMConfig, summary="Ancestral DDPM sampling (Ho et al. 2020) with respacing and learned variances.")
    register("ddim", DDIMSampler, DDIMConfig, summary="DDIM (Song et al. 2021): deterministic at eta=0, with inversion to x_T.")


__all__ = ["DDIMConfig", "DDIMSampler", "DDPMConfig", "DDPMSampler", "register_samplers"]
