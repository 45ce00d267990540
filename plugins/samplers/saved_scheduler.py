"""``diffusers-saved-scheduler``: a diffusers scheduler exactly as a model folder saved it.

Why a second diffusers sampler: ``diffusers-scheduler`` hands a scheduler *our* view of the
model (its float64 noise schedule, clipping done by us against the model's clip range), which
is right for trying another solver on a model, but rounds differently from the pipeline the
weights were published with. An importer that promises parity with that pipeline (Stable
unCLIP's DDPM prior and DDIM decoder schedulers) needs the scheduler as saved: built with
``from_config`` from the folder's ``scheduler_config.json``, run as the diffusers pipeline runs
it — ``set_timesteps``, x_T times ``init_noise_sigma``, per timestep ``scale_model_input`` →
model → ``step`` with the call's generator (and ``eta``) — its own clipping and float32
arithmetic included. Its noise schedule must be the model's: checked before the first step.
The prediction type and a learned variance are the model's facts, so the scheduler is told
the model's (an importer writes the same values; a scheduler without learned variances gets
the prediction alone).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import Tensor

from unclip_core.diffusion.sampling import initial_noise, split_output, timestep_batch
from unclip_core.errors import UnclipError
from unclip_core.importing import IGNORED_CONFIG_KEYS
from unclip_core.interfaces import ComponentConfig, Denoiser, Sampler, StepCallback, StepInfo
from unclip_plugins.diffusers_folders.schedulers import parameters_of, scheduler_class

from .diffusers_adapter import DIFFUSERS_PREDICTION, _check_step_kwargs, _variance_setting, noised_start

SCHEDULE_TOLERANCE = 1e-5
"""How far the scheduler's float32 ᾱ may be from the model's (float32 rounding of the same
formula is ~1e-7; a different schedule differs by far more)."""


class SavedSchedulerConfig(ComponentConfig):
    """Settings of the ``diffusers-saved-scheduler`` sampler."""

    scheduler: str = Field(description="Class name of the diffusers scheduler, e.g. 'DDIMScheduler', 'DDPMScheduler'.")
    scheduler_config: dict[str, Any] = Field(
        default_factory=dict,
        description="The scheduler's settings as its folder saved them (scheduler_config.json), noise schedule included.",
    )
    steps: int = Field(25, ge=1, description="Number of inference steps (num_inference_steps).")
    step_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra arguments to every scheduler.step call (e.g. {eta: 0.0} for DDIMScheduler)."
    )

    @model_validator(mode="after")
    def _builds(self) -> "SavedSchedulerConfig":
        """The class exists, takes these settings and step arguments: checked at validation."""
        cls = scheduler_class(self.scheduler)
        _check_step_kwargs(cls, self.step_kwargs)
        build_scheduler(self)
        return self


def build_scheduler(config: SavedSchedulerConfig, model: Denoiser | None = None) -> Any:
    """A fresh scheduler (they keep per-run state) from the saved settings; with ``model``,
    told the model's prediction type and (learned) variance, which are the model's facts."""
    cls = scheduler_class(config.scheduler)
    settings = {k: v for k, v in config.scheduler_config.items() if k not in IGNORED_CONFIG_KEYS}
    params = parameters_of(cls.__init__)
    if model is not None and "prediction_type" in params:
        settings["prediction_type"] = DIFFUSERS_PREDICTION[model.prediction_type]
    if model is not None and _variance_setting(params, model.variance_type) == "learned_range":
        settings["variance_type"] = "learned_range"
    known = parameters_of(cls.__init__)
    unknown = sorted(k for k in settings if k not in known)
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting {', '.join(repr(k) for k in unknown)}")
    try:
        return cls(**settings)
    except Exception as exc:  # noqa: BLE001 - diffusers raises assorted types
        raise ValueError(f"{cls.__name__} refused its settings: {' '.join(str(exc).split()) or type(exc).__name__}") from None


class SavedSchedulerSampler(Sampler[SavedSchedulerConfig]):
    """A diffusers scheduler as saved, driving the model the way its pipeline does."""

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
        scheduler = self._prepared(denoiser)
        x = initial_noise(shape, denoiser, generator, x_T) * scheduler.init_noise_sigma
        return self._run(denoiser, scheduler, x, 0, generator, callback)

    @torch.no_grad()
    def sample_from(
        self, denoiser: Denoiser, x0: Tensor, strength: float, *, generator: torch.Generator,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """img2img as diffusers' pipelines run it (``get_timesteps``, then ``add_noise`` at the
        first timestep kept, then the remaining steps)."""
        scheduler = self._prepared(denoiser)
        x, start = noised_start(scheduler, self.config.steps, strength, x0, denoiser, generator)
        if start >= len(scheduler.timesteps):
            return x
        return self._run(denoiser, scheduler, x, start, generator, callback)

    def _prepared(self, denoiser: Denoiser) -> Any:
        """A fresh scheduler for this model with its timesteps set; one-line errors."""
        config = self.config
        label = f"sampler 'diffusers-saved-scheduler' ({config.scheduler})"
        try:
            scheduler = build_scheduler(config, denoiser)
        except ValueError as exc:
            raise UnclipError(f"{label}: {exc}") from None
        self._check_schedule(scheduler, denoiser, label)
        try:
            scheduler.set_timesteps(config.steps, device=denoiser.device)
        except Exception as exc:  # noqa: BLE001
            raise UnclipError(f"{label}: set_timesteps({config.steps}) failed: {' '.join(str(exc).split())}") from None
        return scheduler

    def _run(self, denoiser: Denoiser, scheduler: Any, x: Tensor, start: int, generator: torch.Generator,
             callback: StepCallback | None) -> Tensor:
        """The pipeline's loop over ``scheduler.timesteps[start:]`` from ``x``."""
        step_kwargs = dict(self.config.step_kwargs)
        if "generator" in parameters_of(scheduler.step):
            step_kwargs["generator"] = generator
        timesteps = list(scheduler.timesteps[start:])
        learned = denoiser.variance_type == "learned_range"
        for index, t in enumerate(timesteps):
            model_in = scheduler.scale_model_input(x, t)
            out = denoiser(model_in, timestep_batch(int(t), model_in))
            if learned and getattr(scheduler.config, "variance_type", None) != "learned_range":
                out = split_output(out, model_in, "learned_range")[0]  # a scheduler without learned variances
            x = scheduler.step(out, t, x, **step_kwargs, return_dict=False)[0]
            if callback is not None:
                callback(StepInfo(index, len(timesteps), int(t), x))
        return x

    @staticmethod
    def _check_schedule(scheduler: Any, denoiser: Denoiser, label: str) -> None:
        ours = denoiser.schedule.alphas_cumprod.float()
        theirs = getattr(scheduler, "alphas_cumprod", None)
        if not isinstance(theirs, Tensor):
            return
        if theirs.shape != ours.shape or not torch.allclose(theirs.float().cpu(), ours.cpu(), atol=SCHEDULE_TOLERANCE, rtol=0):
            raise UnclipError(
                f"{label}: the scheduler's noise schedule ({theirs.shape[0]} steps) is not the model's "
                f"({ours.shape[0]} steps); give the scheduler the model's beta_schedule and num_train_timesteps"
            )
