"""Turning a validated recipe into a running :class:`~unclip_core.pipeline.Pipeline`."""
from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from unclip_core.devices import check_device
from unclip_core.errors import CheckpointError, PluginError, RecipeError
from unclip_core.pipeline import Pipeline, PipelineSettings
from unclip_core.auto_precision import resolve_precision
from unclip_core.recipe.files import load_recipe
from unclip_core.recipe.validate import ResolvedComponent, ResolvedRecipe
from unclip_core.registry import Registry, default_registry
from unclip_core.weights import load_weights, random_init_skipped


def build_component(resolved: ResolvedComponent, device: str | torch.device = "cpu", *, trainable: bool = False) -> Any:
    """Build one component from its validated config and load its weights, if any.

    Inference components come back in eval mode with gradients off; ``trainable=True`` leaves
    them as the plugin built them (train mode, its own ``requires_grad`` choices), and treats
    the weights as a training run's starting point (see ``Component.adapt_initial_weights``)."""
    try:
        # A weights file must then fill every parameter (load_weights is strict), so drawing
        # random initial values first is wasted work (0.1 s of the shapes model's start).
        skipping = resolved.weights is not None and not trainable
        with random_init_skipped() if skipping else contextlib.nullcontext():
            component = resolved.spec.build(resolved.config)
    except (PluginError, CheckpointError):
        raise
    except Exception as exc:
        raise PluginError(
            f"{resolved.path}: building {resolved.spec.kind} {resolved.spec.name!r} "
            f"({resolved.spec.provider}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(component, torch.nn.Module):
        if resolved.weights is not None:
            try:
                load_weights(component, resolved.weights, initial=trainable)
            except CheckpointError as exc:
                raise CheckpointError(f"{resolved.path}.weights: {exc}") from None
        if not trainable:
            component.eval().requires_grad_(False)
        component.to(device)
    return component


def _build_seeded(resolved: ResolvedComponent, device: str | torch.device) -> Any:
    """``build_component`` with the initial weights drawn from a seed fixed by the slot's path.

    A slot without a weights file (random-weight test and smoke recipes) then gets the same
    weights in every process, so the same recipe and seed give the same images and
    ``unclip generate --from`` reproduces them. The caller's global RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(resolved.path.encode()))
        return build_component(resolved, device)


MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def set_memory_format(pipeline: Pipeline, memory_format: str) -> Pipeline:
    """Put every model's 4-D weights in ``memory_format`` (``channels_last`` or ``contiguous``).

    Convolutions run in the layout of their weights, so this alone moves every convolution of
    the decoder and upsamplers to channels-last, which oneDNN runs faster on the CPU (about 1.4x
    on a 256 px super-resolution UNet, docs/benchmarks.md). Results differ from the contiguous
    layout only by float rounding (about 1e-5).
    """
    if memory_format not in MEMORY_FORMATS:
        raise RecipeError(f"runtime.memory_format: {memory_format!r} is not one of {sorted(MEMORY_FORMATS)}")
    models = [pipeline.encoder, pipeline.prior, pipeline.decoder, pipeline.autoencoder, *(u for u, _ in pipeline.upsamplers)]
    for model in models:
        if isinstance(model, torch.nn.Module):
            model.to(memory_format=MEMORY_FORMATS[memory_format])
    pipeline.settings.memory_format = memory_format  # type: ignore[assignment]
    return pipeline


def build_pipeline(resolved: ResolvedRecipe, registry: Registry | None = None) -> Pipeline:
    """Build every stage of a validated recipe (weights loaded, eval mode, on its device, in the
    recipe's memory format)."""
    recipe = resolved.recipe
    device = recipe.runtime.device
    if recipe.runtime.threads:  # first: auto's probe measures with the threads the pipeline will use
        torch.set_num_threads(recipe.runtime.threads)
    try:
        check_device(device)
        precision = resolve_precision(recipe.runtime.precision, device)
    except ValueError as exc:  # before any weights load
        raise RecipeError(f"{resolved.source or 'recipe'}: {exc}") from None
    pipeline = Pipeline(
        encoder=_build_seeded(resolved.encoder, device),
        prior=_build_seeded(resolved.prior, device),
        prior_sampler=build_component(resolved.prior_sampler) if resolved.prior_sampler else None,
        decoder=_build_seeded(resolved.decoder, device),
        decoder_sampler=build_component(resolved.decoder_sampler),
        upsamplers=[(_build_seeded(u, device), build_component(s)) for u, s in resolved.upsamplers],
        inversion_sampler=build_component(resolved.inversion_sampler) if resolved.inversion_sampler else None,
        inversion_follows_decoder=resolved.recipe.decoder.inversion_sampler is None,
        autoencoder=_build_seeded(resolved.autoencoder, device) if resolved.autoencoder else None,
        settings=PipelineSettings(
            prior_guidance_scale=recipe.prior.guidance_scale,
            prior_candidates=recipe.prior.candidates,
            decoder_guidance_scale=recipe.decoder.guidance_scale,
            decoder_candidates=recipe.decoder.candidates,
            prior_null_caption=recipe.prior.null_caption,
            decoder_null_caption=recipe.decoder.null_caption,
            device=device,
            precision=precision,
        ),
        recipe=resolved,
        registry=registry or default_registry(),
    )
    return set_memory_format(pipeline, recipe.runtime.memory_format)


def load_pipeline(
    recipe: str | Path | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> Pipeline:
    """Validate and build a pipeline from a recipe file or a shipped recipe's name.

    With no recipe, the shipped default (the shapes-world model) is used::

        from unclip_core import load_pipeline
        images = load_pipeline().generate("a red circle to the left of a blue square", n=4)
    """
    registry = registry or default_registry()
    return build_pipeline(load_recipe(recipe, overrides, registry), registry)
