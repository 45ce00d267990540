"""The ``diffusers-scheduler`` adapter: diffusers' schedulers given the model's schedule and
prediction type, checked against the built-in samplers that implement the same algorithm.

* DDIMScheduler equals ``ddim`` (η = 0 and, through ``step_kwargs``, η = 0.5) wherever
  diffusers' DDIM visits the same steps (see test_samplers_parity for where it does not);
* DDPMScheduler equals ``ddpm`` for every variance type, learned included (leading spacing,
  whose last step is t = 0: with later last steps diffusers adds noise on the way to x0);
* DPMSolverMultistepScheduler equals ``dpm-solver++``: to 1e-10 with diffusers' float32
  guards lifted as in test_dpm_solver (its σ table and the sample upcast are float32), and
  to 1e-4 as shipped.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_dpmsolver_multistep

from test_samplers_parity import SCHEDULE, SHAPE, FunctionDenoiser, smooth_model
from unclip_core.errors import RecipeError, UnclipError
from unclip_core.interfaces import StepInfo
from unclip_core.recipe.files import load_recipe
from unclip_core.contracts import check_component
from unclip_plugins.samplers import (
    DDIMConfig,
    DDIMSampler,
    DDPMConfig,
    DDPMSampler,
    DiffusersSchedulerConfig,
    DiffusersSchedulerSampler,
    DPMSolverConfig,
    DPMSolverSampler,
)


def adapter(scheduler: str, **settings) -> DiffusersSchedulerSampler:
    return DiffusersSchedulerSampler(DiffusersSchedulerConfig(scheduler=scheduler, **settings))


def run(sampler, denoiser, seed: int = 1) -> tuple[torch.Tensor, list[StepInfo]]:
    steps: list[StepInfo] = []
    out = sampler.sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(seed), callback=steps.append)
    return out, steps


@pytest.fixture
def float64_dpm_solver(monkeypatch):
    """diffusers' DPM-Solver module with its float32 (torch and NumPy) pointed at float64."""

    class Float64(types.SimpleNamespace):
        def __getattr__(self, name):
            return getattr(self.module, name)

    monkeypatch.setattr(scheduling_dpmsolver_multistep, "torch", Float64(module=torch, float32=torch.float64))
    monkeypatch.setattr(scheduling_dpmsolver_multistep, "np", Float64(module=np, float32=np.float64))


@pytest.mark.parametrize("spacing,steps", [("leading", 10), ("leading", 30), ("trailing", 10), ("trailing", 25)])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_scheduler_equals_ddim(spacing, steps, prediction_type, clip, eta):
    denoiser = FunctionDenoiser(smooth_model(False), prediction_type)
    got, got_steps = run(adapter("DDIMScheduler", steps=steps, timestep_spacing=spacing, clip_denoised=clip, step_kwargs={"eta": eta}), denoiser)
    want, want_steps = run(DDIMSampler(DDIMConfig(steps=steps, timestep_spacing=spacing, clip_denoised=clip, eta=eta)), denoiser)
    assert [s.t for s in got_steps] == [s.t for s in want_steps]
    assert (got - want).abs().max() <= 1e-10
    for a, b in zip(got_steps, want_steps):
        assert (a.x0 - b.x0).abs().max() <= 1e-10 and (a.x - b.x).abs().max() <= 1e-10


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large", "learned_range"])
@pytest.mark.parametrize("prediction_type", ["eps", "v"])
def test_ddpm_scheduler_equals_ddpm_with_the_models_variance(variance_type, prediction_type):
    denoiser = FunctionDenoiser(smooth_model(variance_type == "learned_range"), prediction_type, variance_type)
    got, _ = run(adapter("DDPMScheduler", steps=10, timestep_spacing="leading"), denoiser, seed=5)
    want, _ = run(DDPMSampler(DDPMConfig(steps=10, timestep_spacing="leading")), denoiser, seed=5)
    assert (got - want).abs().max() <= 1e-10


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 25])
@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [True, False])
def test_dpm_solver_scheduler_equals_dpm_solver(float64_dpm_solver, steps, spacing, prediction_type, clip):
    denoiser = FunctionDenoiser(smooth_model(False), prediction_type)
    settings = {"steps": steps, "timestep_spacing": spacing, "clip_denoised": clip}
    got, got_steps = run(adapter("DPMSolverMultistepScheduler", **settings), denoiser)
    want, want_steps = run(DPMSolverSampler(DPMSolverConfig(**settings)), denoiser)
    assert [s.t for s in got_steps] == [s.t for s in want_steps]
    assert (got - want).abs().max() <= 1e-10


@pytest.mark.parametrize("spacing", ["trailing", "leading"])
def test_dpm_solver_scheduler_as_shipped_is_close(spacing):
    denoiser = FunctionDenoiser(smooth_model(False), "eps")
    got, _ = run(adapter("DPMSolverMultistepScheduler", steps=15, timestep_spacing=spacing), denoiser)
    want, _ = run(DPMSolverSampler(DPMSolverConfig(steps=15, timestep_spacing=spacing)), denoiser)
    assert (got - want).abs().max() <= 1e-4


def test_a_scheduler_without_x0_support_is_given_eps():
    """EulerAncestral refuses prediction_type "sample": an x0 model must sample exactly as
    the same model wrapped to predict eps."""
    fn = smooth_model(False)

    def as_eps(x, t):
        abar = SCHEDULE.alpha_bar(t).reshape(-1, 1, 1, 1)
        return (x - abar.sqrt() * fn(x, t)) / (1 - abar).sqrt()

    sampler = adapter("EulerAncestralDiscreteScheduler", steps=8, clip_denoised=False)
    got, steps = run(sampler, FunctionDenoiser(fn, "x0"))
    want, _ = run(sampler, FunctionDenoiser(as_eps, "eps"))
    assert len(steps) == 8 and torch.allclose(got, want, atol=1e-8)


@pytest.mark.parametrize(
    "scheduler, settings",
    [
        ("EulerDiscreteScheduler", {}),
        ("HeunDiscreteScheduler", {}),
        ("UniPCMultistepScheduler", {}),
        ("DPMSolverMultistepScheduler", {}),
        ("DPMSolverSinglestepScheduler", {}),
        ("DDIMScheduler", {}),
        ("DDPMScheduler", {"timestep_spacing": "leading"}),
    ],
)
def test_keeps_the_sampler_contract(scheduler, settings):
    check_component("sampler", DiffusersSchedulerSampler, DiffusersSchedulerConfig(scheduler=scheduler, steps=4, **settings))


# ----------------------------------------------------------------------------------- errors
def recipe_error(registry, tiny_recipe_path, config: str) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(tiny_recipe_path, [f"decoder.sampler={{type: diffusers-scheduler, config: {config}}}"], registry=registry)
    text = str(caught.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize(
    "config, expected",
    [
        ("{scheduler: EulerDiscrete}", "decoder.sampler.config.scheduler: .*unknown diffusers scheduler 'EulerDiscrete' \\(did you mean 'EulerDiscreteScheduler'\\?\\)"),
        ("{scheduler: FlowMatchEulerDiscreteScheduler}", "takes no trained_betas, so it cannot follow the model's noise schedule"),
        ("{scheduler: EulerDiscreteScheduler, scheduler_config: {interpolaton_type: log}}", "no setting 'interpolaton_type' \\(did you mean 'interpolation_type'\\?\\)"),
        ("{scheduler: DPMSolverMultistepScheduler, scheduler_config: {algorithm_type: foo}}", "DPMSolverMultistepScheduler refused its settings: foo is not implemented"),
        ("{scheduler: DDIMScheduler, scheduler_config: {prediction_type: sample}}", "scheduler_config.prediction_type is taken from the model"),
        ("{scheduler: DDIMScheduler, scheduler_config: {trained_betas: [0.1]}}", "scheduler_config.trained_betas is taken from the model"),
        ("{scheduler: DDIMScheduler, scheduler_config: {timestep_spacing: leading}}", "set timestep_spacing as the sampler's own setting"),
        ("{scheduler: DDIMScheduler, step_kwargs: {etaa: 1}}", "DDIMScheduler.step has no argument 'etaa' \\(did you mean 'eta'\\?\\)"),
        ("{scheduler: RePaintScheduler}", "RePaintScheduler.step needs original_image, mask, which a sampler cannot supply"),
        ("{}", "decoder.sampler.config.scheduler: required setting is missing"),
    ],
)
def test_bad_settings_fail_recipe_validation_in_one_line(registry, tiny_recipe_path, config, expected):
    import re

    assert re.search(expected, recipe_error(registry, tiny_recipe_path, config))


def test_fractional_timesteps_and_too_many_steps_are_refused_with_the_reason():
    denoiser = FunctionDenoiser(smooth_model(False))
    with pytest.raises(UnclipError, match="visits timestep 499.5, but the model takes integer training timesteps"):
        run(adapter("EulerDiscreteScheduler", steps=3, timestep_spacing="linspace"), denoiser)
    with pytest.raises(UnclipError, match="steps=2000 exceeds the 1000 timesteps"):
        run(adapter("DDIMScheduler", steps=2000), denoiser)


def test_runs_in_the_tiny_pipeline(registry, tiny_recipe_path):
    from unclip_core.recipe.assemble import build_pipeline

    overrides = [
        "decoder.sampler={type: diffusers-scheduler, config: {scheduler: UniPCMultistepScheduler, steps: 3}}",
        "upsamplers.0.sampler={type: diffusers-scheduler, config: {scheduler: EulerDiscreteScheduler, steps: 2}}",
    ]
    pipeline = build_pipeline(load_recipe(tiny_recipe_path, overrides, registry=registry), registry)
    images = pipeline.generate("a red circle", seed=3)
    assert images[0].size == (32, 32)
    assert pipeline.generate("a red circle", seed=3)[0].tobytes() == images[0].tobytes()
