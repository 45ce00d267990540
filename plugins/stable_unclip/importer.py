"""``unclip import stable-unclip``: a diffusers Stable unCLIP folder turned into a recipe and
safetensors weights for unclip's own components.

=================================================  ===========================================
diffusers folder                                   unclip slot and component
=================================================  ===========================================
``prior_text_encoder/`` ``prior_tokenizer/``       ``encoder``: ``hf-clip``
(``image_encoder/`` ``feature_extractor/``)        (its image tower, raw embeddings)
``prior/`` ``prior_scheduler/``                    ``prior``: ``diffusion-prior`` +
                                                   ``diffusers-saved-scheduler``
``unet/`` ``image_normalizer/``                    ``decoder``: ``stable-unclip-decoder`` +
``image_noising_scheduler/`` ``text_encoder/``     ``diffusers-saved-scheduler``
``tokenizer/`` ``scheduler/``
``vae/``                                           ``decoder.autoencoder``: ``kl``
=================================================  ===========================================

A ``StableUnCLIPPipeline`` folder has its prior. A ``StableUnCLIPImg2ImgPipeline`` folder has an
image encoder and no prior: ``--prior RECIPE`` takes the encoder's text tower and the prior from
another imported recipe — Karlo's (``unclip import karlo``), the combination diffusers documents —
whose sampler, if Karlo's ``unclip-scheduler``, becomes the ``DDPMScheduler`` diffusers builds from
that scheduler's config for it (``DDPMScheduler.from_config``). ``--prior`` also replaces a
text-to-image folder's own prior.

Every setting comes from the folders' config files; each component is built on the meta device
and must reproduce the folder's model configs key for key and take its weights name for name and
shape for shape. Output is written beside the destination and renamed into place only when
complete, so a failed import leaves nothing half-written.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

import yaml

from unclip_core.errors import InputError, RecipeError, UnclipError
from unclip_core.importing import build_component, check_output_folder, check_same_config, run_line, staged_folder
from unclip_core.recipe.validate import ResolvedRecipe, validate_recipe
from unclip_core.registry import default_registry
from unclip_core.weights import atomic_save_safetensors, read_safetensors
from unclip_plugins.diffusers_folders.files import check_tokenizer, read_json, read_weights
from unclip_plugins.diffusers_folders.importing import (
    encoder_and_prior_slots,
    fit_state_dict,
    import_clip_encoder,
    import_prior,
    prefixed,
)
from unclip_plugins.diffusers_folders.settings import (
    ConfigFile,
    caption_length,
    clip_encoder_settings,
    diffusion_prior_settings,
    read_config,
    tokenizer_config,
)

from .folder import IMAGE_TO_IMAGE, PRIOR_PARTS, TEXT_TO_IMAGE, folder_kind
from .settings import decoder_settings, saved_scheduler

RECIPE_NAME = "stable-unclip.yaml"
FORMAT = "unclip-stable-unclip"
DEFAULT_PROMPT = "an anime turtle"
PRIOR_TOKENIZER = "prior_tokenizer"


class StableUnclipImporter:
    """``unclip import stable-unclip FOLDER [--prior RECIPE] [-o OUT] [--force]``."""

    help = "a local diffusers Stable unCLIP folder (StableUnCLIPPipeline or StableUnCLIPImg2ImgPipeline) → recipe + safetensors"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("folder", help="the Stable unCLIP folder: unet/, vae/, text_encoder/, tokenizer/, scheduler/, "
                            "image_normalizer/, image_noising_scheduler/ and either prior_*/ and prior/ or image_encoder/")
        parser.add_argument("--prior", default=None, metavar="RECIPE",
                            help="take the prior (and the encoder's text tower) from this imported recipe, e.g. Karlo's; "
                            "needed for an img2img folder, which has no prior")
        parser.add_argument("--embedding-space", default=None, metavar="NAME",
                            help="name of the CLIP space the decoder reads (e.g. openai/clip-vit-large-patch14); "
                            "`recipe validate` then refuses a prior that names another")
        parser.add_argument("-o", "--out", default=None, help="folder to write (default: ./<folder name>-unclip)")
        parser.add_argument("--force", action="store_true",
                            help="replace an existing output folder (one an earlier import wrote; never a file)")

    def run(self, args: argparse.Namespace) -> Path:
        return import_stable_unclip(args.folder, args.out, prior=args.prior, embedding_space=args.embedding_space,
                                    force=args.force)


def ddpm_from_unclip_scheduler(sampler: dict[str, Any], prior: dict[str, Any]) -> dict[str, Any]:
    """Karlo's prior sampler (``unclip-scheduler``) as the ``DDPMScheduler`` diffusers makes of
    its config for Stable unCLIP (``DDPMScheduler.from_config(UnCLIPScheduler's config)``)."""
    config = sampler.get("config", {})
    saved = {
        "num_train_timesteps": prior.get("num_train_timesteps", 1000),
        "beta_schedule": "squaredcos_cap_v2",
        "variance_type": "fixed_small_log",
        "prediction_type": "sample",
        "clip_sample": config.get("clip_sample", True),
        "clip_sample_range": config.get("clip_sample_range", 1.0),
    }
    return {"type": "diffusers-saved-scheduler",
            "config": {"scheduler": "DDPMScheduler", "scheduler_config": saved, "steps": config.get("steps", 25)}}


def _prior_recipe(path: str | Path, registry: Any) -> ResolvedRecipe:
    from unclip_core.recipe.files import load_recipe

    try:
        return load_recipe(path, registry=registry)
    except UnclipError as exc:
        raise InputError(f"--prior {path}: {' '.join(str(exc).split())}") from None


def _copy_tokenizer(folder: Path, work: Path, name: str) -> None:
    try:
        shutil.copytree(folder, work / name)
    except (OSError, shutil.Error) as exc:
        raise InputError(f"{folder.name}/: cannot copy it ({' '.join(str(exc).split())})") from None


def _check_fit(recipe: ResolvedRecipe, source: Path, decoder: dict[str, Any]) -> None:
    """The recipe's prior samples what the folder's decoder reads: one line naming both, as
    ``recipe validate`` says it, before anything is written."""
    mine = recipe.prior.declared
    size = int(decoder["unet"]["projection_class_embeddings_input_dim"]) // 2
    space = decoder.get("embedding_space")
    where = f"--prior {recipe.source}: the prior ({recipe.prior.spec.name})"
    if mine.embed_dim is not None and mine.embed_dim != size:
        raise InputError(f"{where} samples embedding size {mine.embed_dim} but the decoder of {source.name} "
                         f"(stable-unclip-decoder) reads embedding size {size}; choose a prior of the decoder's embedding size")
    if space and mine.embedding_space and space != mine.embedding_space:
        raise InputError(f"{where} samples in {mine.embedding_space!r} but the decoder of {source.name} "
                         f"(stable-unclip-decoder) reads {space!r}; choose a prior of the decoder's embedding space")


def _encoder_and_prior_from_recipe(
    recipe: ResolvedRecipe, source: Path, kind: str, work: Path, registry: Any, decoder: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The recipe's encoder (with the folder's image tower, for an img2img folder) and prior
    slots, their files copied into ``work``."""
    encoder, prior = recipe.encoder, recipe.prior
    _check_fit(recipe, source, decoder)
    if prior.weights is None:
        raise InputError(f"--prior {recipe.source}: its prior names no weights file")
    prior_slot = {k: v for k, v in recipe.data["prior"].items()}
    prior_slot["weights"] = "prior.safetensors"
    shutil.copyfile(prior.weights, work / "prior.safetensors")
    sampler = prior_slot.get("sampler")
    if isinstance(sampler, dict) and sampler.get("type") == "unclip-scheduler":
        prior_slot["sampler"] = ddpm_from_unclip_scheduler(sampler, prior_slot.get("config", {}))
    if kind == TEXT_TO_IMAGE and encoder.spec.name != "hf-clip":
        return dict(recipe.data["encoder"]), prior_slot  # pragma: no cover - only hf-clip priors are documented
    if encoder.spec.name != "hf-clip" or encoder.weights is None:
        raise InputError(f"--prior {recipe.source}: its encoder is {encoder.spec.name!r}; an img2img folder's image tower "
                         "joins an hf-clip encoder with weights (as `unclip import karlo` writes)")
    config = encoder.config
    text_state = {k: v for k, v in read_safetensors(encoder.weights).items() if k.startswith("text_encoder.")}
    text = ConfigFile(dict(config.text_config), f"{recipe.source.name}'s encoder")
    if kind == IMAGE_TO_IMAGE:
        settings = clip_encoder_settings(source, text, config.length, "feature_extractor")
    else:
        settings = {"text_config": dict(text), "context_length": config.length}
    _, encoder_config, _ = import_clip_encoder(
        registry, source, settings, work, text_part=f"{recipe.source.name}'s encoder", tokenizer=PRIOR_TOKENIZER,
        tokenizer_from=Path(config.tokenizer), text_state=text_state, normalize=config.normalize, embedding_space=config.embedding_space,
    )
    return _encoder_slot(encoder_config), prior_slot


def _encoder_slot(encoder_config: Any) -> dict[str, Any]:
    """The shared ``encoder`` slot, reading ``prior_tokenizer/`` (``tokenizer/`` is SD's here)."""
    slot = encoder_and_prior_slots({"prior": {}, "prior_sampler": {}}, encoder_config)["encoder"]
    slot["config"]["tokenizer"] = PRIOR_TOKENIZER
    return slot


def _own_encoder_and_prior(source: Path, work: Path, registry: Any, space: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A text-to-image folder's own prior: its CLIP text tower and PriorTransformer."""
    text = read_config(source, "prior_text_encoder")
    length = caption_length(text, tokenizer_config(source, "prior_tokenizer"))
    prior, _ = diffusion_prior_settings(
        text, read_config(source, "prior"), read_config(source, "prior_scheduler", "scheduler_config.json"), length, "prior",
        "prior_scheduler", scheduler_classes=("DDPMScheduler",), text_part="prior_text_encoder",
    )
    check_tokenizer(source / PRIOR_PARTS[0])
    _, encoder_config, null_state = import_clip_encoder(
        registry, source, {"text_config": dict(text), "context_length": length}, work, text_part="prior_text_encoder",
        tokenizer=PRIOR_TOKENIZER, tokenizer_from=source / PRIOR_PARTS[0], embedding_space=space,
    )
    prior = {k: v for k, v in {**prior, "embedding_space": space}.items() if v is not None}
    import_prior(registry, source / "prior", prior, null_state, work)
    slots = encoder_and_prior_slots({"prior": prior, "prior_sampler": {}}, encoder_config)
    slots["prior"]["sampler"] = {
        "type": "diffusers-saved-scheduler",
        "config": saved_scheduler(read_config(source, "prior_scheduler", "scheduler_config.json"), 25),
    }
    return _encoder_slot(encoder_config), slots["prior"]


def _write_decoder(source: Path, work: Path, registry: Any, settings: dict[str, Any]) -> None:
    decoder, _ = build_component(registry, "decoder", "stable-unclip-decoder", settings["decoder"], work, meta=True)
    check_same_config("unet", read_json(source / "unet" / "config.json"), decoder.unet)
    state = {
        **prefixed("unet", read_weights(source / "unet")),
        **prefixed("image_normalizer", read_weights(source / "image_normalizer")),
        **prefixed("captions.model", read_weights(source / "text_encoder")),
    }
    fit_state_dict(decoder, state, "unet/, image_normalizer/ and text_encoder/")
    atomic_save_safetensors(state, work / "decoder.safetensors", {"source": str(source), "format": FORMAT})


def _write_autoencoder(source: Path, work: Path, registry: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The VAE as the ``kl`` autoencoder; returns its settings."""
    fields = registry.get("autoencoder", "kl").config_model.model_fields
    config = {k: v for k, v in settings.items() if k in fields}
    autoencoder, _ = build_component(registry, "autoencoder", "kl", config, work, meta=True)
    check_same_config("vae", read_json(source / "vae" / "config.json"), autoencoder.model)
    state = prefixed("model", read_weights(source / "vae"))
    fit_state_dict(autoencoder, state, "vae/")
    atomic_save_safetensors(state, work / "autoencoder.safetensors", {"source": str(source), "format": FORMAT})
    return config


def import_stable_unclip(
    source: str | Path, out: str | Path | None = None, *, prior: str | Path | None = None,
    embedding_space: str | None = None, force: bool = False, registry: Any = None,
) -> Path:
    """Convert a diffusers Stable unCLIP folder into ``out`` (default ``./<folder name>-unclip``):
    ``stable-unclip.yaml``, ``encoder|prior|decoder|autoencoder.safetensors``, ``tokenizer/`` and
    ``prior_tokenizer/``. Returns the recipe's path. Raises a one-line :class:`UnclipError`."""
    registry = registry or default_registry()
    if out is not None and not str(out).strip():
        raise InputError("--out is empty; give the folder to write")
    source = Path(source).expanduser().resolve()
    kind = folder_kind(source)
    if kind == IMAGE_TO_IMAGE and prior is None:
        raise InputError(
            f"{source} is a {IMAGE_TO_IMAGE} folder (an image encoder, no prior): give --prior RECIPE, a recipe "
            "whose prior samples the embeddings the decoder reads (e.g. one `unclip import karlo` wrote)"
        )
    prior_recipe = _prior_recipe(prior, registry) if prior is not None else None
    out = Path(out).expanduser() if out is not None else Path.cwd() / f"{source.name}-unclip"
    out = out.resolve()
    check_output_folder(out, source, force=force, marker=RECIPE_NAME, command="unclip import stable-unclip",
                        source_name="the Stable unCLIP folder")
    settings = decoder_settings(source)
    settings["decoder"]["embedding_space"] = embedding_space
    check_tokenizer(source / "tokenizer")

    with staged_folder(out) as work:
        _copy_tokenizer(source / "tokenizer", work, "tokenizer")
        if prior_recipe is not None:
            encoder_slot, prior_slot = _encoder_and_prior_from_recipe(
                prior_recipe, source, kind, work, registry, settings["decoder"]
            )
        else:
            encoder_slot, prior_slot = _own_encoder_and_prior(source, work, registry, embedding_space)
        _write_decoder(source, work, registry, settings)
        autoencoder = _write_autoencoder(source, work, registry, settings["autoencoder"])
        decoder = {k: v for k, v in settings["decoder"].items() if v is not None}
        data = {
            "name": source.name,
            "description": f"Stable unCLIP ({source.name}) imported by `unclip import stable-unclip`: diffusers' {kind}"
            + (f", prior from {prior_recipe.source}" if prior_recipe is not None else "") + ", same weights, same sampling.",
            "encoder": encoder_slot,
            "prior": prior_slot,
            "decoder": {
                "type": "stable-unclip-decoder",
                "config": decoder,
                "weights": "decoder.safetensors",
                "guidance_scale": 10.0,
                "null_caption": "empty",
                "sampler": {"type": "diffusers-saved-scheduler", "config": settings["decoder_sampler"]},
                "autoencoder": {"type": "kl", "config": autoencoder, "weights": "autoencoder.safetensors"},
            },
            "runtime": {"device": "cpu", "precision": "auto"},
        }
        header = (
            f"{run_line(out / RECIPE_NAME, DEFAULT_PROMPT)}\n"
            f"# Stable unCLIP imported from {source} by `unclip import stable-unclip` (see docs/latent.md).\n"
            "# Defaults are diffusers' StableUnCLIPPipeline's: guidance 4 (prior) and 10 (decoder), 25/20 steps,\n"
            "# noise_level 0. With runtime.precision=fp32 runtime.memory_format=contiguous and the same seed,\n"
            "# the images match diffusers' within 1e-4.\n"
        )
        (work / RECIPE_NAME).write_text(header + yaml.safe_dump(data, sort_keys=False, width=100), encoding="utf-8")
        try:
            validate_recipe(data, registry, base_dir=work, source=work / RECIPE_NAME)
        except RecipeError as exc:
            raise UnclipError(f"the imported recipe does not validate: {' '.join(str(exc).split())}") from None
    return out / RECIPE_NAME
