"""Every component's settings, derived from a Karlo folder's config files: a value missing or
of the wrong type is one error naming the file and the key."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unclip_core.errors import InputError
from unclip_core.importing import IGNORED_CONFIG_KEYS

from .folder import MODEL_PARTS, SCHEDULER_PARTS, read_json

def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


_MISSING = object()


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


class _Config(dict):
    """One part's JSON config whose values are read with their type checked: a missing or
    wrong-typed value is one error naming the file and the key (``decoder/config.json:
    layers_per_block 'two'; expected an integer``)."""

    def __init__(self, data: Mapping[str, Any], name: str):
        super().__init__(data)
        self.name = name

    def _get(self, key: str, default: Any) -> Any:
        if key in self:
            return self[key]
        if default is _MISSING:
            raise InputError(f"{self.name}: no {key}")
        return default

    def _wrong(self, key: str, value: Any, expected: str) -> InputError:
        return InputError(f"{self.name}: {key} {_shown(value)}; expected {expected}")

    def integer(self, key: str, default: Any = _MISSING) -> int:
        value = self._get(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._wrong(key, value, "an integer")
        return value

    def number(self, key: str, default: Any = _MISSING) -> float:
        value = self._get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self._wrong(key, value, "a number")
        return float(value)

    def flag(self, key: str, default: Any = _MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._wrong(key, value, "true or false")
        return value

    def integers(self, key: str, default: Any = _MISSING) -> list[int]:
        value = self._get(key, default)
        if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise self._wrong(key, value, "a list of integers")
        return list(value)

    def numbers(self, key: str, default: Any = _MISSING) -> list[float]:
        value = self._get(key, default)
        if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise self._wrong(key, value, "a list of numbers")
        return [float(v) for v in value]

    def names(self, key: str, default: Any = _MISSING) -> list[str]:
        value = self._get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, value, "a list of names")
        return list(value)


def _config(source: Path, part: str, name: str = "config.json") -> _Config:
    return _Config(read_json(source / part / name), f"{part}/{name}")


def _scheduler(config: _Config, part: str, prediction: str, classes: tuple[str, ...] = ("UnCLIPScheduler",)) -> dict[str, Any]:
    """The ``unclip-scheduler`` settings of a scheduler config (one of ``classes``), after
    checking what the model must match."""
    _require(config.get("_class_name", classes[0]) in classes,
             f"{part}/: expected {' or '.join('an ' + c for c in classes)}, got {config.get('_class_name')}")
    _require(config.get("beta_schedule", "squaredcos_cap_v2") == "squaredcos_cap_v2",
             f"{part}/: beta_schedule {config.get('beta_schedule')!r} is not supported (UnCLIPScheduler has only squaredcos_cap_v2)")
    _require(config.get("prediction_type", "epsilon") == prediction,
             f"{part}/: prediction_type {config.get('prediction_type')!r}, but the model predicts {prediction!r}")
    settings: dict[str, Any] = {"clip_sample": config.flag("clip_sample", True)}
    if settings["clip_sample"]:
        settings["clip_sample_range"] = config.number("clip_sample_range", 1.0)
    return settings


def _variance(config: dict[str, Any], part: str, learned: bool) -> str:
    kind = config.get("variance_type", "fixed_small_log")
    _require(kind in ("fixed_small_log", "learned_range"), f"{part}/: variance_type {kind!r} is not supported")
    _require(
        (kind == "learned_range") == learned,
        f"{part}/: variance_type {kind!r} does not fit the model, which "
        + ("predicts a variance (twice the image channels)" if learned else "predicts no variance"),
    )
    return "learned_range" if learned else "fixed_small"


def caption_length(text: _Config, tokenizer_cfg: _Config) -> int:
    """Caption tokens L: the tokenizer's model_max_length, at most the text tower's positions."""
    positions = text.integer("max_position_embeddings", 77)
    length = tokenizer_cfg.integer("model_max_length") if tokenizer_cfg.get("model_max_length") else positions
    return min(length, positions)


def diffusion_prior_settings(
    text: _Config, prior: _Config, scheduler: _Config, length: int, part: str, scheduler_part: str,
    scheduler_classes: tuple[str, ...] = ("UnCLIPScheduler",), text_part: str = "text_encoder",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(diffusion-prior settings, unclip-scheduler settings)`` of a diffusers PriorTransformer
    part read with a CLIPTextModelWithProjection (Karlo's, Kandinsky 2.2's and Stable unCLIP's
    priors; the last's scheduler is a DDPMScheduler, its text tower ``prior_text_encoder/``)."""
    width = text.integer("hidden_size", 512)
    embed_dim = text.integer("projection_dim", 512)
    _require(prior.integer("embedding_dim") == embed_dim,
             f"{part}/: embedding_dim {prior['embedding_dim']} differs from the text encoder's projection_dim {embed_dim}")
    _require(prior.integer("num_embeddings", 77) == length,
             f"{part}/: num_embeddings {prior.get('num_embeddings')} differs from the tokenizer's length {length}")
    _require(width == embed_dim,
             f"{text_part}/: hidden_size {width} differs from projection_dim {embed_dim}; the prior reads "
             "caption tokens of the embedding's width")
    sampler = _scheduler(scheduler, scheduler_part, "sample", scheduler_classes)
    settings = {
        "embed_dim": embed_dim,
        "text_width": width,
        "context_length": length,
        "num_layers": prior.integer("num_layers"),
        "num_attention_heads": prior.integer("num_attention_heads"),
        "attention_head_dim": prior.integer("attention_head_dim"),
        "beta_schedule": "cosine",
        "num_train_timesteps": scheduler.integer("num_train_timesteps", 1000),
        "variance_type": _variance(scheduler, scheduler_part, False),
        "clip_range": sampler.get("clip_sample_range"),
        "normalize_output": False,
    }
    return settings, sampler


def tokenizer_config(source: Path, part: str = "tokenizer") -> _Config:
    """The folder's ``<part>/tokenizer_config.json`` (empty where there is none)."""
    if (source / part / "tokenizer_config.json").is_file():
        return _config(source, part, "tokenizer_config.json")
    return _Config({}, "")


def clip_encoder_settings(source: Path, text: _Config, length: int, processor: str) -> dict[str, Any]:
    """The ``hf-clip`` encoder's raw settings: the text tower's config, and where the folder
    has ``image_encoder/`` the image tower's with the ``processor/`` folder's mean and std."""
    encoder: dict[str, Any] = {"text_config": dict(text), "context_length": length}
    if (source / "image_encoder").is_dir():
        encoder["vision_config"] = read_json(source / "image_encoder" / "config.json")
        if (source / processor / "preprocessor_config.json").is_file():
            pre = _config(source, processor, "preprocessor_config.json")
            if pre.get("image_mean"):
                encoder["image_mean"] = pre.numbers("image_mean")
            if pre.get("image_std"):
                encoder["image_std"] = pre.numbers("image_std")
    return encoder


def derive_settings(source: Path) -> dict[str, Any]:
    """Every component's settings (and the samplers') from the folder's config files. A value
    missing or of the wrong type is an error naming the file and the key."""
    cfg = {part: _config(source, part) for part in MODEL_PARTS}
    sched = {part: _config(source, part, "scheduler_config.json") for part in SCHEDULER_PARTS}
    tokenizer_cfg = tokenizer_config(source)

    text = cfg["text_encoder"]
    width = text.integer("hidden_size", 512)
    embed_dim = text.integer("projection_dim", 512)
    length = caption_length(text, tokenizer_cfg)
    prior_settings, prior_sampler = diffusion_prior_settings(
        text, cfg["prior"], sched["prior_scheduler"], length, "prior", "prior_scheduler"
    )

    decoder, text_proj = cfg["decoder"], cfg["text_proj"]
    _require(text_proj.integer("clip_embeddings_dim", 768) == embed_dim,
             f"text_proj/: clip_embeddings_dim {text_proj.get('clip_embeddings_dim')} differs from the embedding size {embed_dim}")
    _require(decoder.integer("in_channels", 4) == 3, f"decoder/: in_channels {decoder.get('in_channels')}; the decoder draws RGB images")
    out_channels = decoder.integer("out_channels", 4)
    _require(out_channels in (3, 6), f"decoder/: out_channels {out_channels}; expected 3 or 6 (with a learned variance)")
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
        "variance_type": _variance(sched["decoder_scheduler"], "decoder_scheduler", out_channels == 6),
        "beta_schedule": "cosine",
        "num_train_timesteps": sched["decoder_scheduler"].integer("num_train_timesteps", 1000),
    }
    decoder_sampler = _scheduler(sched["decoder_scheduler"], "decoder_scheduler", "epsilon")

    first, last = cfg["super_res_first"], cfg["super_res_last"]
    differing = sorted(k for k in set(first) | set(last) if k not in IGNORED_CONFIG_KEYS and first.get(k) != last.get(k))
    _require(not differing, f"super_res_first/ and super_res_last/ differ in {', '.join(differing)}; they must be one architecture")
    sr_out = first.integer("out_channels", 3)
    _require(first.integer("in_channels", 3) == 6, f"super_res_first/: in_channels {first.get('in_channels')}; expected 6 (noisy image + condition)")
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
        "variance_type": _variance(sched["super_res_scheduler"], "super_res_scheduler", sr_out == 6),
        "beta_schedule": "cosine",
        "num_train_timesteps": sched["super_res_scheduler"].integer("num_train_timesteps", 1000),
    }
    upsampler_sampler = _scheduler(sched["super_res_scheduler"], "super_res_scheduler", "epsilon")

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


