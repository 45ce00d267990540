"""Importing Karlo: a diffusers ``UnCLIPPipeline`` folder (``kakaobrain/karlo-v1-alpha``'s
layout) turned into a recipe and safetensors weights for unclip's own components.

The folder's parts map one to one onto registered components, by name (the core never
imports a plugin):

=======================================  ==========================================
diffusers folder                         unclip slot and component
=======================================  ==========================================
``text_encoder/`` ``tokenizer/``         ``encoder``: ``hf-clip``
(``image_encoder/``, if present)         (its image tower)
``prior/`` ``prior_scheduler/``          ``prior``: ``diffusion-prior`` + ``unclip-scheduler``
``decoder/`` ``text_proj/``              ``decoder``: ``unclip-decoder`` + ``unclip-scheduler``
``decoder_scheduler/``
``super_res_first/`` ``super_res_last/`` ``upsamplers.0``: ``unet-upsampler`` (two UNets)
``super_res_scheduler/``                 + ``unclip-scheduler``
=======================================  ==========================================

Every setting is derived from the folder's ``config.json`` files; each component is then built
(on the meta device: no memory, no time) and must reproduce the folder's model configs key for
key and take the converted weights name for name and shape for shape. The null captions of
classifier-free guidance (diffusers encodes ``""`` at every call) are CLIP's encoding of ``""``,
computed once here and stored in the prior's and decoder's weights as their learned null
captions; the recipe itself sets ``null_caption: empty``, so the pipeline encodes ``""`` beside
the prompts at every call, exactly as diffusers does.

Output is written to a hidden temporary folder beside the destination and renamed into place
only when complete, so an interrupted or failed import never leaves a half-written folder.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml

from unclip_core.errors import CheckpointError, InputError, RecipeError, UnclipError
from unclip_core.output_paths import check_writable
from unclip_core.weights import atomic_save_safetensors, check_state_dict, read_safetensors

MODEL_PARTS = ("text_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last")
SCHEDULER_PARTS = ("prior_scheduler", "decoder_scheduler", "super_res_scheduler")
PARTS = ("text_encoder", "tokenizer", "prior", "text_proj", "decoder", "super_res_first", "super_res_last", *SCHEDULER_PARTS)
"""The sub-folders of a diffusers unCLIP (Karlo) folder; ``image_encoder/`` is optional."""

RECIPE_NAME = "karlo.yaml"
DEFAULT_PROMPT = "a horse grazing on a hill, digital art"

WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
)
"""Weight files looked for in each part, in order (transformers and diffusers names, sharded
indexes, tensors-only torch files read with ``weights_only=True``, fp16 variants last)."""

_IGNORED_CONFIG_KEYS = {"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"}


# --------------------------------------------------------------------------------------
# Reading the folder
# --------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path.parent.name}/: no {path.name}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path.parent.name}/{path.name} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path.parent.name}/{path.name} is not a JSON object")
    return data


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if path.name.endswith(".index.json"):
        index = _read_json(path)
        shards = sorted(set((index.get("weight_map") or {}).values()))
        if not shards:
            raise CheckpointError(f"{path.parent.name}/{path.name} lists no weight shards")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(_load_file(path.parent / shard))
        return state
    if path.suffix == ".bin":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one error
            raise CheckpointError(f"{path.parent.name}/{path.name} is not a readable tensors-only torch file ({exc})") from None
        return dict(state)
    return read_safetensors(path)


def read_weights(part: Path) -> dict[str, torch.Tensor]:
    """The tensors of one model part (``prior/``, ``decoder/``, ...)."""
    for name in WEIGHT_FILES:
        if (part / name).is_file():
            return _load_file(part / name)
    raise CheckpointError(f"{part.name}/: no weights file (looked for {', '.join(WEIGHT_FILES[:2])}, ...)")


def check_folder(source: Path) -> None:
    """One-line error unless ``source`` holds every part of a diffusers unCLIP folder."""
    if source.exists() and not source.is_dir():
        raise InputError(f"{source} is a file, not a Karlo folder (give the folder that holds text_encoder/, prior/, ...)")
    if not source.is_dir():
        raise InputError(f"Karlo folder not found: {source}")
    missing = [f"{part}/" for part in PARTS if not (source / part).is_dir()]
    if len(missing) == len(PARTS):
        raise InputError(
            f"{source} is not a Karlo (diffusers unCLIP) folder: it has none of {', '.join(missing)}"
        )
    if missing:
        raise InputError(
            f"{source} is not a complete Karlo (diffusers unCLIP) folder: missing {', '.join(missing)} "
            f"(expected {', '.join(p + '/' for p in PARTS)})"
        )


def check_tokenizer(folder: Path) -> None:
    """One-line error unless ``folder`` (the Karlo folder's ``tokenizer/``) holds a CLIP
    tokenizer transformers can load: its files named, its JSON readable."""
    if not (folder / "tokenizer.json").is_file() and not (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    ):
        what = "is empty" if not any(folder.iterdir()) else "holds no tokenizer.json (nor vocab.json with merges.txt)"
        raise InputError(f"{folder.name}/ {what}: expected the tokenizer files of a CLIP tokenizer")
    for name in ("tokenizer.json", "vocab.json"):
        if (folder / name).is_file():
            _read_json(folder / name)
    try:
        from transformers import CLIPTokenizer
    except ImportError:  # pragma: no cover - the hf-clip build names the missing package
        return
    try:
        CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever transformers raises is one line
        raise InputError(
            f"{folder.name}/: transformers cannot load it as a CLIP tokenizer ({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from None


# --------------------------------------------------------------------------------------
# Settings from the folder's configs
# --------------------------------------------------------------------------------------
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
    return _Config(_read_json(source / part / name), f"{part}/{name}")


def _scheduler(config: _Config, part: str, prediction: str) -> dict[str, Any]:
    """The ``unclip-scheduler`` settings of a scheduler config, after checking what the model must match."""
    _require(config.get("_class_name", "UnCLIPScheduler") == "UnCLIPScheduler",
             f"{part}/: expected an UnCLIPScheduler, got {config.get('_class_name')}")
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


def derive_settings(source: Path) -> dict[str, Any]:
    """Every component's settings (and the samplers') from the folder's config files. A value
    missing or of the wrong type is an error naming the file and the key."""
    cfg = {part: _config(source, part) for part in MODEL_PARTS}
    sched = {part: _config(source, part, "scheduler_config.json") for part in SCHEDULER_PARTS}
    tokenizer_file = source / "tokenizer" / "tokenizer_config.json"
    tokenizer_cfg = _config(source, "tokenizer", "tokenizer_config.json") if tokenizer_file.is_file() else _Config({}, "")

    text = cfg["text_encoder"]
    width = text.integer("hidden_size", 512)
    embed_dim = text.integer("projection_dim", 512)
    positions = text.integer("max_position_embeddings", 77)
    length = tokenizer_cfg.integer("model_max_length") if tokenizer_cfg.get("model_max_length") else positions
    length = min(length, positions)

    prior = cfg["prior"]
    _require(prior.integer("embedding_dim") == embed_dim,
             f"prior/: embedding_dim {prior['embedding_dim']} differs from the text encoder's projection_dim {embed_dim}")
    _require(prior.integer("num_embeddings", 77) == length,
             f"prior/: num_embeddings {prior.get('num_embeddings')} differs from the tokenizer's length {length}")
    _require(width == embed_dim,
             f"text_encoder/: hidden_size {width} differs from projection_dim {embed_dim}; Karlo's prior reads "
             "caption tokens of the embedding's width")
    prior_sampler = _scheduler(sched["prior_scheduler"], "prior_scheduler", "sample")
    prior_settings = {
        "embed_dim": embed_dim,
        "text_width": width,
        "context_length": length,
        "num_layers": prior.integer("num_layers"),
        "num_attention_heads": prior.integer("num_attention_heads"),
        "attention_head_dim": prior.integer("attention_head_dim"),
        "beta_schedule": "cosine",
        "num_train_timesteps": sched["prior_scheduler"].integer("num_train_timesteps", 1000),
        "variance_type": _variance(sched["prior_scheduler"], "prior_scheduler", False),
        "clip_range": prior_sampler.get("clip_sample_range"),
        "normalize_output": False,
    }

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
    differing = sorted(k for k in set(first) | set(last) if k not in _IGNORED_CONFIG_KEYS and first.get(k) != last.get(k))
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

    encoder: dict[str, Any] = {"text_config": dict(text), "context_length": length}
    if (source / "image_encoder").is_dir():
        encoder["vision_config"] = _read_json(source / "image_encoder" / "config.json")
        if (source / "feature_extractor" / "preprocessor_config.json").is_file():
            pre = _config(source, "feature_extractor", "preprocessor_config.json")
            if pre.get("image_mean"):
                encoder["image_mean"] = pre.numbers("image_mean")
            if pre.get("image_std"):
                encoder["image_std"] = pre.numbers("image_std")
    return {
        "encoder": encoder,
        "prior": prior_settings,
        "prior_sampler": prior_sampler,
        "decoder": decoder_settings,
        "decoder_sampler": decoder_sampler,
        "upsampler": upsampler_settings,
        "upsampler_sampler": upsampler_sampler,
    }


# --------------------------------------------------------------------------------------
# Building and checking the components
# --------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_same_config(part: str, theirs: Mapping[str, Any], model: Any) -> None:
    """The folder's model config and the diffusers model unclip's component builds agree on
    every setting. A key the folder's config leaves out (an older diffusers wrote it) means the
    class default, as when diffusers loads it; a key the installed diffusers does not know is
    ignored, as diffusers' own loader ignores it."""
    import inspect

    ours = model.config
    defaults = {
        name: param.default
        for name, param in inspect.signature(type(model).__init__).parameters.items()
        if param.default is not inspect.Parameter.empty
    }
    differing = []
    for key in sorted(ours):
        if key in _IGNORED_CONFIG_KEYS or (key not in theirs and key not in defaults):
            continue
        wanted = theirs[key] if key in theirs else defaults[key]
        if _plain(wanted) != _plain(ours[key]):
            differing.append(f"{key}={wanted!r} (unclip builds {ours[key]!r})")
    if differing:
        raise InputError(f"{part}/config.json describes a model unclip does not build: {'; '.join(differing[:4])}")


@contextmanager
def _on_meta() -> Iterator[None]:
    """Build modules without allocating or initialising their parameters."""
    with torch.device("meta"):
        yield


def _build(registry: Any, kind: str, name: str, settings: dict[str, Any], base_dir: Path, *, meta: bool) -> tuple[Any, Any]:
    spec = registry.get(kind, name)
    try:
        config = spec.config_model.model_validate(settings, context={"base_dir": base_dir})
    except Exception as exc:  # noqa: BLE001 - pydantic's report, on one line
        raise InputError(f"{kind} {name!r}: the folder's settings are not valid: {' '.join(str(exc).split())}") from None
    if meta:
        with _on_meta():
            return spec.build(config), config
    return spec.build(config), config


def _prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": value for key, value in state.items()}


def _fits(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Checked names and shapes; position ids that older transformers saved are dropped."""
    expected = module.state_dict()
    for key in [k for k in state if k.endswith("position_ids") and k not in expected]:
        del state[key]
    check_state_dict(module, state, source)


# --------------------------------------------------------------------------------------
# The import
# --------------------------------------------------------------------------------------
def _run_line(recipe: Path) -> str:
    try:
        shown = os.path.relpath(recipe)
    except ValueError:  # another drive (Windows)
        shown = str(recipe)
    if shown.startswith(".."):
        shown = str(recipe)
    return f'# Run: unclip generate "{DEFAULT_PROMPT}" -r {shown}'


def _recipe(source: Path, settings: dict[str, Any], encoder_config: Any, run_line: str) -> tuple[str, dict[str, Any]]:
    encoder = encoder_config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    encoder["tokenizer"] = "tokenizer"
    data = {
        "name": source.name,
        "description": f"Karlo ({source.name}) imported by `unclip import karlo`: diffusers' UnCLIPPipeline, "
        "same weights, same sampling.",
        "encoder": {"type": "hf-clip", "config": encoder, "weights": "encoder.safetensors"},
        "prior": {
            "type": "diffusion-prior",
            "config": settings["prior"],
            "weights": "prior.safetensors",
            "guidance_scale": 4.0,
            "candidates": 1,
            "null_caption": "empty",
            "sampler": {"type": "unclip-scheduler", "config": {"steps": 25, **settings["prior_sampler"]}},
        },
        "decoder": {
            "type": "unclip-decoder",
            "config": settings["decoder"],
            "weights": "decoder.safetensors",
            "guidance_scale": 8.0,
            "null_caption": "empty",
            "sampler": {"type": "unclip-scheduler", "config": {"steps": 25, **settings["decoder_sampler"]}},
        },
        "upsamplers": [
            {
                "type": "unet-upsampler",
                "config": settings["upsampler"],
                "weights": "upsampler.safetensors",
                "sampler": {"type": "unclip-scheduler", "config": {"steps": 7, **settings["upsampler_sampler"]}},
            }
        ],
        "runtime": {"device": "cpu", "precision": "auto"},
    }
    header = (
        f"{run_line}\n"
        f"# Karlo imported from {source} by `unclip import karlo` (see docs/karlo.md).\n"
        "# Defaults are diffusers' UnCLIPPipeline's: guidance 4 (prior) and 8 (decoder), 25/25/7 steps.\n"
        "# precision auto: on the CPU the fastest mode a one-off probe shows really computes in bf16\n"
        "# (`unclip doctor` shows it), bf16 autocast on bf16 GPUs, fp32 elsewhere (docs/recipes.md).\n"
        "# With runtime.precision=fp32 runtime.memory_format=contiguous and the same seed, the images\n"
        "# match diffusers' to 1e-4; the default channels-last layout differs from them by rounding only.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=100), data


def _check_out(out: Path, source: Path, force: bool) -> None:
    """The output folder may be new, or (with ``force``) an earlier import's folder; never a
    file, the Karlo folder or a folder holding it, nor a folder of something else."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; --force replaces only an output folder")
    if out == source or source in out.parents:
        raise InputError(f"the output folder {out} must not be inside the Karlo folder {source}")
    if out in source.parents:
        raise InputError(f"the output folder {out} holds the Karlo folder {source}; choose another --out")
    if not out.exists():
        check_writable(out, "output folder", folder=True)  # a file in its path, or no permission
        return
    if not force:
        raise InputError(f"{out} already exists; choose another --out or pass --force to replace it")
    if any(out.iterdir()) and not (out / RECIPE_NAME).is_file():
        raise InputError(
            f"{out} is not a folder unclip import karlo wrote (it has no {RECIPE_NAME}); "
            "--force replaces only such a folder"
        )


def import_karlo(source: str | Path, out: str | Path | None = None, *, force: bool = False, registry: Any = None) -> Path:
    """Convert a diffusers Karlo folder into ``out`` (default ``./<folder name>-unclip``):
    ``karlo.yaml``, ``encoder|prior|decoder|upsampler.safetensors`` and ``tokenizer/``.
    Returns the recipe's path. Raises a one-line :class:`UnclipError` subclass on any problem."""
    from unclip_core.recipe.validate import validate_recipe
    from unclip_core.registry import default_registry

    registry = registry or default_registry()
    if out is not None and not str(out).strip():
        raise InputError("--out is empty; give the folder to write")
    source = Path(source).expanduser().resolve()
    check_folder(source)
    out = Path(out).expanduser() if out is not None else Path.cwd() / f"{source.name}-unclip"
    out = out.resolve()
    _check_out(out, source, force)
    settings = derive_settings(source)
    check_tokenizer(source / "tokenizer")

    made = [parent for parent in out.parents if not parent.exists()]  # innermost first, removed on failure
    work = out.parent / f".{out.name}.importing-{secrets.token_hex(4)}"
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            work.mkdir()
        except OSError as exc:
            raise InputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
        try:
            shutil.copytree(source / "tokenizer", work / "tokenizer")
        except (OSError, shutil.Error) as exc:
            raise InputError(f"tokenizer/: cannot copy it ({' '.join(str(exc).split())})") from None

        # encoder: built for real (it encodes the null caption below)
        enc_settings = {**settings["encoder"], "tokenizer": "tokenizer", "normalize": False}
        text_cfg = enc_settings.pop("text_config")
        vision_cfg = enc_settings.pop("vision_config", None)
        spec = registry.get("encoder", "hf-clip")
        try:
            encoder_config = spec.config_model.from_transformers(
                text_cfg, vision_config=vision_cfg, tokenizer=str(work / "tokenizer"), **{
                    k: v for k, v in enc_settings.items() if k != "tokenizer"
                }
            )
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"text_encoder/config.json: {' '.join(str(exc).split())}") from None
        try:
            with torch.random.fork_rng(devices=[]):
                encoder = spec.build(encoder_config)
        except UnclipError:
            raise
        except Exception as exc:  # noqa: BLE001 - transformers' complaint about the config, on one line
            raise InputError(
                f"text_encoder/config.json: transformers cannot build the text encoder from it "
                f"({type(exc).__name__}: {' '.join(str(exc).split())})"
            ) from None
        state = _prefixed("text_encoder", read_weights(source / "text_encoder"))
        if vision_cfg is not None:
            state.update(_prefixed("image_encoder", read_weights(source / "image_encoder")))
        _fits(encoder, state, "text_encoder/ (and image_encoder/)")
        encoder.load_state_dict(state, strict=True)
        encoder.eval()
        with torch.no_grad():
            null = encoder.encode_text([""])
        null_state = {
            "null_text_embed": null.embed[0].float().contiguous(),
            "null_text_tokens": null.tokens[0].float().contiguous(),
            "null_text_mask": null.mask[0].contiguous(),
        }
        atomic_save_safetensors(state, work / "encoder.safetensors", {"source": str(source), "format": "unclip-karlo"})
        del encoder, state

        prior, _ = _build(registry, "prior", "diffusion-prior", settings["prior"], work, meta=True)
        check_same_config("prior", _read_json(source / "prior" / "config.json"), prior.transformer)
        state = {**_prefixed("transformer", read_weights(source / "prior")), **null_state}
        _fits(prior, state, "prior/")
        atomic_save_safetensors(state, work / "prior.safetensors", {"source": str(source), "format": "unclip-karlo"})
        del prior, state

        decoder, _ = _build(registry, "decoder", "unclip-decoder", settings["decoder"], work, meta=True)
        check_same_config("decoder", _read_json(source / "decoder" / "config.json"), decoder.unet)
        text_proj = read_weights(source / "text_proj")
        state = {**_prefixed("unet", read_weights(source / "decoder")), **_prefixed("text_proj", text_proj), **null_state}
        _fits(decoder, state, "decoder/ and text_proj/")
        atomic_save_safetensors(state, work / "decoder.safetensors", {"source": str(source), "format": "unclip-karlo"})
        del decoder, state, text_proj

        upsampler, _ = _build(registry, "upsampler", "unet-upsampler", settings["upsampler"], work, meta=True)
        check_same_config("super_res_first", _read_json(source / "super_res_first" / "config.json"), upsampler.unet)
        state = {
            **_prefixed("unet", read_weights(source / "super_res_first")),
            **_prefixed("unet_last", read_weights(source / "super_res_last")),
        }
        _fits(upsampler, state, "super_res_first/ and super_res_last/")
        atomic_save_safetensors(state, work / "upsampler.safetensors", {"source": str(source), "format": "unclip-karlo"})
        del upsampler, state

        text, data = _recipe(source, settings, encoder_config, _run_line(out / RECIPE_NAME))
        (work / RECIPE_NAME).write_text(text, encoding="utf-8")
        try:
            validate_recipe(data, registry, base_dir=work, source=work / RECIPE_NAME)
        except RecipeError as exc:
            raise UnclipError(f"the imported recipe does not validate: {' '.join(str(exc).split())}") from None

        if out.exists():  # --force: swap the old folder out only once the new one is complete
            old = out.parent / f".{out.name}.replaced-{secrets.token_hex(4)}"
            os.replace(out, old)
            os.replace(work, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        for parent in made:
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return out / RECIPE_NAME
