"""Finding and reading recipe files: a path on disk, or the name of a shipped recipe."""
from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from unclip_core.errors import RecipeError
from unclip_core.recipe.overrides import apply_overrides
from unclip_core.recipe.safe_yaml import YamlLimitError, describe_yaml_error, load_yaml
from unclip_core.recipe.shipped import FILE_SLOTS, SLOT_FILE_MARK, is_slot_file, shipped_recipes, shipped_recipes_dir  # noqa: F401 (re-exported)
from unclip_core.recipe.validate import ResolvedRecipe, validate_recipe
from unclip_core.registry import Registry, default_registry
import difflib

DEFAULT_RECIPE = "shapes"
"""The recipe ``unclip generate`` uses when none is given: the embedded shapes-world model."""


def expand_slot_files(data: dict[str, Any], base_dir: Path, source: Path | None = None) -> dict[str, Any]:
    """``data`` with every slot given as a file name replaced by that file's mapping.

    ``prior: shapes-prior-ar.yaml`` (or the override ``prior=shapes-prior-ar.yaml``) reads the
    prior's whole slot — ``type``, ``config``, ``weights``, stage settings — from that file,
    found relative to the recipe's folder. That is what makes swapping a stage one line. Its
    ``weights`` path is relative to the slot file, as a recipe's is to the recipe (rewritten
    relative to the recipe here); component settings that name files resolve against the
    recipe's folder, as always. The digest is that of the expanded recipe: naming a slot file
    beside the recipe or writing its contents out gives the same digest. Applies to
    ``encoder``, ``prior``, ``decoder`` and the items of ``upsamplers``.
    """
    problems: list[tuple[str, str]] = []

    def read_slot(value: Any, where: str) -> Any:
        if not isinstance(value, str) or not value.endswith((".yaml", ".yml")):
            return value
        path = (base_dir / value).resolve()
        if not path.is_file():
            problems.append((where, f"slot file not found: {path}"))
            return value
        slot = read_yaml(path)
        if not isinstance(slot, dict):
            problems.append((where, f"slot file {path} must hold one slot (a mapping with 'type'), got {type(slot).__name__}"))
            return value
        weights = slot.get("weights")
        if isinstance(weights, str) and not Path(weights).is_absolute() and path.parent != base_dir.resolve():
            slot = {**slot, "weights": os.path.relpath(path.parent / weights, base_dir.resolve())}
        return slot

    result = dict(data)
    for key in FILE_SLOTS:
        if key in result:
            result[key] = read_slot(result[key], key)
    if isinstance(result.get("upsamplers"), list):
        result["upsamplers"] = [read_slot(item, f"upsamplers.{i}") for i, item in enumerate(result["upsamplers"])]
    if problems:
        raise RecipeError(problems, str(source) if source else None)
    return result


def find_recipe(name_or_path: str | Path | None) -> Path:
    """A recipe file from a path, or a shipped recipe's name (``shapes``, ``train/decoder``)."""
    if name_or_path is None:
        name_or_path = DEFAULT_RECIPE
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    shipped = shipped_recipes()
    key = str(name_or_path).removesuffix(".yaml")
    if key in shipped:
        return shipped[key]
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        raise RecipeError(f"recipe file not found: {candidate}")
    close = difflib.get_close_matches(key, list(shipped), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise RecipeError(
        f"no recipe file or shipped recipe named {str(name_or_path)!r}{hint}; shipped: {', '.join(shipped) or 'none'}"
    )


def read_yaml(path: Path) -> Any:
    """Parse a YAML file within :mod:`~unclip_core.recipe.safe_yaml`'s limits; syntax errors
    and exceeded limits become a RecipeError with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    try:
        return load_yaml(text)
    except (yaml.YAMLError, YamlLimitError) as exc:
        raise RecipeError(f"{path}{describe_yaml_error(exc)}") from None


def is_training_recipe(data: Any) -> bool:
    """A parsed recipe that trains a stage (it names its ``stage:``) rather than generating."""
    return isinstance(data, dict) and "stage" in data


def load_recipe(
    name_or_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> ResolvedRecipe:
    """Find, parse, override and fully validate a recipe."""
    path = find_recipe(name_or_path)
    data = read_yaml(path)
    if is_training_recipe(data) and "decoder" not in data:
        raise RecipeError(f"{path} is a training recipe (it trains the {data['stage']} stage); run it with `unclip train {path}`")
    if isinstance(data, dict):
        # Slot files are read before each override (so `prior.guidance_scale=3` reaches into one,
        # even one an earlier override named) and after the last (`prior=shapes-prior-ar.yaml`).
        def expand(raw: dict[str, Any]) -> dict[str, Any]:
            return expand_slot_files(raw, path.parent, path)

        data = expand(apply_overrides(data, overrides, expand))
    return validate_recipe(data, registry or default_registry(), base_dir=path.parent, source=path)
