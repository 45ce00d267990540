"""``unclip import karlo``: a diffusers ``UnCLIPPipeline`` folder (``kakaobrain/karlo-v1-alpha``'s
layout) turned into a recipe and safetensors weights for unclip's own components.

The folder's parts map one to one onto registered components, by name :

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

import argparse
from pathlib import Path
from typing import Any

import yaml

from unclip_core.errors import InputError, RecipeError, UnclipError
from unclip_core.importing import build_component, check_output_folder, check_same_config, run_line, staged_folder
from unclip_core.recipe.validate import validate_recipe
from unclip_core.registry import default_registry
from unclip_core.weights import atomic_save_safetensors
from unclip_plugins.diffusers_folders.files import check_tokenizer, read_json, read_weights
from unclip_plugins.diffusers_folders.importing import (
    encoder_and_prior_slots,
    fit_state_dict,
    import_clip_encoder,
    import_prior,
    prefixed,
)

from .folder import check_folder
from .settings import derive_settings

RECIPE_NAME = "karlo.yaml"
DEFAULT_PROMPT = "a horse grazing on a hill, digital art"


class KarloImporter:
    """``unclip import karlo FOLDER [-o OUT] [--force]``, registered through ``register_importers``."""

    help = "a local diffusers Karlo folder (kakaobrain/karlo-v1-alpha layout) → recipe + safetensors"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("folder", help="the Karlo folder: text_encoder/, tokenizer/, prior/, text_proj/, decoder/, "
                            "super_res_first/, super_res_last/ and the three *_scheduler/ folders")
        parser.add_argument("-o", "--out", default=None, help="folder to write (default: ./<folder name>-unclip)")
        parser.add_argument("--force", action="store_true",
                            help="replace an existing output folder (one an earlier import wrote; never a file)")

    def run(self, args: argparse.Namespace) -> Path:
        return import_karlo(args.folder, args.out, force=args.force)


def _recipe(source: Path, settings: dict[str, Any], encoder_config: Any, run_line: str) -> tuple[str, dict[str, Any]]:
    data = {
        "name": source.name,
        "description": f"Karlo ({source.name}) imported by `unclip import karlo`: diffusers' UnCLIPPipeline, "
        "same weights, same sampling.",
        **encoder_and_prior_slots(settings, encoder_config),
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
        "# match diffusers' bit for bit; the default channels-last layout differs from them by rounding only.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=100), data


def import_karlo(source: str | Path, out: str | Path | None = None, *, force: bool = False, registry: Any = None) -> Path:
    """Convert a diffusers Karlo folder into ``out`` (default ``./<folder name>-unclip``):
    ``karlo.yaml``, ``encoder|prior|decoder|upsampler.safetensors`` and ``tokenizer/``.
    Returns the recipe's path. Raises a one-line :class:`UnclipError` subclass on any problem."""
    registry = registry or default_registry()
    if out is not None and not str(out).strip():
        raise InputError("--out is empty; give the folder to write")
    source = Path(source).expanduser().resolve()
    check_folder(source)
    out = Path(out).expanduser() if out is not None else Path.cwd() / f"{source.name}-unclip"
    out = out.resolve()
    check_output_folder(out, source, force=force, marker=RECIPE_NAME, command="unclip import karlo", source_name="the Karlo folder")
    settings = derive_settings(source)
    check_tokenizer(source / "tokenizer")

    with staged_folder(out) as work:
        encoder, encoder_config, null_state = import_clip_encoder(registry, source, settings["encoder"], work)
        del encoder
        import_prior(registry, source / "prior", settings["prior"], null_state, work)

        decoder, _ = build_component(registry, "decoder", "unclip-decoder", settings["decoder"], work, meta=True)
        check_same_config("decoder", read_json(source / "decoder" / "config.json"), decoder.unet)
        text_proj = read_weights(source / "text_proj")
        state = {**prefixed("unet", read_weights(source / "decoder")), **prefixed("text_proj", text_proj), **null_state}
        fit_state_dict(decoder, state, "decoder/ and text_proj/")
        atomic_save_safetensors(state, work / "decoder.safetensors", {"source": str(source), "format": "unclip-karlo"})
        del decoder, state, text_proj

        upsampler, _ = build_component(registry, "upsampler", "unet-upsampler", settings["upsampler"], work, meta=True)
        check_same_config("super_res_first", read_json(source / "super_res_first" / "config.json"), upsampler.unet)
        state = {
            **prefixed("unet", read_weights(source / "super_res_first")),
            **prefixed("unet_last", read_weights(source / "super_res_last")),
        }
        fit_state_dict(upsampler, state, "super_res_first/ and super_res_last/")
        atomic_save_safetensors(state, work / "upsampler.safetensors", {"source": str(source), "format": "unclip-karlo"})
        del upsampler, state

        text, data = _recipe(source, settings, encoder_config, run_line(out / RECIPE_NAME, DEFAULT_PROMPT))
        (work / RECIPE_NAME).write_text(text, encoding="utf-8")
        try:
            validate_recipe(data, registry, base_dir=work, source=work / RECIPE_NAME)
        except RecipeError as exc:
            raise UnclipError(f"the imported recipe does not validate: {' '.join(str(exc).split())}") from None

    return out / RECIPE_NAME
