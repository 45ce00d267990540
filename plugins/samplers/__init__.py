"""Built-in samplers: ``ddpm`` (ancestral), ``ddim`` (deterministic, invertible),
``dpm-solver++`` (second-order multistep) and ``diffusers-scheduler`` (any diffusers scheduler)."""
from __future__ import annotations

from unclip_core import hookimpl

from .ddim import DDIMConfig, DDIMSampler
from .ddpm import DDPMConfig, DDPMSampler
from .diffusers_adapter import DiffusersSchedulerConfig, DiffusersSchedulerSampler
from .dpm_solver import DPMSolverConfig, DPMSolverSampler
from .saved_scheduler import SavedSchedulerConfig, SavedSchedulerSampler


@hookimpl
def register_samplers(register):
    register("ddpm", DDPMSampler, DDPMConfig, summary="Ancestral DDPM sampling (Ho et al. 2020) with respacing and learned variances.")
    register("ddim", DDIMSampler, DDIMConfig, summary="DDIM (Song et al. 2021): deterministic at eta=0, with inversion to x_T.",
             roles=("inversion",))
    register(
        "dpm-solver++",
        DPMSolverSampler,
        DPMSolverConfig,
        summary="DPM-Solver++ 2M (Lu et al. 2022): deterministic second-order multistep, good in 10-25 steps.",
    )
    register(
        "diffusers-scheduler",
        DiffusersSchedulerSampler,
        DiffusersSchedulerConfig,
        summary="Any diffusers scheduler class by name (Euler, UniPC, Heun, ...), given the model's schedule.",
    )
    register(
        "diffusers-saved-scheduler",
        SavedSchedulerSampler,
        SavedSchedulerConfig,
        summary="A diffusers scheduler exactly as a model folder saved it, run as its pipeline runs it (importers' parity).",
    )


__all__ = [
    "DDIMConfig",
    "DDIMSampler",
    "DDPMConfig",
    "DDPMSampler",
    "DPMSolverConfig",
    "DPMSolverSampler",
    "DiffusersSchedulerConfig",
    "DiffusersSchedulerSampler",
    "SavedSchedulerConfig",
    "SavedSchedulerSampler",
    "register_samplers",
]
