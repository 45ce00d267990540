"""Settings read from a diffusers folder's config files, the pieces every unCLIP-family
importer (Karlo, Kandinsky 2.2, Stable unCLIP) derives its components' settings with: a value
missing or of the wrong type is one error naming the file and the key."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unclip_core.errors import InputError

from .files import read_json


def require(condition: bool, message: str) -> None:
    """A one-line :class:`InputError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InputError(message)


_MISSING = object()


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


class ConfigFile(dict):
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


def read_config(source: Path, part: str, name: str = "config.json") -> ConfigFile:
    """``source/part/name`` as a :class:`ConfigFile` named ``part/name`` in its errors."""
    return ConfigFile(read_json(source / part / name), f"{part}/{name}")


def unclip_scheduler_settings(config: ConfigFile, part: str, prediction: str, classes: tuple[str, ...] = ("UnCLIPScheduler",)) -> dict[str, Any]:
    """The ``unclip-scheduler`` settings of a scheduler config (one of ``classes``), after
    checking what the model must match."""
    require(config.get("_class_name", classes[0]) in classes,
             f"{part}/: expected {' or '.join('an ' + c for c in classes)}, got {config.get('_class_name')}")
    require(config.get("beta_schedule", "squaredcos_cap_v2") == "squaredcos_cap_v2",
             f"{part}/: beta_schedule {config.get('beta_schedule')!r} is not supported (UnCLIPScheduler has only squaredcos_cap_v2)")
    require(config.get("prediction_type", "epsilon") == prediction,
             f"{part}/: prediction_type {config.get('prediction_type')!r}, but the model predicts {prediction!r}")
    settings: dict[str, Any] = {"clip_sample": config.flag("clip_sample", True)}
    if settings["clip_sample"]:
        settings["clip_sample_range"] = config.number("clip_sample_range", 1.0)
    return settings


def variance_setting(config: dict[str, Any], part: str, learned: bool) -> str:
    """The ``variance_type`` setting of a model whose scheduler config is ``config``, checked
    against whether the model predicts a variance (``learned``)."""
    kind = config.get("variance_type", "fixed_small_log")
    require(kind in ("fixed_small_log", "learned_range"), f"{part}/: variance_type {kind!r} is not supported")
    require(
        (kind == "learned_range") == learned,
        f"{part}/: variance_type {kind!r} does not fit the model, which "
        + ("predicts a variance (twice the image channels)" if learned else "predicts no variance"),
    )
    return "learned_range" if learned else "fixed_small"


def caption_length(text: ConfigFile, tokenizer_cfg: ConfigFile) -> int:
    """Caption tokens L: the tokenizer's model_max_length, at most the text tower's positions."""
    positions = text.integer("max_position_embeddings", 77)
    length = tokenizer_cfg.integer("model_max_length") if tokenizer_cfg.get("model_max_length") else positions
    return min(length, positions)


def diffusion_prior_settings(
    text: ConfigFile, prior: ConfigFile, scheduler: ConfigFile, length: int, part: str, scheduler_part: str,
    scheduler_classes: tuple[str, ...] = ("UnCLIPScheduler",), text_part: str = "text_encoder",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(diffusion-prior settings, unclip-scheduler settings)`` of a diffusers PriorTransformer
    part read with a CLIPTextModelWithProjection (Karlo's, Kandinsky 2.2's and Stable unCLIP's
    priors; the last's scheduler is a DDPMScheduler, its text tower ``prior_text_encoder/``)."""
    width = text.integer("hidden_size", 512)
    embed_dim = text.integer("projection_dim", 512)
    require(prior.integer("embedding_dim") == embed_dim,
             f"{part}/: embedding_dim {prior['embedding_dim']} differs from the text encoder's projection_dim {embed_dim}")
    require(prior.integer("num_embeddings", 77) == length,
             f"{part}/: num_embeddings {prior.get('num_embeddings')} differs from the tokenizer's length {length}")
    require(width == embed_dim,
             f"{text_part}/: hidden_size {width} differs from projection_dim {embed_dim}; the prior reads "
             "caption tokens of the embedding's width")
    sampler = unclip_scheduler_settings(scheduler, scheduler_part, "sample", scheduler_classes)
    settings = {
        "embed_dim": embed_dim,
        "text_width": width,
        "context_length": length,
        "num_layers": prior.integer("num_layers"),
        "num_attention_heads": prior.integer("num_attention_heads"),
        "attention_head_dim": prior.integer("attention_head_dim"),
        "beta_schedule": "cosine",
        "num_train_timesteps": scheduler.integer("num_train_timesteps", 1000),
        "variance_type": variance_setting(scheduler, scheduler_part, False),
        "clip_range": sampler.get("clip_sample_range"),
        "normalize_output": False,
    }
    return settings, sampler


def tokenizer_config(source: Path, part: str = "tokenizer") -> ConfigFile:
    """The folder's ``<part>/tokenizer_config.json`` (empty where there is none)."""
    if (source / part / "tokenizer_config.json").is_file():
        return read_config(source, part, "tokenizer_config.json")
    return ConfigFile({}, "")


def clip_encoder_settings(source: Path, text: ConfigFile, length: int, processor: str) -> dict[str, Any]:
    """The ``hf-clip`` encoder's raw settings: the text tower's config, and where the folder
    has ``image_encoder/`` the image tower's with the ``processor/`` folder's mean and std."""
    encoder: dict[str, Any] = {"text_config": dict(text), "context_length": length}
    if (source / "image_encoder").is_dir():
        encoder["vision_config"] = read_json(source / "image_encoder" / "config.json")
        if (source / processor / "preprocessor_config.json").is_file():
            pre = read_config(source, processor, "preprocessor_config.json")
            if pre.get("image_mean"):
                encoder["image_mean"] = pre.numbers("image_mean")
            if pre.get("image_std"):
                encoder["image_std"] = pre.numbers("image_std")
    return encoder
