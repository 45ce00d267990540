"""The decoder's, its samplers' and its autoencoder's settings, derived from a Stable unCLIP
folder's config files; a value missing or of the wrong type is one error naming the file and
the key (the prior's come from :func:`unclip_plugins.diffusers_folders.settings.diffusion_prior_settings`,
the same parts under ``prior_*`` names)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from unclip_core.importing import IGNORED_CONFIG_KEYS
from unclip_plugins.diffusers_folders.clip_config import TEXT_KEYS
from unclip_plugins.diffusers_folders.settings import ConfigFile, read_config, require

PREDICTION = {"epsilon": "eps", "v_prediction": "v"}
SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _without_bookkeeping(config: ConfigFile) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in IGNORED_CONFIG_KEYS}


def saved_scheduler(config: ConfigFile, steps: int) -> dict[str, Any]:
    """The ``diffusers-saved-scheduler`` settings of a folder's scheduler config."""
    name = config.get("_class_name")
    require(isinstance(name, str) and name.endswith("Scheduler"), f"{config.name}: no scheduler _class_name")
    return {"scheduler": name, "scheduler_config": _without_bookkeeping(config), "steps": steps}


def decoder_settings(source: Path) -> dict[str, Any]:
    """``decoder``, ``decoder_sampler`` and ``autoencoder`` settings of the folder."""
    unet, vae, text = read_config(source, "unet"), read_config(source, "vae"), read_config(source, "text_encoder")
    normalizer = read_config(source, "image_normalizer")
    noising = read_config(source, "image_noising_scheduler", "scheduler_config.json")
    scheduler = read_config(source, "scheduler", "scheduler_config.json")
    tokenizer_file = source / "tokenizer" / "tokenizer_config.json"
    tokenizer = read_config(source, "tokenizer", "tokenizer_config.json") if tokenizer_file.is_file() else ConfigFile({}, "")

    require(unet.get("class_embed_type") == "projection",
             f"unet/config.json: class_embed_type {unet.get('class_embed_type')!r}; Stable unCLIP's UNet reads the noised "
             "image embedding as a 'projection' class label")
    embed_dim = normalizer.integer("embedding_dim", 768)
    require(unet.integer("projection_class_embeddings_input_dim") == 2 * embed_dim,
             f"unet/config.json: projection_class_embeddings_input_dim {unet.get('projection_class_embeddings_input_dim')} "
             f"is not twice the image normaliser's embedding_dim {embed_dim}")
    require(unet.integer("in_channels", 4) == vae.integer("latent_channels", 4),
             f"unet/config.json: in_channels {unet.get('in_channels')} differs from vae/'s latent_channels {vae.get('latent_channels', 4)}")
    require(noising.get("_class_name", "DDPMScheduler") == "DDPMScheduler",
             f"image_noising_scheduler/: expected a DDPMScheduler, got {noising.get('_class_name')}")
    beta_schedule = scheduler.get("beta_schedule", "linear")
    require(beta_schedule in SCHEDULES and scheduler.get("trained_betas") is None,
             f"scheduler/scheduler_config.json: beta_schedule {beta_schedule!r} is not supported (expected one of {', '.join(SCHEDULES)})")
    prediction = scheduler.get("prediction_type", "epsilon")
    require(prediction in PREDICTION, f"scheduler/scheduler_config.json: prediction_type {prediction!r} is not supported")

    positions = text.integer("max_position_embeddings", 77)
    length = tokenizer.integer("model_max_length") if tokenizer.get("model_max_length") else positions
    downscale = 2 ** (len(vae.integers("block_out_channels", [64])) - 1)
    decoder = {
        "unet": _without_bookkeeping(unet),
        "text_encoder": {k: v for k, v in text.items() if k in TEXT_KEYS},
        "tokenizer": "tokenizer",
        "context_length": min(length, positions),
        "image_size": unet.integer("sample_size") * downscale,
        "noising_scheduler": _without_bookkeeping(noising),
        "beta_schedule": "cosine" if beta_schedule == "squaredcos_cap_v2" else beta_schedule,
        "beta_start": scheduler.number("beta_start", 0.0001),
        "beta_end": scheduler.number("beta_end", 0.02),
        "num_train_timesteps": scheduler.integer("num_train_timesteps", 1000),
        "prediction_type": PREDICTION[prediction],
    }
    return {
        "decoder": decoder,
        "decoder_sampler": saved_scheduler(scheduler, 20),
        "autoencoder": _without_bookkeeping(vae),
    }
