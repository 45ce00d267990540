"""Every component's settings, derived from a Karlo folder's config files: a value missing or
of the wrong type is one error naming the file and the key."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from unclip_core.importing import IGNORED_CONFIG_KEYS
from unclip_plugins.diffusers_folders.settings import (
    caption_length,
    clip_encoder_settings,
    diffusion_prior_settings,
    read_config,
    require,
    tokenizer_config,
    unclip_scheduler_settings,
    variance_setting,
)

from .folder import MODEL_PARTS, SCHEDULER_PARTS


def derive_settings(source: Path) -> dict[str, Any]:
    """Every component's settings (and the samplers') from the folder's config files. A value
    missing or of the wrong type is an error naming the file and the key."""
    cfg = {part: read_config(source, part) for part in MODEL_PARTS}
    sched = {part: read_config(source, part, "scheduler_config.json") for part in SCHEDULER_PARTS}
    tokenizer_cfg = tokenizer_config(source)

    text = cfg["text_encoder"]
    width = text.integer("hidden_size", 512)
    embed_dim = text.integer("projection_dim", 512)
    length = caption_length(text, tokenizer_cfg)
    prior_settings, prior_sampler = diffusion_prior_settings(
        text, cfg["prior"], sched["prior_scheduler"], length, "prior", "prior_scheduler"
    )

    decoder, text_proj = cfg["decoder"], cfg["text_proj"]
    require(text_proj.integer("clip_embeddings_dim", 768) == embed_dim,
             f"text_proj/: clip_embeddings_dim {text_proj.get('clip_embeddings_dim')} differs from the embedding size {embed_dim}")
    require(decoder.integer("in_channels", 4) == 3, f"decoder/: in_channels {decoder.get('in_channels')}; the decoder draws RGB images")
    out_channels = decoder.integer("out_channels", 4)
    require(out_channels in (3, 6), f"decoder/: out_channels {out_channels}; expected 3 or 6 (with a learned variance)")
    down = decoder.names("down_block_types", [])
    decoder_settings = {
        "image_size": decoder.integer("sample_size"),
        "embed_dim": embed_dim,
        "text_width": width,
        "context_length": length,
        "block_out_channels": decoder.integers("block_out_channels"),
        "layers_per_block": decoder.integer("layers_per_block"),
        "attention_levels": [kind == "SimpleCrossAttnDownBlock2D" for kind in down],
        "attention_head_dim": decoder.integer("attention_head_dim"),
        "cross_attention_dim": decoder.integer("cross_attention_dim"),
        "extra_context_tokens": text_proj.integer("clip_extra_context_tokens", 4),
        "norm_num_groups": decoder.integer("norm_num_groups", 32),
        "scale_shift_norm": decoder.get("resnet_time_scale_shift") == "scale_shift",
        "prediction_type": "eps",
        "variance_type": variance_setting(sched["decoder_scheduler"], "decoder_scheduler", out_channels == 6),
        "beta_schedule": "cosine",
        "num_train_timesteps": sched["decoder_scheduler"].integer("num_train_timesteps", 1000),
    }
    decoder_sampler = unclip_scheduler_settings(sched["decoder_scheduler"], "decoder_scheduler", "epsilon")

    first, last = cfg["super_res_first"], cfg["super_res_last"]
    differing = sorted(k for k in set(first) | set(last) if k not in IGNORED_CONFIG_KEYS and first.get(k) != last.get(k))
    require(not differing, f"super_res_first/ and super_res_last/ differ in {', '.join(differing)}; they must be one architecture")
    sr_out = first.integer("out_channels", 3)
    require(first.integer("in_channels", 3) == 6, f"super_res_first/: in_channels {first.get('in_channels')}; expected 6 (noisy image + condition)")
    upsampler_settings = {
        "input_size": decoder_settings["image_size"],
        "image_size": first.integer("sample_size"),
        "block_out_channels": first.integers("block_out_channels"),
        "layers_per_block": first.integer("layers_per_block"),
        "mid_attention": first.flag("add_attention", True),
        "attention_head_dim": first.integer("attention_head_dim") if first.get("attention_head_dim") else 8,
        "norm_num_groups": first.integer("norm_num_groups", 32),
        "scale_shift_norm": first.get("resnet_time_scale_shift") == "scale_shift",
        "last_step_unet": True,
        "prediction_type": "eps",
        "variance_type": variance_setting(sched["super_res_scheduler"], "super_res_scheduler", sr_out == 6),
        "beta_schedule": "cosine",
        "num_train_timesteps": sched["super_res_scheduler"].integer("num_train_timesteps", 1000),
    }
    upsampler_sampler = unclip_scheduler_settings(sched["super_res_scheduler"], "super_res_scheduler", "epsilon")

    encoder = clip_encoder_settings(source, text, length, "feature_extractor")
    return {
        "encoder": encoder,
        "prior": prior_settings,
        "prior_sampler": prior_sampler,
        "decoder": decoder_settings,
        "decoder_sampler": decoder_sampler,
        "upsampler": upsampler_settings,
        "upsampler_sampler": upsampler_sampler,
    }


