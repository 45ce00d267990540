"""Validate a recipe completely before anything is built.

Every problem is collected with its YAML path — unknown slot, unknown component (with "did
you mean"), bad or extra setting (checked by the component's own pydantic model), missing
weights file, incompatible chain — and raised together as one :class:`RecipeError`. Nothing
is built and no weights are read until the whole recipe is known to be sound.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from unclip_core.errors import PluginError, RecipeError
from unclip_core.interfaces import ComponentConfig, Declared
from unclip_core.recipe.schema import (
    SLOTS,
    ComponentSlot,
    DecoderStage,
    PriorStage,
    Recipe,
    Runtime,
    UpsamplerStage,
)
from unclip_core.registry import ComponentSpec, Registry

Problems = list[tuple[str, str]]


@dataclass
class ResolvedComponent:
    """One slot of a validated recipe: which component, its parsed settings, its weights."""

    path: str
    spec: ComponentSpec
    config: ComponentConfig
    weights: Path | None = None

    @property
    def declared(self) -> Declared:
        return self.config.declares()


@dataclass
class ResolvedRecipe:
    """A recipe that passed validation: everything needed to build the pipeline."""

    recipe: Recipe
    data: dict[str, Any]
    source: Path | None
    encoder: ResolvedComponent
    prior: ResolvedComponent
    prior_sampler: ResolvedComponent | None
    decoder: ResolvedComponent
    decoder_sampler: ResolvedComponent
    upsamplers: list[tuple[ResolvedComponent, ResolvedComponent]] = field(default_factory=list)
    inversion_sampler: ResolvedComponent | None = None
    """``decoder.inversion_sampler``, or the sampler registered for inversion; None when the
    recipe names none and no plugin registers one (only inverting operations then fail)."""
    autoencoder: ResolvedComponent | None = None
    """``decoder.autoencoder``: a latent decoder's autoencoder; None for a pixel decoder."""

    @property
    def digest(self) -> str:
        return recipe_digest(self.data)


def recipe_digest(data: dict[str, Any]) -> str:
    """A short stable hash of the recipe's content (after overrides)."""
    canonical = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _join(*parts: Any) -> str:
    return ".".join(str(p) for p in parts if p != "")


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def pydantic_problems(error: ValidationError, prefix: str, model: type[BaseModel] | None = None) -> Problems:
    """Turn pydantic's errors into ``(yaml_path, message)`` pairs under ``prefix``."""
    problems: Problems = []
    for item in error.errors():
        loc = list(item.get("loc", ()))
        path = _join(prefix, *loc)
        kind = item.get("type", "")
        if kind == "extra_forbidden":
            known = sorted(model.model_fields) if model is not None and len(loc) == 1 else []
            message = f"unknown setting {str(loc[-1])!r}{_did_you_mean(str(loc[-1]), known)}"
            if known:
                message += f"; allowed: {', '.join(known)}"
        elif kind == "missing":
            message = "required setting is missing"
        else:
            shown = repr(item.get("input"))
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            message = f"{item.get('msg', 'invalid value')} (got {shown})"
        problems.append((path, message))
    return problems


def _check_slot_model(raw: Any, model: type[BaseModel], path: str, problems: Problems) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, path, model))
        return None


def _resolve_component(
    raw: Any, kind: str, path: str, registry: Registry, base_dir: Path, problems: Problems
) -> ResolvedComponent | None:
    """Look up ``raw['type']`` and validate ``raw['config']`` with that component's model."""
    if not isinstance(raw, dict):
        return None  # the slot model already reported it
    name = raw.get("type")
    if not isinstance(name, str):
        return None
    try:
        spec = registry.get(kind, name)
    except PluginError as exc:
        problems.append((_join(path, "type"), str(exc)))
        return None
    settings = raw.get("config", {})
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        return None
    try:
        # The context lets a setting that names a file resolve it against the recipe's folder.
        config = spec.config_model.model_validate(settings, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, _join(path, "config"), spec.config_model))
        return None
    except Exception as exc:  # a plugin's validator raised something pydantic does not wrap
        problems.append((_join(path, "config"), f"{type(exc).__name__}: {exc}"))
        return None
    try:
        config.declares()
    except Exception as exc:
        problems.append((_join(path, "config"), f"{exc}"))
        return None
    weights = None
    if raw.get("weights") is not None and isinstance(raw.get("weights"), str):
        weights = (base_dir / raw["weights"]).resolve()
        if weights.suffix != ".safetensors":
            problems.append((_join(path, "weights"), f"weights must be a .safetensors file, got {raw['weights']!r}"))
        elif not weights.is_file():
            problems.append((_join(path, "weights"), f"file not found: {weights}"))
    return ResolvedComponent(path, spec, config, weights)


def resolve_role_sampler(
    raw: Any, path: str, like: ResolvedComponent | None, registry: Registry, base_dir: Path, problems: Problems,
    *, role: str = "inversion", steps: int | None = None,
) -> ResolvedComponent | None:
    """The sampler slot at ``path`` as given (``raw``), or else the sampler registered for
    ``role`` with ``like``'s ``steps`` and ``timestep_spacing`` (where both samplers have
    them) or ``steps``; None when neither a slot nor a registered sampler exists."""
    if isinstance(raw, dict):
        return _resolve_component(raw, "sampler", path, registry, base_dir, problems)
    try:
        spec = registry.for_role("sampler", role)
    except PluginError:
        return None
    fields = spec.config_model.model_fields
    settings: dict[str, Any] = {"steps": steps} if steps is not None and "steps" in fields else {}
    for key in ("steps", "timestep_spacing"):
        value = getattr(like.config, key, None) if like is not None else None
        if value is not None and key in fields:
            settings[key] = value
    try:
        config = spec.config_model.model_validate(settings)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, path, spec.config_model))
        return None
    return ResolvedComponent(path, spec, config)


def _prior_misfit(prior: ResolvedComponent | None, decoder: ResolvedComponent | None, enc: Declared | None) -> str | None:
    """Why the prior's image embeddings do not fit the decoder (size, or the CLIP space both
    name), naming both slots; None when they fit, either is unknown, or the prior already
    disagrees with the encoder (that problem is reported, and this one follows from it)."""
    if prior is None or decoder is None:
        return None
    mine, theirs = prior.declared, decoder.declared
    if enc is not None and any(
        getattr(enc, attr) is not None and getattr(mine, attr) is not None and getattr(enc, attr) != getattr(mine, attr)
        for attr in ("embed_dim", "embedding_space")
    ):
        return None
    where = f"the prior ({prior.spec.name})"
    if mine.embed_dim is not None and theirs.embed_dim is not None and mine.embed_dim != theirs.embed_dim:
        return (f"decoder ({decoder.spec.name}) reads image embeddings of embedding size {theirs.embed_dim} but {where} "
                f"samples embedding size {mine.embed_dim}; choose a prior and decoder of one embedding size")
    if mine.embedding_space and theirs.embedding_space and mine.embedding_space != theirs.embedding_space:
        return (f"decoder ({decoder.spec.name}) reads image embeddings of {theirs.embedding_space!r} but {where} samples "
                f"in {mine.embedding_space!r}; choose a prior and decoder of one embedding space")
    return None


def _check_chain(
    encoder: ResolvedComponent | None,
    prior: ResolvedComponent | None,
    prior_sampler_given: bool | None,
    decoder: ResolvedComponent | None,
    upsamplers: list[ResolvedComponent | None],
    problems: Problems,
) -> None:
    """Sizes must agree along text → prior → decoder → upsamplers."""
    enc = encoder.declared if encoder else None
    misfit = _prior_misfit(prior, decoder, enc)
    if misfit:
        problems.append((decoder.path, misfit))  # type: ignore[union-attr]
    for stage in (prior, decoder):
        if stage is None or enc is None:
            continue
        mine = stage.declared
        for attr, label in (
            ("embed_dim", "embedding size"),
            ("text_width", "caption token width"),
            ("context_length", "caption length (tokens)"),
            ("embedding_space", "embedding space"),
        ):
            a, b = getattr(enc, attr), getattr(mine, attr)
            if misfit and stage is decoder and attr in ("embed_dim", "embedding_space"):
                continue  # the prior's misfit is the one to report
            if a is not None and b is not None and a != b:
                problems.append(
                    (stage.path, f"{label} {b} does not match the encoder's {a} ({encoder.spec.name})")
                )
    if prior is not None and prior_sampler_given is not None:
        needs = prior.declared.needs_sampler
        if needs is True and not prior_sampler_given:
            problems.append(("prior.sampler", f"prior {prior.spec.name!r} is a diffusion model and needs a sampler"))
        if needs is False and prior_sampler_given:
            problems.append(("prior.sampler", f"prior {prior.spec.name!r} samples by itself; remove prior.sampler"))
    previous, previous_name = (decoder.declared.image_size, "decoder") if decoder else (None, "decoder")
    for index, stage in enumerate(upsamplers):
        if stage is None:
            previous = None
            continue
        declared = stage.declared
        if previous is not None and declared.input_size is not None and previous != declared.input_size:
            problems.append(
                (stage.path, f"expects {declared.input_size}px input but the {previous_name} makes {previous}px images")
            )
        previous, previous_name = declared.image_size, f"upsampler {index}"


def validate_recipe(
    data: Any,
    registry: Registry,
    *,
    base_dir: Path | str = ".",
    source: Path | str | None = None,
) -> ResolvedRecipe:
    """Check ``data`` (a parsed recipe) completely; raise one RecipeError listing every problem."""
    base_dir = Path(base_dir)
    label = str(source) if source else None
    if not isinstance(data, dict):
        raise RecipeError([("", f"a recipe must be a YAML mapping of slots, got {type(data).__name__}")], label)
    problems: Problems = []

    for key in data:
        if key not in SLOTS:
            problems.append((str(key), f"unknown slot{_did_you_mean(str(key), list(SLOTS))}; slots are {', '.join(SLOTS)}"))
    for required in ("encoder", "prior", "decoder"):
        if required not in data:
            problems.append((required, "required slot is missing"))

    # Structure of each slot (stage-level keys), then each named component's own settings.
    if "encoder" in data:
        _check_slot_model(data["encoder"], ComponentSlot, "encoder", problems)
    if "prior" in data:
        _check_slot_model(data["prior"], PriorStage, "prior", problems)
    if "decoder" in data:
        _check_slot_model(data["decoder"], DecoderStage, "decoder", problems)
    if "runtime" in data:
        _check_slot_model(data["runtime"], Runtime, "runtime", problems)
    for key in ("name", "description"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            problems.append((key, f"must be text, got {type(data[key]).__name__}"))

    def sampler_of(stage_raw: Any, path: str) -> ResolvedComponent | None:
        if isinstance(stage_raw, dict) and isinstance(stage_raw.get("sampler"), dict):
            return _resolve_component(stage_raw["sampler"], "sampler", _join(path, "sampler"), registry, base_dir, problems)
        return None

    encoder = _resolve_component(data.get("encoder"), "encoder", "encoder", registry, base_dir, problems)
    prior = _resolve_component(data.get("prior"), "prior", "prior", registry, base_dir, problems)
    prior_sampler = sampler_of(data.get("prior"), "prior")
    decoder = _resolve_component(data.get("decoder"), "decoder", "decoder", registry, base_dir, problems)
    decoder_sampler = sampler_of(data.get("decoder"), "decoder")
    decoder_raw = data.get("decoder") if isinstance(data.get("decoder"), dict) else {}
    inversion_sampler = resolve_role_sampler(
        decoder_raw.get("inversion_sampler"), "decoder.inversion_sampler", decoder_sampler, registry, base_dir, problems
    )

    autoencoder = _resolve_component(
        decoder_raw.get("autoencoder"), "autoencoder", "decoder.autoencoder", registry, base_dir, problems
    )
    _check_autoencoder(decoder, decoder_raw.get("autoencoder"), autoencoder, problems)

    upsamplers: list[tuple[ResolvedComponent | None, ResolvedComponent | None]] = []
    raw_ups = data.get("upsamplers", [])
    if raw_ups is None:
        raw_ups = []
    if not isinstance(raw_ups, list):
        problems.append(("upsamplers", f"must be a list of stages, got {type(raw_ups).__name__}"))
        raw_ups = []
    for index, raw in enumerate(raw_ups):
        path = f"upsamplers.{index}"
        _check_slot_model(raw, UpsamplerStage, path, problems)
        upsamplers.append(
            (_resolve_component(raw, "upsampler", path, registry, base_dir, problems), sampler_of(raw, path))
        )

    prior_raw = data.get("prior")
    sampler_given = ("sampler" in prior_raw and prior_raw["sampler"] is not None) if isinstance(prior_raw, dict) else None
    _check_chain(encoder, prior, sampler_given, decoder, [u for u, _ in upsamplers], problems)

    if problems:
        raise RecipeError(_dedupe(problems), label)
    # cannot fail: every part passed above (``upsamplers: null`` reads as none, as checked there)
    recipe = Recipe.model_validate({**data, "upsamplers": raw_ups} if "upsamplers" in data else data)
    assert encoder and prior and decoder and decoder_sampler
    return ResolvedRecipe(
        recipe=recipe,
        data=data,
        source=Path(source) if source else None,
        encoder=encoder,
        prior=prior,
        prior_sampler=prior_sampler,
        decoder=decoder,
        decoder_sampler=decoder_sampler,
        upsamplers=[(u, s) for u, s in upsamplers if u and s],
        inversion_sampler=inversion_sampler,
        autoencoder=autoencoder,
    )


def _check_autoencoder(
    decoder: ResolvedComponent | None, raw: Any, autoencoder: ResolvedComponent | None, problems: Problems,
    slot: str = "decoder.autoencoder",
) -> None:
    """A latent decoder needs ``decoder.autoencoder`` and a pixel decoder takes none; the
    autoencoder's latent channels must be the decoder's, and the image side a multiple of
    its downscale. ``slot`` names the slot in problems (a training recipe's is ``autoencoder``)."""
    if decoder is None:
        return
    declared, name = decoder.declared, decoder.spec.name
    if not declared.latent:
        if raw is not None:
            problems.append((slot, f"decoder {name!r} draws pixels; it takes no autoencoder (remove the slot)"))
        return
    if raw is None:
        problems.append((slot, f"decoder {name!r} denoises in latent space and needs an autoencoder; "
                         "name one (`unclip plugins` lists the autoencoders)"))
        return
    if autoencoder is None:
        return
    made = autoencoder.declared
    if made.latent_channels is not None and declared.latent_channels is not None and made.latent_channels != declared.latent_channels:
        problems.append((slot, f"autoencoder {autoencoder.spec.name!r} makes {made.latent_channels}-channel "
                         f"latents but decoder {name!r} denoises {declared.latent_channels}-channel ones"))
    if made.downscale and declared.image_size and declared.image_size % made.downscale:
        problems.append((slot, f"decoder image_size {declared.image_size} is not a multiple of the "
                         f"autoencoder's downscale {made.downscale}"))


def _dedupe(problems: Problems) -> Problems:
    seen: set[tuple[str, str]] = set()
    result: Problems = []
    for item in problems:
        if item not in seen:
            seen.add(item)
            result.append(item)
    return result
