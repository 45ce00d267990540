"""Timestep spacing, the reverse-step posterior and variances, iDDPM's bound terms, and
slerp — each against diffusers, iDDPM's formulas written out with NumPy, or a hand value."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.diffusion.slerp import slerp, text_diff, text_diff_direction
from unclip_core.diffusion.spacing import inference_timesteps
from unclip_core.diffusion.variance import (
    discretized_gaussian_log_likelihood,
    log_variance,
    normal_kl,
    posterior_mean,
    posterior_variance,
    step_beta,
)
from unclip_core.errors import InputError

SCHEDULE = NoiseSchedule.from_name("linear", 1000)
F64 = torch.float64


# -------------------------------------------------------------------------------- spacing
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_train", [1000, 77])
def test_timesteps_are_diffusers_for_every_step_count(spacing, num_train):
    ddpm = DDPMScheduler(num_train_timesteps=num_train, timestep_spacing=spacing)
    ddim = DDIMScheduler(num_train_timesteps=num_train, timestep_spacing=spacing)
    for steps in range(1, num_train + 1):
        ours = inference_timesteps(num_train, steps, spacing)
        ddpm.set_timesteps(steps)
        reference = ddpm.timesteps.tolist()
        if steps % 10 == 1:  # DDIMScheduler repeats DDPMScheduler's formulas; spot-check it
            ddim.set_timesteps(steps)
            assert ddim.timesteps.tolist() == reference
        assert len(ours) == steps and all(0 <= t < num_train for t in ours)
        if len(reference) == steps:
            assert ours == reference, steps
        else:  # diffusers' float arange overshoots by one, to a timestep of -1
            assert spacing == "trailing" and reference[:steps] == ours and reference[steps:] == [-1]


def test_spacing_hand_values_and_errors():
    assert inference_timesteps(1000, 4, "trailing") == [999, 749, 499, 249]
    assert inference_timesteps(1000, 4, "leading") == [750, 500, 250, 0]
    assert inference_timesteps(1000, 4, "linspace") == [999, 666, 333, 0]
    with pytest.raises(ValueError, match="exceeds the 1000 timesteps"):
        inference_timesteps(1000, 1001, "trailing")
    with pytest.raises(ValueError, match="at least 1"):
        inference_timesteps(1000, 0, "leading")
    with pytest.raises(ValueError, match="unknown timestep spacing"):
        inference_timesteps(1000, 10, "uniform")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- posterior, variance
def bayes_posterior(t: int, t_prev: int, x0: torch.Tensor, x_t: torch.Tensor):
    """q(x_prev | x_t, x0) by conditioning Gaussians directly: x_prev ~ N(√ᾱp x0, 1−ᾱp),
    x_t | x_prev ~ N(√(ᾱt/ᾱp) x_prev, 1 − ᾱt/ᾱp); precision-weighted mean."""
    abar = lambda s: 1.0 if s < 0 else float(SCHEDULE.alphas_cumprod[s])  # noqa: E731
    prior_var, ratio = 1 - abar(t_prev), abar(t) / abar(t_prev)
    lik_var = 1 - ratio
    var = 1 / (1 / prior_var + ratio / lik_var) if prior_var > 0 else 0.0
    if var == 0.0:
        return x0, 0.0
    mean = var * (math.sqrt(abar(t_prev)) * x0 / prior_var + math.sqrt(ratio) * x_t / lik_var)
    return mean, var


@pytest.mark.parametrize("t,t_prev", [(999, 899), (500, 499), (37, 12), (100, -1), (0, -1)])
def test_posterior_mean_and_variance_are_bayes(t, t_prev):
    g = torch.Generator().manual_seed(0)
    x0, x_t = torch.randn(2, 3, 4, 4, generator=g, dtype=F64), torch.randn(2, 3, 4, 4, generator=g, dtype=F64)
    mean, var = bayes_posterior(t, t_prev, x0, x_t)
    assert torch.allclose(posterior_mean(SCHEDULE, t, t_prev, x0, x_t), mean, atol=1e-10)
    assert math.isclose(float(posterior_variance(SCHEDULE, t, t_prev)), var, rel_tol=1e-9, abs_tol=1e-15)


def test_per_sample_timesteps_broadcast():
    g = torch.Generator().manual_seed(1)
    x0, x_t = torch.randn(3, 2, 5, generator=g, dtype=F64), torch.randn(3, 2, 5, generator=g, dtype=F64)
    t, t_prev = torch.tensor([999, 40, 0]), torch.tensor([998, 20, -1])
    batched = posterior_mean(SCHEDULE, t, t_prev, x0, x_t)
    logvar = log_variance(SCHEDULE, t, t_prev, "fixed_large", x_t)
    assert logvar.shape == (3, 1, 1)
    for b in range(3):
        one = posterior_mean(SCHEDULE, int(t[b]), int(t_prev[b]), x0[b : b + 1], x_t[b : b + 1])
        assert torch.allclose(batched[b : b + 1], one, atol=1e-12)
        assert torch.isclose(logvar[b, 0, 0], step_beta(SCHEDULE, int(t[b]), int(t_prev[b])).log())


@pytest.mark.parametrize("steps", [None, 10, 37])
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large", "learned_range"])
def test_log_variance_matches_diffusers(steps, variance_type):
    scheduler = DDPMScheduler(num_train_timesteps=1000, variance_type=variance_type, timestep_spacing="trailing")
    scheduler.alphas_cumprod = SCHEDULE.alphas_cumprod.clone()
    scheduler.one = torch.tensor(1.0, dtype=F64)
    if steps is None:
        pairs = [(t, t - 1) for t in (999, 500, 1, 0)]
    else:
        scheduler.set_timesteps(steps)
        visited = scheduler.timesteps.tolist()
        pairs = list(zip(visited, visited[1:] + [-1]))
    values = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(2), dtype=F64) * 2 - 1
    for t, t_prev in pairs:
        ref = scheduler._get_variance(t, predicted_variance=values)
        ref_log = ref if variance_type == "learned_range" else ref.log()
        ours = log_variance(SCHEDULE, t, t_prev, variance_type, values, values)
        assert torch.allclose(ours.expand_as(ref_log), ref_log.expand_as(ours), rtol=1e-12, atol=1e-12), (t, t_prev)


def iddpm_log_variances(betas: np.ndarray):
    """iDDPM's gaussian_diffusion.py tables (Nichol & Dhariwal), verbatim in NumPy."""
    alphas_cumprod = np.cumprod(1.0 - betas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
    large = np.log(np.append(posterior_variance[1], betas[1:]))
    return clipped, large, np.log(betas)


def test_clip_first_step_is_iddpm_posterior_log_variance_clipped():
    clipped, large, log_betas = iddpm_log_variances(SCHEDULE.betas.numpy())
    t = torch.arange(1000)
    like = torch.zeros(1000, 1, dtype=F64)
    v = torch.linspace(-1, 1, 1000, dtype=F64).reshape(-1, 1)
    small = log_variance(SCHEDULE, t, t - 1, "fixed_small", like, clip_first_step=True)
    fixed_large = log_variance(SCHEDULE, t, t - 1, "fixed_large", like, clip_first_step=True)
    learned = log_variance(SCHEDULE, t, t - 1, "learned_range", like, v, clip_first_step=True)
    frac = (v.squeeze(1).numpy() + 1) / 2
    np.testing.assert_allclose(small.squeeze(1).numpy(), clipped, rtol=1e-10)
    np.testing.assert_allclose(fixed_large.squeeze(1).numpy(), large, rtol=1e-10)
    np.testing.assert_allclose(learned.squeeze(1).numpy(), frac * log_betas + (1 - frac) * clipped, rtol=1e-10)
    # without the option the last step's β̃ is 0, floored at 1e-20 (diffusers)
    assert float(log_variance(SCHEDULE, 0, -1, "fixed_small", like[0])) == pytest.approx(math.log(1e-20))


def test_learned_range_endpoints_are_the_fixed_variances():
    like = torch.zeros(1, 1, dtype=F64)
    for v, fixed in ((-1.0, "fixed_small"), (1.0, "fixed_large")):
        values = torch.full((1, 1), v, dtype=F64)
        assert torch.allclose(
            log_variance(SCHEDULE, 600, 550, "learned_range", like, values), log_variance(SCHEDULE, 600, 550, fixed, like)
        )
    with pytest.raises(ValueError, match="unknown variance type"):
        log_variance(SCHEDULE, 5, 4, "fixed", like)


# ---------------------------------------------------------------------------- bound terms
def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    m1, m2, lv1, lv2 = (torch.randn(50, generator=g, dtype=F64) for _ in range(4))
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    assert torch.allclose(normal_kl(m1, lv1, m2, lv2), reference, atol=1e-12)


def test_discretized_gaussian_is_a_distribution_over_the_256_levels():
    levels = torch.linspace(-1, 1, 256, dtype=F64)
    for mean, log_scale in ((0.0, math.log(0.1)), (0.93, math.log(0.02)), (-0.4, math.log(1.5))):
        means = torch.full_like(levels, mean)
        log_probs = discretized_gaussian_log_likelihood(levels, means=means, log_scales=torch.full_like(levels, log_scale))
        assert float(log_probs.exp().sum()) == pytest.approx(1.0, abs=1e-9)
        normal = torch.distributions.Normal(torch.tensor(mean, dtype=F64), math.exp(log_scale))
        interior = int((levels - mean).abs().argmin())  # the level nearest the mean: its bin's Gaussian mass
        expected = normal.cdf(levels[interior] + 1 / 255) - normal.cdf(levels[interior] - 1 / 255)
        assert float(log_probs[interior]) == pytest.approx(math.log(float(expected)), rel=1e-9)
        edge = max(float(normal.cdf(levels[0] + 1 / 255)), 1e-12)  # the lowest bin reaches -∞; floored like iDDPM
        assert float(log_probs[0]) == pytest.approx(math.log(edge), rel=1e-9)


# ----------------------------------------------------------------------------------- slerp
def test_slerp_hand_values():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    b = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    assert torch.allclose(slerp(a, b, 0.5), (a + b) / math.sqrt(2), atol=1e-12)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-15)
    # per-sample θ; on a quarter circle θ=1/3 sits 30° from a
    third = slerp(a, b, torch.tensor([1 / 3, 2 / 3], dtype=F64))
    assert torch.allclose(third[0], torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6), 0.0], dtype=F64))
    assert torch.allclose(third[1], torch.tensor([0.0, math.cos(math.pi / 3), math.sin(math.pi / 3)], dtype=F64))


def test_slerp_stays_on_the_sphere_and_moves_at_constant_angular_speed():
    g = torch.Generator().manual_seed(4)
    a = torch.nn.functional.normalize(torch.randn(8, 64, generator=g, dtype=F64), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(8, 64, generator=g, dtype=F64), dim=-1)
    omega = torch.arccos((a * b).sum(-1))
    for theta in (0.1, 0.37, 0.9):
        z = slerp(a, b, theta)
        assert torch.allclose(z.norm(dim=-1), torch.ones(8, dtype=F64), atol=1e-12)
        assert torch.allclose(torch.arccos((a * z).sum(-1).clamp(-1, 1)), theta * omega, atol=1e-7)


def test_slerp_is_graceful_when_the_vectors_coincide():
    a = torch.nn.functional.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(5)), dim=-1)
    for b in (a.clone(), a + 1e-9):
        z = slerp(a, b, torch.tensor([0.0, 0.3, 0.5, 1.0]))
        assert torch.isfinite(z).all() and torch.allclose(z, a, atol=1e-6)
    half = slerp(a.half(), a.half(), 0.5)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()


def test_text_diff():
    z_t0 = torch.tensor([[1.0, 0.0, 0.0]])
    z_t1 = torch.tensor([[0.0, 1.0, 0.0]])
    z_d = text_diff_direction(z_t0, z_t1)
    assert torch.allclose(z_d, torch.tensor([[-1.0, 1.0, 0.0]]) / math.sqrt(2))
    z_i = torch.tensor([[0.0, 0.0, 1.0]])  # orthogonal to z_d: θ=0.5 is halfway on the quarter circle
    assert torch.allclose(text_diff(z_i, z_d, 0.5), (z_i + z_d) / math.sqrt(2))
    assert torch.equal(text_diff(z_i, z_d, 0.0), z_i)
    with pytest.raises(InputError, match="same embedding"):
        text_diff_direction(z_t0, z_t0.clone())


@pytest.mark.parametrize("name, start, end", [("linear", 1e-4, 2e-2), ("linear", 8.5e-4, 1.2e-2), ("scaled_linear", 8.5e-4, 1.2e-2)])
def test_linear_schedules_are_diffusers_values_exactly(name, start, end):
    """diffusers spaces its linear schedules in float32; its betas, not a float64 spacing's
    (which differ in the last bits and moved a 25-step float32 DDIM run by 5e-3)."""
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule=name, beta_start=start, beta_end=end).betas
    assert torch.equal(NoiseSchedule.from_name(name, 1000, start, end).betas.float(), reference)
