"""``unclip import kandinsky22 PRIOR_DIR DECODER_DIR``: diffusers' ``KandinskyV22PriorPipeline``
and ``KandinskyV22Pipeline`` folders (``kandinsky-community/kandinsky-2-2-prior`` and
``-decoder`` layouts) turned into one recipe with safetensors weights.

=====================================================  ==========================================
diffusers folders                                      unclip slot and component
=====================================================  ==========================================
prior: ``text_encoder/`` ``tokenizer/``                ``encoder``: ``hf-clip``
``image_encoder/`` ``image_processor/``                (its image tower)
prior: ``prior/`` ``scheduler/``                       ``prior``: ``diffusion-prior`` + ``unclip-scheduler``
decoder: ``unet/`` ``scheduler/``                      ``decoder``: ``kandinsky22-decoder`` + ``diffusers-scheduler``
decoder: ``movq/``                                     ``decoder.autoencoder``: ``vq``
=====================================================  ==========================================

The prior's null caption is CLIP's encoding of ``""`` (``null_caption: empty`` encodes it at
run time, as diffusers does); the decoder's null image embedding — what the unconditional
branch reads when there is no negative prompt — is the image tower's embedding of an all-zero
input, diffusers' ``get_zero_embed``, computed here once. Output is staged in a hidden folder
and renamed into place only when complete.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import yaml

from unclip_core.errors import InputError, RecipeError, UnclipError
from unclip_core.importing import build_component, check_output_folder, check_same_config, run_line, staged_folder
from unclip_core.recipe.validate import validate_recipe
from unclip_core.registry import default_registry
from unclip_core.weights import atomic_save_safetensors, check_state_dict
from unclip_plugins.diffusers_folders.files import check_tokenizer, read_json, read_weights
from unclip_plugins.diffusers_folders.importing import encoder_and_prior_slots, import_clip_encoder, import_prior

from .settings import check_folders, derive_settings

RECIPE_NAME = "kandinsky22.yaml"
DEFAULT_PROMPT = "a red cat, 4k photo"


class Kandinsky22Importer:
    """``unclip import kandinsky22 PRIOR_DIR DECODER_DIR [-o OUT] [--force] [--image-size N]``."""

    help = "local diffusers Kandinsky 2.2 prior and decoder folders → one recipe + safetensors"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("prior", help="the KandinskyV22PriorPipeline folder: prior/, text_encoder/, tokenizer/, "
                            "image_encoder/, image_processor/, scheduler/")
        parser.add_argument("decoder", help="the KandinskyV22Pipeline folder: unet/, movq/, scheduler/")
        parser.add_argument("-o", "--out", default=None, help="folder to write (default: ./<decoder folder name>-unclip)")
        parser.add_argument("--force", action="store_true",
                            help="replace an existing output folder (one an earlier import wrote; never a file)")
        parser.add_argument("--image-size", type=int, default=512,
                            help="side of the images drawn, in pixels (diffusers' default: 512)")

    def run(self, args: argparse.Namespace) -> Path:
        return import_kandinsky22(args.prior, args.decoder, args.out, force=args.force, image_size=args.image_size)


def _recipe(prior: Path, decoder: Path, settings: dict[str, Any], encoder_config: Any, run: str) -> tuple[str, dict[str, Any]]:
    data = {
        "name": decoder.name,
        "description": f"Kandinsky 2.2 ({prior.name} + {decoder.name}) imported by `unclip import kandinsky22`: "
        "diffusers' KandinskyV22 pipelines, same weights, same sampling.",
        **encoder_and_prior_slots(settings, encoder_config),
        "decoder": {
            "type": "kandinsky22-decoder",
            "config": settings["decoder"],
            "weights": "decoder.safetensors",
            "guidance_scale": 4.0,
            "sampler": {"type": "diffusers-scheduler", "config": {"steps": 100, **settings["decoder_sampler"]}},
            "autoencoder": {"type": "vq", "config": settings["autoencoder"], "weights": "movq.safetensors"},
        },
        "runtime": {"device": "cpu", "precision": "auto"},
    }
    header = (
        f"{run}\n"
        f"# Kandinsky 2.2 imported from {prior} and {decoder} by `unclip import kandinsky22` (docs/latent.md).\n"
        "# Defaults are diffusers' KandinskyV22CombinedPipeline's: guidance 4 (prior and decoder), 25/100 steps.\n"
        "# With runtime.precision=fp32 runtime.memory_format=contiguous and the same seed, the images match\n"
        "# diffusers' within 1e-4 (docs/latent.md states the guarantee and its limits).\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=100), data


def import_kandinsky22(
    prior: str | Path, decoder: str | Path, out: str | Path | None = None, *, force: bool = False,
    image_size: int = 512, registry: Any = None,
) -> Path:
    """Convert the two diffusers folders into ``out`` (default ``./<decoder folder name>-unclip``):
    ``kandinsky22.yaml``, ``encoder|prior|decoder|movq.safetensors`` and ``tokenizer/``.
    Returns the recipe's path. Raises a one-line :class:`UnclipError` subclass on any problem."""
    registry = registry or default_registry()
    if out is not None and not str(out).strip():
        raise InputError("--out is empty; give the folder to write")
    prior, decoder = (Path(p).expanduser().resolve() for p in (prior, decoder))
    check_folders(prior, decoder)
    out = (Path(out).expanduser() if out is not None else Path.cwd() / f"{decoder.name}-unclip").resolve()
    for source, name in ((prior, "the prior folder"), (decoder, "the decoder folder")):
        check_output_folder(out, source, force=force, marker=RECIPE_NAME, command="unclip import kandinsky22", source_name=name)
    settings = derive_settings(prior, decoder, image_size)
    check_tokenizer(prior / "tokenizer")

    with staged_folder(out) as work:
        encoder, encoder_config, null_state = import_clip_encoder(registry, prior, settings["encoder"], work)
        with torch.no_grad():  # diffusers' get_zero_embed: the image tower on an all-zero input
            side = int(encoder_config.image_size)
            zero_embed = encoder.image_encoder(pixel_values=torch.zeros(1, 3, side, side)).image_embeds[0]
        del encoder
        import_prior(registry, prior / "prior", settings["prior"], null_state, work)

        model, _ = build_component(registry, "decoder", "kandinsky22-decoder", settings["decoder"], work, meta=True)
        check_same_config("unet", read_json(decoder / "unet" / "config.json"), model.unet)
        state = {**{f"unet.{k}": v for k, v in read_weights(decoder / "unet").items()},
                 "null_image_embed": zero_embed.float().contiguous()}
        check_state_dict(model, state, "unet/")
        atomic_save_safetensors(state, work / "decoder.safetensors", {"source": str(decoder), "format": "unclip-import"})
        del model, state

        movq, _ = build_component(registry, "autoencoder", "vq", settings["autoencoder"], work, meta=True)
        check_same_config("movq", read_json(decoder / "movq" / "config.json"), movq.model)
        state = {f"model.{k}": v for k, v in read_weights(decoder / "movq").items()}
        check_state_dict(movq, state, "movq/")
        atomic_save_safetensors(state, work / "movq.safetensors", {"source": str(decoder), "format": "unclip-import"})
        del movq, state

        text, data = _recipe(prior, decoder, settings, encoder_config, run_line(out / RECIPE_NAME, DEFAULT_PROMPT))
        (work / RECIPE_NAME).write_text(text, encoding="utf-8")
        try:
            validate_recipe(data, registry, base_dir=work, source=work / RECIPE_NAME)
        except RecipeError as exc:
            raise UnclipError(f"the imported recipe does not validate: {' '.join(str(exc).split())}") from None
    return out / RECIPE_NAME

