"""``diffusers-scheduler``: any diffusers scheduler class, by name, behind the Sampler interface.

Why: diffusers ships dozens of solvers (Euler, Heun, UniPC, DEIS, LCM, ...). Rather than port
each, this adapter runs one the way a diffusers pipeline does — ``set_timesteps``, scale the
initial noise by ``init_noise_sigma``, and per timestep ``scale_model_input`` → model →
``step`` — while the model's own noise schedule (its betas, as ``trained_betas``) and
prediction type are handed to the scheduler, so it solves the process the model was
trained on. Settings are checked when the recipe is validated: an unknown class, a setting
the class does not take or a value it refuses is a one-line error, before anything runs.

How the model is presented to the scheduler:

* the betas are given as ``trained_betas``; diffusers keeps them in float32, so the
  scheduler's ``betas``/``alphas``/``alphas_cumprod`` are then replaced by the model's
  float64 values (what the built-in samplers use), wherever the scheduler keeps them;
* clipping is done here, as the built-ins do it: x0 is clamped to the model's
  ``clip_range`` and the prediction re-derived from it, and the scheduler's own
  ``clip_sample`` is switched off (unless ``scheduler_config`` sets it);
* a scheduler without a ``prediction_type`` setting is given eps; a learned variance goes
  to schedulers that sample with one (the DDPM family), and is dropped for the others;
* the model takes integer timesteps, so a scheduler that visits fractional ones (Euler
  with ``linspace`` spacing, Karras sigmas) is refused with the reason rather than rounded.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Annotated, Any

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from unclip_core.diffusion.parameterization import training_target
from unclip_core.diffusion.sampling import ClipSetting, denoised, initial_noise, split_output, strength_start, timestep_batch
from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.diffusion.spacing import TimestepSpacing
from unclip_core.errors import UnclipError
from unclip_core.interfaces import ComponentConfig, Denoiser, Sampler, StepCallback, StepInfo
from unclip_plugins.diffusers_folders.schedulers import did_you_mean, parameters_of, scheduler_class

DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
FROM_MODEL = ("num_train_timesteps", "trained_betas", "beta_schedule", "beta_start", "beta_end", "prediction_type")
"""Scheduler settings that describe the model, so they are taken from it and not from the recipe."""
STEP_OWN = ("self", "model_output", "timestep", "sample", "generator", "return_dict")


class DiffusersSchedulerConfig(ComponentConfig):
    """Settings of the ``diffusers-scheduler`` sampler."""

    scheduler: str = Field(
        description="Class name of a diffusers scheduler, e.g. 'EulerDiscreteScheduler', 'UniPCMultistepScheduler', 'DDIMScheduler'."
    )
    scheduler_config: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Extra settings for the scheduler's constructor (e.g. {solver_order: 3}); the noise schedule, "
            "prediction type and timestep spacing come from the model and the settings here."
        ),
    )
    step_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra arguments to every scheduler.step call (e.g. {eta: 0.5} for DDIMScheduler)."
    )
    steps: int = Field(50, ge=1, description="Number of inference steps (num_inference_steps), at most the model's training timesteps.")
    timestep_spacing: Annotated[
        TimestepSpacing,
        Field(
            description=(
                "Which training timesteps to visit, passed to the scheduler (diffusers' names; "
                "a scheduler without a timestep_spacing setting keeps its own)."
            )
        ),
    ] = "trailing"
    clip_denoised: ClipSetting = True
    exact_float32: bool = Field(
        False,
        description="Keep the scheduler's own float32 betas and alphas (what diffusers computes), rather than the "
        "model's float64 schedule: imported recipes set it so a step rounds as diffusers' does (parity).",
    )

    @field_validator("scheduler")
    @classmethod
    def _a_usable_scheduler_class(cls, name: str) -> str:
        scheduler_class(name)
        return name

    @model_validator(mode="after")
    def _scheduler_accepts_these_settings(self) -> "DiffusersSchedulerConfig":
        """Build the scheduler once on a stand-in schedule, so a wrong name, setting or value
        fails recipe validation with one line instead of failing mid-generation."""
        cls = scheduler_class(self.scheduler)
        _check_step_kwargs(cls, self.step_kwargs)
        make_scheduler(self, NoiseSchedule.from_name("linear", 1000), "eps", "fixed_small")
        return self


def _check_step_kwargs(cls: type, step_kwargs: dict[str, Any]) -> None:
    params = parameters_of(cls.step)
    accepted = [n for n, p in params.items() if n not in STEP_OWN and p.kind is not inspect.Parameter.VAR_KEYWORD]
    for key in step_kwargs:
        if key not in accepted:
            raise ValueError(f"{cls.__name__}.step has no argument {key!r}{did_you_mean(key, accepted)}; it takes: {', '.join(accepted) or 'none'}")
    missing = [n for n in accepted if params[n].default is inspect.Parameter.empty and n not in step_kwargs]
    if missing:
        raise ValueError(f"{cls.__name__}.step needs {', '.join(missing)}, which a sampler cannot supply")


def _variance_setting(params: dict[str, inspect.Parameter], variance_type: str) -> str | None:
    """The model's variance for a scheduler that samples with one (DDPM family: default
    'fixed_small'; UnCLIP-like: learned_range); None where the scheduler ignores variances."""
    default = params["variance_type"].default if "variance_type" in params else None
    if default == "fixed_small":
        return variance_type
    if isinstance(default, str) and variance_type == "learned_range":
        return variance_type
    return None


def make_scheduler(config: DiffusersSchedulerConfig, schedule: NoiseSchedule, prediction_type: str, variance_type: str) -> Any:
    """A fresh scheduler for one sampling run (schedulers keep per-run state), set up for the
    model described by ``schedule``, ``prediction_type`` and ``variance_type``."""
    cls = scheduler_class(config.scheduler)
    params = parameters_of(cls.__init__)
    for key in config.scheduler_config:
        if key in FROM_MODEL:
            raise ValueError(f"scheduler_config.{key} is taken from the model (its noise schedule and prediction type); leave it out")
        if key == "timestep_spacing":
            raise ValueError("set timestep_spacing as the sampler's own setting, not in scheduler_config")
        if key not in params or key == "self":
            known = [n for n in params if n not in ("self", *FROM_MODEL)]
            raise ValueError(f"{cls.__name__} has no setting {key!r}{did_you_mean(key, known)}")
    kwargs: dict[str, Any] = {"num_train_timesteps": schedule.num_train_timesteps, "trained_betas": schedule.betas.numpy()}
    if "prediction_type" in params:
        kwargs["prediction_type"] = DIFFUSERS_PREDICTION[prediction_type]
    if "timestep_spacing" in params:
        kwargs["timestep_spacing"] = config.timestep_spacing
    if "clip_sample" in params:
        kwargs["clip_sample"] = False  # clipping happens here, against the model's own clip_range
    variance = _variance_setting(params, variance_type)
    if variance is not None:
        kwargs["variance_type"] = variance
    kwargs.update(config.scheduler_config)
    try:
        scheduler = cls(**kwargs)
    except Exception as exc:  # diffusers raises ValueError, NotImplementedError, AssertionError, ...
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"{cls.__name__} refused its settings: {detail}") from None
    if config.exact_float32:
        return scheduler
    for name, values in (("betas", schedule.betas), ("alphas", 1 - schedule.betas), ("alphas_cumprod", schedule.alphas_cumprod)):
        if isinstance(getattr(scheduler, name, None), Tensor):
            setattr(scheduler, name, values.clone())
    return scheduler


def noised_start(
    scheduler: Any, steps: int, strength: float, x0: Tensor, denoiser: Denoiser, generator: torch.Generator
) -> tuple[Tensor, int]:
    """img2img's start as diffusers' pipelines make it (``get_timesteps``, then the scheduler's
    ``add_noise`` at the first timestep kept): ``(x, index of that timestep)``; when no step is
    left, ``(x0, len(timesteps))``. ``scheduler`` has its timesteps set."""
    start = strength_start(steps, strength) * int(getattr(scheduler, "order", 1))
    x0 = x0.to(device=denoiser.device, dtype=denoiser.dtype)
    if start >= len(scheduler.timesteps):
        return x0, start
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    noise = initial_noise(x0.shape, denoiser, generator, None)
    return scheduler.add_noise(x0, noise, scheduler.timesteps[start : start + 1].repeat(x0.shape[0])), start


class DiffusersSchedulerSampler(Sampler[DiffusersSchedulerConfig]):
    """Any diffusers scheduler (Euler, Heun, UniPC, DEIS, DPM-Solver, ...) driving the model, with the model's schedule."""

    @torch.no_grad()
    def sample(
        self,
        denoiser: Denoiser,
        shape: Sequence[int],
        *,
        generator: torch.Generator,
        x_T: Tensor | None = None,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """The loop of a diffusers pipeline. ``generator`` draws x_T and is handed to
        stochastic schedulers' ``step``. The callback runs once per completed step: for
        two-evaluation schedulers (Heun) after the second evaluation of each.

        A scheduler that refuses the model's prediction type on its first step (several
        lack x0, "sample", support) is rebuilt and given eps instead, which carries the
        same information."""
        scheduler, label = self._start(denoiser)
        x = initial_noise(shape, denoiser, generator, x_T) * scheduler.init_noise_sigma
        return self._run(denoiser, scheduler, x, 0, generator, callback, label)

    @torch.no_grad()
    def sample_from(
        self, denoiser: Denoiser, x0: Tensor, strength: float, *, generator: torch.Generator,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """img2img as diffusers' pipelines run it: the scheduler's ``add_noise`` at the first
        timestep kept (``get_timesteps``), then the remaining steps."""
        scheduler, label = self._start(denoiser)
        x, start = noised_start(scheduler, self.config.steps, strength, x0, denoiser, generator)
        if start >= len(scheduler.timesteps):
            return x
        return self._run(denoiser, scheduler, x, start, generator, callback, label)

    def _start(self, denoiser: Denoiser) -> tuple[Any, str]:
        config, schedule = self.config, denoiser.schedule
        label = f"sampler 'diffusers-scheduler' ({config.scheduler})"
        if config.steps > schedule.num_train_timesteps:
            raise UnclipError(f"{label}: steps={config.steps} exceeds the {schedule.num_train_timesteps} timesteps the model was trained with")
        return self._prepared(denoiser, denoiser.prediction_type, label), label

    def _run(self, denoiser: Denoiser, scheduler: Any, x: Tensor, start: int, generator: torch.Generator,
             callback: StepCallback | None, label: str) -> Tensor:
        """The denoising loop over ``scheduler.timesteps[start:]`` from ``x``."""
        config, schedule = self.config, denoiser.schedule
        given = denoiser.prediction_type
        if "prediction_type" not in parameters_of(type(scheduler).__init__):
            given = "eps"
        all_timesteps = scheduler.timesteps
        timesteps = [self._integer_timestep(float(t), schedule, label) for t in all_timesteps[start:]]
        with_variance = _variance_setting(parameters_of(type(scheduler).__init__), denoiser.variance_type) == "learned_range"
        step_kwargs = dict(config.step_kwargs)
        if "generator" in parameters_of(scheduler.step):
            step_kwargs["generator"] = generator
        total = int(getattr(scheduler, "num_inference_steps", None) or len(all_timesteps)) - start // int(getattr(scheduler, "order", 1))

        index = 0
        for position, (t_tensor, t) in enumerate(zip(all_timesteps[start:], timesteps)):
            model_in = scheduler.scale_model_input(x, t_tensor)
            prediction, variance_values = split_output(denoiser(model_in, timestep_batch(t, model_in)), model_in, denoiser.variance_type)
            x0, eps = denoised(denoiser, model_in, t, prediction, config.clip_denoised)

            def scheduler_input(as_type: str) -> Tensor:
                if as_type != denoiser.prediction_type or (config.clip_denoised and denoiser.clip_range is not None):
                    out = training_target(as_type, schedule, x0, t, eps)  # consistent with the (clipped) x0
                else:
                    out = prediction
                return torch.cat([out, variance_values], dim=1) if with_variance and variance_values is not None else out

            try:
                x = scheduler.step(scheduler_input(given), t_tensor, x, **step_kwargs).prev_sample
            except (NotImplementedError, ValueError) as exc:
                if position > 0 or given == "eps" or "predict" not in str(exc):
                    raise
                given, scheduler = "eps", self._prepared(denoiser, "eps", label)
                if start and hasattr(scheduler, "set_begin_index"):
                    scheduler.set_begin_index(start)
                scheduler.scale_model_input(x, scheduler.timesteps[start])  # same input; some schedulers track the call
                x = scheduler.step(scheduler_input(given), scheduler.timesteps[start], x, **step_kwargs).prev_sample
            if getattr(scheduler, "state_in_first_order", True) or position == len(timesteps) - 1:
                if callback is not None:
                    callback(StepInfo(index, total, t, x, x0))
                index += 1
        return x

    def _prepared(self, denoiser: Denoiser, prediction_type: str, label: str) -> Any:
        """A fresh scheduler for this model, with its timesteps set."""
        try:
            scheduler = make_scheduler(self.config, denoiser.schedule, prediction_type, denoiser.variance_type)
        except ValueError as exc:
            raise UnclipError(f"{label}: {exc}") from None
        try:
            scheduler.set_timesteps(self.config.steps, device=denoiser.device)
        except Exception as exc:  # noqa: BLE001 - diffusers raises assorted types for bad step counts
            raise UnclipError(f"{label}: set_timesteps({self.config.steps}) failed: {' '.join(str(exc).split())}") from None
        return scheduler

    @staticmethod
    def _integer_timestep(value: float, schedule: NoiseSchedule, label: str) -> int:
        if not math.isfinite(value) or not math.isclose(value, round(value), abs_tol=1e-4):
            raise UnclipError(
                f"{label}: the scheduler visits timestep {value:g}, but the model takes integer training timesteps; "
                "try timestep_spacing 'trailing' or 'leading' (and no Karras or other resampled sigmas)"
            )
        t = round(value)
        if not 0 <= t < schedule.num_train_timesteps:
            raise UnclipError(f"{label}: the scheduler visits timestep {t}, outside the model's 0..{schedule.num_train_timesteps - 1}")
        return t
