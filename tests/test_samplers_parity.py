"""The ``ddpm`` and ``ddim`` samplers against diffusers' own schedulers, step by step.

Both sides run the same smooth random "model" in float64 on the same schedule; diffusers'
schedulers get that schedule's float64 ᾱ (they keep float32 by default) and the same noise
(DDPM: the same seeded generator, drawn in the same order; DDIM: the noise passed in).

Known, deliberate differences from diffusers, kept out of the comparison:
* with ``trailing`` spacing the last step starts at t > 0 and diffusers' DDPMScheduler
  still adds noise on the way to the clean sample; we add none (as DDPM and iDDPM do), so
  our last sample is compared with diffusers' predicted x0 of that step;
* DDIMScheduler steps to ``t − T // steps`` instead of the next visited timestep, which
  differs for ``linspace`` and for step counts not dividing T; those are not compared.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler

from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.diffusion.spacing import inference_timesteps
from unclip_core.errors import InputError, UnclipError
from unclip_core.interfaces import Denoiser, StepInfo
from unclip_plugins.samplers import DDIMConfig, DDIMSampler, DDPMConfig, DDPMSampler

T = 1000
SHAPE = (2, 3, 4, 4)
DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
SCHEDULE = NoiseSchedule.from_name("linear", T)


@dataclass
class FunctionDenoiser:
    """A stand-in for a model: any function of (x_t, t), with the Denoiser attributes."""

    fn: object
    prediction_type: str = "eps"
    variance_type: str = "fixed_small"
    schedule: NoiseSchedule = SCHEDULE
    clip_range: float | None = 1.0
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float64
    timesteps_seen: list = field(default_factory=list)

    def __call__(self, x_t, t):
        assert t.dtype == torch.long and t.shape == (x_t.shape[0],)
        self.timesteps_seen.append(int(t[0]))
        return self.fn(x_t, t)


def smooth_model(learned_variance: bool, seed: int = 0):
    """A fixed random smooth function of x_t and t; 1.5·tanh so that clipping x0 bites,
    plus (learned variance) a second half of values in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    out_channels = 2 * SHAPE[1] if learned_variance else SHAPE[1]
    mix = torch.randn(out_channels, SHAPE[1], generator=g, dtype=torch.float64) / math.sqrt(SHAPE[1])
    phase = torch.randn(out_channels, 1, 1, generator=g, dtype=torch.float64)
    scale = torch.full((out_channels, 1, 1), 1.5, dtype=torch.float64)
    scale[SHAPE[1]:] = 1.0

    def fn(x, t):
        time = (t.to(torch.float64) / T).reshape(-1, 1, 1, 1)
        out = scale * torch.tanh(torch.einsum("oc,bchw->bohw", mix, x.double()) + torch.sin(3 * time + phase))
        return out.to(x.dtype)

    return fn


def use_float64(scheduler, schedule: NoiseSchedule):
    """Give a diffusers scheduler our float64 ᾱ instead of its float32 copy."""
    assert torch.allclose(scheduler.alphas_cumprod.double(), schedule.alphas_cumprod, rtol=1e-5)
    scheduler.betas = schedule.betas.clone()
    scheduler.alphas = 1 - schedule.betas
    scheduler.alphas_cumprod = schedule.alphas_cumprod.clone()
    one = torch.tensor(1.0, dtype=torch.float64)
    for name in ("one", "final_alpha_cumprod", "initial_alpha_cumprod"):
        if hasattr(scheduler, name):
            setattr(scheduler, name, one)
    return scheduler


def record(steps: list[StepInfo]):
    return lambda info: steps.append(info)


# ----------------------------------------------------------------------------------- DDPM
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large", "learned_range"])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_matches_diffusers_step_by_step(variance_type, prediction_type, spacing, steps, clip):
    fn = smooth_model(variance_type == "learned_range")
    denoiser = FunctionDenoiser(fn, prediction_type, variance_type)
    ours: list[StepInfo] = []
    DDPMSampler(DDPMConfig(steps=steps, timestep_spacing=spacing, clip_denoised=clip)).sample(
        denoiser, SHAPE, generator=torch.Generator().manual_seed(7), callback=record(ours)
    )

    scheduler = DDPMScheduler(
        num_train_timesteps=T,
        variance_type=variance_type,
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
        clip_sample=clip,
        clip_sample_range=1.0,
        timestep_spacing=spacing,
    )
    scheduler.set_timesteps(steps)
    use_float64(scheduler, SCHEDULE)
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    assert [info.t for info in ours] == scheduler.timesteps.tolist()
    for info, t in zip(ours, scheduler.timesteps):
        ref = scheduler.step(fn(x, t.repeat(SHAPE[0])), int(t), x, generator=generator)
        last = info.index == len(ours) - 1
        expected = ref.pred_original_sample if last else ref.prev_sample
        assert (info.x - expected).abs().max() <= 1e-5, f"step {info.index} (t={int(t)})"
        assert (info.x0 - ref.pred_original_sample).abs().max() <= 1e-5
        x = ref.prev_sample


# ----------------------------------------------------------------------------------- DDIM
DDIM_CASES = [("leading", 10), ("leading", 30), ("trailing", 10), ("trailing", 25)]


@pytest.mark.parametrize("spacing,steps", DDIM_CASES)
@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_matches_diffusers_step_by_step(spacing, steps, eta, prediction_type, clip, variance_type="fixed_small"):
    fn = smooth_model(variance_type == "learned_range")
    denoiser = FunctionDenoiser(fn, prediction_type, variance_type)
    ours: list[StepInfo] = []
    sampler = DDIMSampler(DDIMConfig(steps=steps, eta=eta, timestep_spacing=spacing, clip_denoised=clip))
    sampler.sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(3), callback=record(ours))

    scheduler = DDIMScheduler(
        num_train_timesteps=T,
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
        clip_sample=clip,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
        timestep_spacing=spacing,
    )
    scheduler.set_timesteps(steps)
    use_float64(scheduler, SCHEDULE)
    generator = torch.Generator().manual_seed(3)  # x_T, then one draw per noisy step (none into x_0)
    x = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    assert [info.t for info in ours] == scheduler.timesteps.tolist()
    for info, t in zip(ours, scheduler.timesteps):
        last = info.index == len(ours) - 1
        noise = torch.zeros(SHAPE, dtype=torch.float64)
        if eta > 0 and not last:
            noise = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        out = fn(x, t.repeat(SHAPE[0]))[:, : SHAPE[1]]  # a learned variance is ignored
        # iDDPM/guided-diffusion re-derive eps from the clipped x0, which diffusers calls
        # use_clipped_model_output.
        ref = scheduler.step(out, int(t), x, eta=eta, use_clipped_model_output=True, variance_noise=noise)
        assert (info.x - ref.prev_sample).abs().max() <= 1e-5, f"step {info.index} (t={int(t)})"
        assert (info.x0 - ref.pred_original_sample).abs().max() <= 1e-5
        x = ref.prev_sample


@pytest.mark.parametrize("prediction_type", ["eps", "v"])
def test_ddim_ignores_a_learned_variance(prediction_type):
    test_ddim_matches_diffusers_step_by_step("trailing", 10, 0.5, prediction_type, True, "learned_range")


@pytest.mark.parametrize("spacing,steps", DDIM_CASES)
def test_ddim_inversion_matches_diffusers_inverse_scheduler(spacing, steps):
    fn = smooth_model(False)
    denoiser = FunctionDenoiser(fn, "eps")
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    ours: list[StepInfo] = []
    x_T = DDIMSampler(DDIMConfig(steps=steps, timestep_spacing=spacing)).invert(denoiser, x0, callback=record(ours))

    inverse = DDIMInverseScheduler(num_train_timesteps=T, clip_sample=False, timestep_spacing=spacing)
    inverse.set_timesteps(steps)
    use_float64(inverse, SCHEDULE)
    x = x0
    for info, t in zip(ours, inverse.timesteps):
        x = inverse.step(fn(x, t.repeat(SHAPE[0])), int(t), x).prev_sample
        assert info.t == int(t)
        assert (info.x - x).abs().max() <= 1e-5, f"inversion step {info.index} (t={int(t)})"
    assert len(ours) == steps
    assert (x_T - x).abs().max() <= 1e-5


# ------------------------------------------------------------------------------ inversion
def exact_single_point_model(x0_star: torch.Tensor, prediction_type: str):
    """The ideal denoiser for data that is one point x0*: the exact eps (or x0, v) for any x_t."""

    def fn(x, t):
        abar = SCHEDULE.alpha_bar(t).reshape(-1, 1, 1, 1)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        eps = (x - a * x0_star) / s
        return {"eps": eps, "x0": x0_star.expand_as(x), "v": a * eps - s * x0_star}[prediction_type]

    return fn


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_ddim_inversion_then_sampling_reconstructs_for_an_exact_model(prediction_type, spacing):
    x0_star = torch.rand(SHAPE, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 1.8 - 0.9
    denoiser = FunctionDenoiser(exact_single_point_model(x0_star, prediction_type), prediction_type)
    sampler = DDIMSampler(DDIMConfig(steps=50, eta=0.0, timestep_spacing=spacing))
    x_T = sampler.invert(denoiser, x0_star)
    assert not torch.allclose(x_T, x0_star)
    rebuilt = sampler.sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(0), x_T=x_T)
    assert (rebuilt - x0_star).norm() / x0_star.norm() <= 1e-3


def gaussian_data_model(mean: float, std: float):
    """The exact eps-predictor for data x0 ~ N(mean, std² I): E[eps | x_t] in closed form."""

    def fn(x, t):
        abar = SCHEDULE.alpha_bar(t).reshape(-1, 1, 1, 1)
        return (1 - abar).sqrt() * (x - abar.sqrt() * mean) / (abar * std**2 + 1 - abar)

    return fn


def exact_flow_map(x0: torch.Tensor, t: int, mean: float, std: float) -> torch.Tensor:
    """Where the probability-flow ODE carries x0 by timestep t, for Gaussian data. In
    x̄ = x/√ᾱ, σ = √((1−ᾱ)/ᾱ) DDIM's ODE is dx̄/dσ = eps, solved by x̄ − m = (x0 − m)·√(s²+σ²)/s."""
    abar = SCHEDULE.alpha_bar(t)
    sigma2 = (1 - abar) / abar
    return abar.sqrt() * (mean + (x0 - mean) * torch.sqrt(std**2 + sigma2) / std)


def test_ddim_converges_to_the_exact_ode_map_both_ways():
    """A non-degenerate check (x0 is not the only data point): DDIM is Euler's method on the
    probability-flow ODE, so both inversion (x0 → x_T) and sampling (exact x_T → x0) must be
    close at 50 steps and their errors must halve with twice the steps (first order)."""
    mean, std = 0.3, 0.5
    denoiser = FunctionDenoiser(gaussian_data_model(mean, std), "eps")
    x0 = mean + std * torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exact_x_T = exact_flow_map(x0, T - 1, mean, std)
    relative = lambda got, want: float((got - want).norm() / want.norm())  # noqa: E731
    inversion_errors, sampling_errors = [], []
    for steps in (50, 100):
        sampler = DDIMSampler(DDIMConfig(steps=steps, clip_denoised=False))
        inversion_errors.append(relative(sampler.invert(denoiser, x0), exact_x_T))
        sampled = sampler.sample(denoiser, SHAPE, generator=torch.Generator(), x_T=exact_x_T)
        sampling_errors.append(relative(sampled, x0))
    assert inversion_errors[0] <= 0.04 and sampling_errors[0] <= 0.07, (inversion_errors, sampling_errors)
    for errors in (inversion_errors, sampling_errors):
        assert 1.7 <= errors[0] / errors[1] <= 2.3, errors


# ---------------------------------------------------------------------- shared behaviour
SAMPLERS = [
    pytest.param(lambda: DDPMSampler(DDPMConfig(steps=8)), id="ddpm"),
    pytest.param(lambda: DDIMSampler(DDIMConfig(steps=8, eta=0.7)), id="ddim"),
]


@pytest.mark.parametrize("make", SAMPLERS)
def test_same_seed_same_output_and_different_seed_different(make):
    denoiser = FunctionDenoiser(smooth_model(False))
    run = lambda seed: make().sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(11), run(11))
    assert not torch.allclose(run(11), run(12))


@pytest.mark.parametrize("make", SAMPLERS)
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_callback_sees_every_step_in_order(make, spacing):
    sampler = make()
    sampler.config = sampler.config.model_copy(update={"timestep_spacing": spacing})
    denoiser = FunctionDenoiser(smooth_model(False))
    steps: list[StepInfo] = []
    out = sampler.sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(0), callback=record(steps))
    expected_t = inference_timesteps(T, 8, spacing)
    assert [s.index for s in steps] == list(range(8))
    assert {s.total for s in steps} == {8}
    assert [s.t for s in steps] == expected_t == denoiser.timesteps_seen
    assert torch.equal(steps[-1].x, out)
    assert all(s.x0 is not None and s.x0.shape == SHAPE for s in steps)


@pytest.mark.parametrize("make", SAMPLERS)
def test_runs_without_grad_and_uses_the_denoisers_dtype(make):
    denoiser = FunctionDenoiser(smooth_model(False), dtype=torch.float32)
    with torch.enable_grad():
        out = make().sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and not out.requires_grad


def test_given_x_T_is_used_instead_of_a_draw():
    denoiser = FunctionDenoiser(smooth_model(False))
    sampler = DDIMSampler(DDIMConfig(steps=5))
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = sampler.sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(0), x_T=x_T)
    b = sampler.sample(denoiser, SHAPE, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def test_bad_inputs_give_clear_errors():
    denoiser = FunctionDenoiser(smooth_model(False))
    with pytest.raises(InputError, match="x_T has shape"):
        DDIMSampler(DDIMConfig()).sample(denoiser, SHAPE, generator=torch.Generator(), x_T=torch.zeros(1, 3, 4, 4))
    with pytest.raises(UnclipError, match="steps=2000 exceeds"):
        DDPMSampler(DDPMConfig(steps=2000)).sample(denoiser, SHAPE, generator=torch.Generator())
    wrong_channels = FunctionDenoiser(smooth_model(False), variance_type="learned_range")
    with pytest.raises(UnclipError, match="learned_range denoiser must return 6 channels"):
        DDPMSampler(DDPMConfig(steps=3)).sample(wrong_channels, SHAPE, generator=torch.Generator())
    with pytest.raises(ValueError):
        DDIMConfig(stpes=10)
    with pytest.raises(ValueError):
        DDIMConfig(eta=-0.1)


def test_registered_through_the_entry_point_with_documented_settings(monkeypatch):
    from unclip_core.registry import discover

    monkeypatch.setenv("UNCLIP_PLUGINS", "samplers")  # only the built-in samplers' entry point
    registry = discover()
    for name, cls in (("ddpm", DDPMSampler), ("ddim", DDIMSampler)):
        spec = registry.get("sampler", name)
        assert spec.factory is cls and spec.summary
        sampler = spec.build(spec.config_model())
        assert isinstance(sampler, cls)
        schema = spec.config_model.model_json_schema()
        assert schema["additionalProperties"] is False
        assert all(prop.get("description") for prop in schema["properties"].values())
    assert DDPMConfig().steps == 100 and DDIMConfig().steps == 50
    assert DDPMConfig().timestep_spacing == "trailing" and DDIMConfig().eta == 0.0


def test_bound_denoiser_satisfies_the_protocol():
    assert isinstance(FunctionDenoiser(smooth_model(False)), Denoiser)


@pytest.mark.parametrize("sampler", [DDPMSampler(DDPMConfig(steps=4)), DDIMSampler(DDIMConfig(steps=4)), "unclip-scheduler"],
                         ids=["ddpm", "ddim", "unclip-scheduler"])
def test_img2img_refuses_a_strength_outside_0_1_naming_the_sampler(sampler):
    """The single-step samplers' shared img2img start refuses a bad strength with the framework's
    one-line error, naming the sampler (as Karlo's sampler did before it shared the loop)."""
    if sampler == "unclip-scheduler":
        from unclip_plugins.karlo import UnclipSchedulerConfig, UnclipSchedulerSampler

        sampler = UnclipSchedulerSampler(UnclipSchedulerConfig(steps=4))
    x0 = torch.zeros(SHAPE, dtype=torch.float64)
    with pytest.raises(UnclipError, match=rf"^sampler '{sampler.name}': strength must be a number in \[0, 1\], got 1.5$"):
        sampler.sample_from(FunctionDenoiser(lambda x, t: x, "x0"), x0, 1.5, generator=torch.Generator())
