"""Finding and reading recipe files: a path on disk, or the name of a shipped recipe."""
from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from unclip_core.errors import RecipeError
from unclip_core.recipe.overrides import apply_overrides
from unclip_core.recipe.validate import ResolvedRecipe, validate_recipe
from unclip_core.registry import Registry, default_registry

DEFAULT_RECIPE = "shapes"
"""The recipe ``unclip generate`` uses when none is given: the embedded shapes-world model."""


def shipped_recipes_dir() -> Path:
    """Where the installed package keeps its recipes (package data of ``unclip_recipes``)."""
    return Path(str(resources.files("unclip_recipes")))


def shipped_recipes() -> dict[str, Path]:
    """Name → path of every recipe shipped with the package (``*.yaml`` at any depth)."""
    root = shipped_recipes_dir()
    found = {}
    for path in sorted(root.rglob("*.yaml")):
        name = path.relative_to(root).with_suffix("").as_posix()
        found[name] = path
    return found


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
    import difflib

    close = difflib.get_close_matches(key, list(shipped), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise RecipeError(
        f"no recipe file or shipped recipe named {str(name_or_path)!r}{hint}; shipped: {', '.join(shipped) or 'none'}"
    )


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; syntax errors become a RecipeError with the line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{path}{where}: invalid YAML: {problem}") from None


def load_recipe(
    name_or_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    registry: Registry | None = None,
) -> ResolvedRecipe:
    """Find, parse, override and fully validate a recipe."""
    path = find_recipe(name_or_path)
    data = read_yaml(path)
    if isinstance(data, dict):
        data = apply_overrides(data, overrides)
    return validate_recipe(data, registry or default_registry(), base_dir=path.parent, source=path)
