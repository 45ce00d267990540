"""Reading the two Kandinsky 2.2 folders: which parts each must have, and every component's
settings derived from their config files (a value missing or of the wrong type is one error
naming the file and the key)."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from unclip_core.errors import InputError
from unclip_core.importing import IGNORED_CONFIG_KEYS
from unclip_plugins.diffusers_folders.schedulers import scheduler_class
from unclip_plugins.diffusers_folders.settings import (
    caption_length,
    clip_encoder_settings,
    diffusion_prior_settings,
    read_config,
    tokenizer_config,
)

PRIOR_PARTS = ("prior", "text_encoder", "tokenizer", "image_encoder", "scheduler")
DECODER_PARTS = ("unet", "movq", "scheduler")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
SAMPLER_FROM_MODEL = ("num_train_timesteps", "trained_betas", "beta_schedule", "beta_start", "beta_end", "prediction_type",
                      "variance_type", "clip_sample", "timestep_spacing")
"""Scheduler settings the decoder's own config or the sampler's settings carry instead."""


def _check(folder: Path, parts: tuple[str, ...], what: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a {what} folder (give the folder that holds {', '.join(parts[:2])}/, ...)")
    if not folder.is_dir():
        raise InputError(f"{what} folder not found: {folder}")
    missing = [f"{part}/" for part in parts if not (folder / part).is_dir()]
    if missing:
        raise InputError(f"{folder} is not a {what} folder: missing {', '.join(missing)} (expected {', '.join(p + '/' for p in parts)})")


def check_folders(prior: Path, decoder: Path) -> None:
    """One-line errors unless ``prior`` and ``decoder`` hold every part of their pipelines."""
    _check(prior, PRIOR_PARTS, "Kandinsky 2.2 prior (KandinskyV22PriorPipeline)")
    _check(decoder, DECODER_PARTS, "Kandinsky 2.2 decoder (KandinskyV22Pipeline)")


def _model_config(folder: Path, part: str) -> dict[str, Any]:
    return {k: v for k, v in read_config(folder, part).items() if k not in IGNORED_CONFIG_KEYS and not k.startswith("_")}


def _decoder_sampler(scheduler: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``diffusers-scheduler`` settings that run the decoder folder's scheduler as diffusers does."""
    cls_name = scheduler.get("_class_name")
    try:
        cls = scheduler_class(str(cls_name))
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from None
    if scheduler.get("clip_sample"):
        raise InputError(f"{name}: clip_sample true is not supported for latents (Kandinsky 2.2's scheduler has false)")
    accepted = set(inspect.signature(cls.__init__).parameters)
    extra = {k: v for k, v in scheduler.items()
             if k in accepted and k not in SAMPLER_FROM_MODEL and not k.startswith("_") and k not in IGNORED_CONFIG_KEYS}
    return {"scheduler": cls_name, "scheduler_config": extra,
            "timestep_spacing": scheduler.get("timestep_spacing", "leading"), "exact_float32": True}


def derive_settings(prior: Path, decoder: Path, image_size: int) -> dict[str, Any]:
    """Every component's settings (and the samplers') from the two folders' config files."""
    text = read_config(prior, "text_encoder")
    length = caption_length(text, tokenizer_config(prior))
    prior_settings, prior_sampler = diffusion_prior_settings(
        text, read_config(prior, "prior"), read_config(prior, "scheduler", "scheduler_config.json"), length, "prior", "scheduler"
    )
    encoder = clip_encoder_settings(prior, text, length, "image_processor")

    unet = _model_config(decoder, "unet")
    scheduler = read_config(decoder, "scheduler", "scheduler_config.json")
    schedule = scheduler.get("beta_schedule", "linear")
    if schedule not in BETA_SCHEDULES:
        raise InputError(f"scheduler/scheduler_config.json: beta_schedule {schedule!r} is not supported (one of {', '.join(BETA_SCHEDULES)})")
    if scheduler.get("prediction_type", "epsilon") != "epsilon":
        raise InputError(f"scheduler/scheduler_config.json: prediction_type {scheduler.get('prediction_type')!r}; "
                         "Kandinsky 2.2's decoder predicts epsilon")
    learned = scheduler.get("variance_type") in ("learned", "learned_range")
    movq = _model_config(decoder, "movq")
    downscale = 2 ** (len(movq.get("block_out_channels", [64])) - 1)
    if image_size < 1 or image_size % (downscale * downscale):
        raise InputError(f"--image-size {image_size} must be a positive multiple of {downscale * downscale} "
                         f"(the autoencoder's downscale {downscale}, squared, as diffusers rounds sizes)")
    decoder_settings = {
        "image_size": image_size,
        "unet": unet,
        "variance_type": "learned_range" if learned else "fixed_small",
        "beta_schedule": "cosine" if schedule == "squaredcos_cap_v2" else schedule,
        "beta_start": scheduler.number("beta_start", 0.0001),
        "beta_end": scheduler.number("beta_end", 0.02),
        "num_train_timesteps": scheduler.integer("num_train_timesteps", 1000),
    }
    return {
        "encoder": encoder,
        "prior": prior_settings,
        "prior_sampler": prior_sampler,
        "decoder": decoder_settings,
        "decoder_sampler": _decoder_sampler(scheduler, "scheduler/scheduler_config.json"),
        "autoencoder": {**movq, "latent_scale": 1.0},
    }
