"""Importing the parts an unCLIP-family diffusers folder shares with the others: the CLIP
encoder (``text_encoder/``, ``tokenizer/``, ``image_encoder/``) as the ``hf-clip`` component and a
``PriorTransformer`` as ``diffusion-prior``, their recipe slots, and weights checked name for name
and shape for shape. The components are looked up in the registry by name, so this library
depends on no plugin's code."""
from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from unclip_core.errors import InputError, UnclipError
from unclip_core.importing import build_component, check_same_config
from unclip_core.weights import atomic_save_safetensors, check_state_dict

from .files import read_json, read_weights


def prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every name under ``prefix.`` (a part's weights as a submodule's)."""
    return {f"{prefix}.{key}": value for key, value in state.items()}


def fit_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``state`` checked against ``module``'s names and shapes (one error naming ``source``);
    position ids that older transformers saved are dropped first."""
    expected = module.state_dict()
    for key in [k for k in state if k.endswith("position_ids") and k not in expected]:
        del state[key]
    check_state_dict(module, state, source)


def encoder_and_prior_slots(settings: dict[str, Any], encoder_config: Any) -> dict[str, Any]:
    """The recipe's ``encoder`` and ``prior`` slots for weights written by
    :func:`import_clip_encoder` and :func:`import_prior`: diffusers' prior defaults (guidance
    4, 25 steps, no best-of), the empty caption as the unconditional one."""
    encoder = encoder_config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    encoder["tokenizer"] = "tokenizer"
    return {
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
    }


def import_clip_encoder(
    registry: Any, source: Path, settings: dict[str, Any], work: Path, *, text_part: str = "text_encoder",
    tokenizer: str = "tokenizer", tokenizer_from: Path | None = None, text_state: dict[str, torch.Tensor] | None = None,
    **extra: Any,
) -> tuple[Any, Any, dict[str, torch.Tensor]]:
    """The ``hf-clip`` encoder of a diffusers folder (``text_encoder/``, ``tokenizer/`` copied
    to ``work``, and ``image_encoder/`` where ``settings`` has a vision config), built for
    real and saved as ``work/encoder.safetensors``. Returns ``(encoder, its config, CLIP's
    encoding of "" as the prior's and decoder's null caption weights)``. ``text_part`` names
    another text tower folder (Stable unCLIP's ``prior_text_encoder/``); the tokenizer is copied
    from ``tokenizer_from`` (default the folder's ``tokenizer/``) to ``work/<tokenizer>``;
    ``text_state`` gives the text tower's weights (``text_encoder.*``) in place of the folder's
    (an imported recipe's encoder, named by ``text_part`` in errors); ``extra``: further
    ``hf-clip`` settings."""
    tokenizer_from = Path(tokenizer_from) if tokenizer_from is not None else source / "tokenizer"
    try:
        shutil.copytree(tokenizer_from, work / tokenizer)
    except (OSError, shutil.Error) as exc:
        raise InputError(f"{tokenizer_from.name}/: cannot copy it ({' '.join(str(exc).split())})") from None
    enc_settings = {**settings, "normalize": False, **extra}
    text_cfg = enc_settings.pop("text_config")
    vision_cfg = enc_settings.pop("vision_config", None)
    spec = registry.get("encoder", "hf-clip")
    try:
        encoder_config = spec.config_model.from_transformers(
            text_cfg, vision_config=vision_cfg, tokenizer=str(work / tokenizer), **{
                k: v for k, v in enc_settings.items() if k != "tokenizer"
            }
        )
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{text_part}/config.json: {' '.join(str(exc).split())}") from None
    try:
        with torch.random.fork_rng(devices=[]):
            encoder = spec.build(encoder_config)
    except UnclipError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers' complaint about the config, on one line
        raise InputError(
            f"{text_part}/config.json: transformers cannot build the text encoder from it "
            f"({type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from None
    state = dict(text_state) if text_state is not None else prefixed("text_encoder", read_weights(source / text_part))
    if vision_cfg is not None:
        state.update(prefixed("image_encoder", read_weights(source / "image_encoder")))
    fit_state_dict(encoder, state, f"{text_part}/ (and image_encoder/)")
    encoder.load_state_dict(state, strict=True)
    encoder.eval()
    with torch.no_grad():
        null = encoder.encode_text([""])
    null_state = {
        "null_text_embed": null.embed[0].float().contiguous(),
        "null_text_tokens": null.tokens[0].float().contiguous(),
        "null_text_mask": null.mask[0].contiguous(),
    }
    atomic_save_safetensors(state, work / "encoder.safetensors", {"source": str(source), "format": "unclip-import"})
    return encoder, encoder_config, null_state


def import_prior(registry: Any, part: Path, settings: dict[str, Any], null_state: dict[str, torch.Tensor], work: Path) -> None:
    """A diffusers PriorTransformer folder (``part``) as ``diffusion-prior`` weights in
    ``work/prior.safetensors``, with ``null_state`` as its null caption."""
    prior, _ = build_component(registry, "prior", "diffusion-prior", settings, work, meta=True)
    check_same_config(part.name, read_json(part / "config.json"), prior.transformer)
    state = {**prefixed("transformer", read_weights(part)), **null_state}
    fit_state_dict(prior, state, f"{part.name}/")
    atomic_save_safetensors(state, work / "prior.safetensors", {"source": str(part.parent), "format": "unclip-import"})
