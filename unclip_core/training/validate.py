"""Validating a training recipe, with the same rules and error report as inference recipes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unclip_core.errors import RecipeError
from unclip_core.recipe.validate import (
    Problems,
    ResolvedComponent,
    _check_slot_model,
    _check_autoencoder,
    _dedupe,
    _did_you_mean,
    _resolve_component,
    recipe_digest,
    resolve_role_sampler,
)
from unclip_core.registry import Registry
from unclip_core.training.previews import PREVIEW_STEPS
from unclip_core.training.schema import TRAIN_SLOTS, TrainRecipe
from unclip_core.recipe.files import find_recipe, is_training_recipe, read_yaml
from unclip_core.recipe.overrides import apply_overrides
from unclip_core.registry import default_registry

NEEDS_ENCODER = ("prior", "decoder")
STAGES = ("encoder", "prior", "decoder", "upsampler", "autoencoder")



@dataclass
class ResolvedTraining:
    recipe: TrainRecipe
    data: dict[str, Any]
    source: Path | None
    model: ResolvedComponent
    encoder: ResolvedComponent | None
    dataset: ResolvedComponent
    preview_sampler: ResolvedComponent | None = None
    """``output.preview_sampler``, or the sampler registered for inversion (None: no previews
    of a stage that needs a sampler)."""
    autoencoder: ResolvedComponent | None = None
    """The frozen autoencoder a latent decoder is trained in (the ``autoencoder`` slot)."""

    @property
    def digest(self) -> str:
        return recipe_digest(self.data)

    @property
    def base_dir(self) -> Path:
        return self.source.parent if self.source else Path(".")


def validate_training(
    data: Any, registry: Registry, *, base_dir: Path | str = ".", source: Path | str | None = None
) -> ResolvedTraining:
    """Check a training recipe completely; one RecipeError lists every problem."""
    base_dir = Path(base_dir)
    label = str(source) if source else None
    if not isinstance(data, dict):
        raise RecipeError([("", f"a training recipe must be a YAML mapping, got {type(data).__name__}")], label)
    problems: Problems = []
    for key in data:
        if key not in TRAIN_SLOTS:
            problems.append((str(key), f"unknown slot{_did_you_mean(str(key), list(TRAIN_SLOTS))}; slots are {', '.join(TRAIN_SLOTS)}"))
    known = {k: v for k, v in data.items() if k in TRAIN_SLOTS}
    recipe = _check_slot_model(known, TrainRecipe, "", problems)

    stage = data.get("stage")
    model = None
    if isinstance(stage, str) and stage in STAGES:
        model = _resolve_component(data.get("model"), stage, "model", registry, base_dir, problems)
        # A component class without its stage's loss is refused before anything is built (a
        # factory function is only known by what it builds: the first step tells then).
        loss = "contrastive_loss" if stage == "encoder" else "training_loss"
        factory = model.spec.factory if model is not None else None
        if isinstance(factory, type) and not callable(getattr(factory, loss, None)):
            problems.append(("model.type", f"{model.spec.name!r} cannot be trained by unclip train (it has no {loss})"))
    encoder = None
    if data.get("encoder") is not None:
        encoder = _resolve_component(data.get("encoder"), "encoder", "encoder", registry, base_dir, problems)
    elif stage in NEEDS_ENCODER:
        problems.append(("encoder", f"the {stage} stage needs a frozen encoder to compute CLIP embeddings"))
    dataset = _resolve_component(data.get("dataset"), "dataset", "dataset", registry, base_dir, problems)
    autoencoder = latent_autoencoder(data, stage, model, registry, base_dir, problems)

    if model is not None and encoder is not None and stage in NEEDS_ENCODER:
        mine, theirs = model.declared, encoder.declared
        for attr, label_ in (("embed_dim", "embedding size"), ("text_width", "caption token width"), ("context_length", "caption length (tokens)")):
            a, b = getattr(theirs, attr), getattr(mine, attr)
            if a is not None and b is not None and a != b:
                problems.append(("model", f"{label_} {b} does not match the encoder's {a}"))
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    preview_sampler = resolve_role_sampler(
        output.get("preview_sampler"), "output.preview_sampler", None, registry, base_dir, problems, steps=PREVIEW_STEPS
    )
    if problems:
        raise RecipeError(_dedupe(problems), label)
    assert recipe is not None and model is not None and dataset is not None
    return ResolvedTraining(
        recipe, data, Path(source) if source else None, model, encoder, dataset, preview_sampler, autoencoder
    )


def latent_autoencoder(
    data: dict[str, Any], stage: Any, model: ResolvedComponent | None, registry: Registry, base_dir: Path,
    problems: Problems,
) -> ResolvedComponent | None:
    """The ``autoencoder`` slot: required (with weights: it is frozen) by the decoder stage of a
    latent decoder and refused by a pixel one, as an inference recipe's ``decoder.autoencoder``;
    no other stage reads it."""
    raw = data.get("autoencoder")
    if stage != "decoder":
        if raw is not None:
            problems.append(("autoencoder", "only the decoder stage (of a latent decoder) reads an autoencoder"))
        return None
    autoencoder = _resolve_component(raw, "autoencoder", "autoencoder", registry, base_dir, problems)
    _check_autoencoder(model, raw, autoencoder, problems, slot="autoencoder")
    if autoencoder is not None and autoencoder.weights is None and isinstance(raw, dict) and raw.get("weights") is None:
        problems.append(("autoencoder.weights", "the frozen autoencoder needs its trained weights"))
    return autoencoder


def load_training(name_or_path: str | Path, overrides=(), registry: Registry | None = None) -> ResolvedTraining:
    path = find_recipe(name_or_path)
    data = read_yaml(path)
    if isinstance(data, dict) and not is_training_recipe(data) and "decoder" in data:
        raise RecipeError(
            f"{path} is an inference recipe (it generates images); `unclip train` takes a training recipe "
            "such as train/shapes-decoder (see recipes/train/)"
        )
    if isinstance(data, dict):
        data = apply_overrides(data, overrides)
    return validate_training(data, registry or default_registry(), base_dir=path.parent, source=path)
