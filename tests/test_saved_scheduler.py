"""``diffusers-saved-scheduler`` against diffusers' schedulers driven by hand the way their
pipelines drive them (text-to-image and img2img loops), on a fixed toy model: same timesteps,
same updates, same random draws — bit for bit; and a scheduler whose noise schedule is not the
model's is refused in one line."""
from __future__ import annotations

import pytest
import torch

from unclip_core import NoiseSchedule
from unclip_core.errors import UnclipError

WEIGHT = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))


def model(x: torch.Tensor, t) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1)[0]
    return torch.tanh(torch.einsum("bchw,cd->bdhw", x, WEIGHT) * (1 + t / 1000))


class Denoiser:
    variance_type = "fixed_small"
    clip_range = None
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, prediction_type: str, schedule: NoiseSchedule):
        self.prediction_type, self.schedule = prediction_type, schedule

    def __call__(self, x, t):
        return model(x, t)


CASES = {
    "DDIMScheduler": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
                          set_alpha_to_one=False, steps_offset=1, clip_sample=True),
    "DDPMScheduler": dict(beta_schedule="squaredcos_cap_v2", prediction_type="epsilon", variance_type="fixed_small_log",
                          clip_sample=True, clip_sample_range=5.0),
}
SCHEDULES = {"DDIMScheduler": NoiseSchedule.from_name("scaled_linear", 1000, 0.00085, 0.012),
             "DDPMScheduler": NoiseSchedule.from_name("cosine", 1000)}
PREDICTION = {"v_prediction": "v", "epsilon": "eps"}


def sampler(name: str, steps: int):
    from unclip_core.registry import discover

    spec = discover().get("sampler", "diffusers-saved-scheduler")
    return spec.build(spec.config_model(scheduler=name, scheduler_config=CASES[name], steps=steps))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("steps", [3, 20])
def test_sample_is_the_pipelines_loop(name, steps):
    import diffusers

    scheduler = getattr(diffusers, name)(**CASES[name])
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 4, 4, 4), generator=generator) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.step(model(scheduler.scale_model_input(x, t), t), t, x, generator=generator).prev_sample
    denoiser = Denoiser(PREDICTION[CASES[name]["prediction_type"]], SCHEDULES[name])
    ours = sampler(name, steps).sample(denoiser, (2, 4, 4, 4), generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours, x)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("strength", [0.3, 0.75, 1.0])
def test_sample_from_is_the_img2img_pipelines_loop(name, strength):
    import diffusers

    steps = 8
    x0 = torch.rand((2, 4, 4, 4), generator=torch.Generator().manual_seed(5)) * 2 - 1
    scheduler = getattr(diffusers, name)(**CASES[name])
    scheduler.set_timesteps(steps)
    start = steps - min(int(steps * strength), steps)  # diffusers' get_timesteps
    timesteps = scheduler.timesteps[start:]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(x0.shape, generator=generator)
    x = scheduler.add_noise(x0, noise, timesteps[:1].repeat(2))
    for t in timesteps:
        x = scheduler.step(model(scheduler.scale_model_input(x, t), t), t, x, generator=generator).prev_sample
    denoiser = Denoiser(PREDICTION[CASES[name]["prediction_type"]], SCHEDULES[name])
    ours = sampler(name, steps).sample_from(denoiser, x0, strength, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours, x)
    assert torch.equal(sampler(name, steps).sample_from(denoiser, x0, 0.0, generator=torch.Generator()), x0)


def test_a_scheduler_of_another_noise_schedule_is_refused():
    denoiser = Denoiser("v", NoiseSchedule.from_name("cosine", 1000))
    with pytest.raises(UnclipError, match=r"diffusers-saved-scheduler' \(DDIMScheduler\): the scheduler's noise schedule") as error:
        sampler("DDIMScheduler", 3).sample(denoiser, (1, 4, 4, 4), generator=torch.Generator().manual_seed(0))
    assert "\n" not in str(error.value)


def test_bad_settings_are_a_validation_error():
    from pydantic import ValidationError

    from unclip_core.registry import discover

    spec = discover().get("sampler", "diffusers-saved-scheduler")
    with pytest.raises(ValidationError, match="DDIMScheduler has no setting 'clip_smaple'"):
        spec.config_model(scheduler="DDIMScheduler", scheduler_config={"clip_smaple": True})
    with pytest.raises(ValidationError, match="unknown diffusers scheduler 'DDIMSchedular'"):
        spec.config_model(scheduler="DDIMSchedular")
