"""Command-line overrides: ``decoder.sampler.config.steps=25``, values parsed as YAML.

List items are addressed by index (``upsamplers.0.sampler.config.steps=10``). Missing mapping keys
are created, so an override can add a setting; the full validation that follows decides
whether it is allowed.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from unclip_core.errors import RecipeError, shorten
from unclip_core.recipe.safe_yaml import YamlLimitError, load_yaml


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError([(f"override {shorten(text)!r}", "expected KEY=VALUE, e.g. decoder.sampler.config.steps=25")])
    parts = key.split(".")
    if any(not part for part in parts):
        raise RecipeError([(f"override {shorten(text)!r}", f"malformed key {shorten(key)!r}")])
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise RecipeError([(key, f"override value {shorten(raw)!r} is not valid YAML ({problem})")]) from None
    except YamlLimitError as exc:
        raise RecipeError([(key, f"override value {shorten(raw)!r}: {exc}")]) from None
    return parts, value


def apply_overrides(
    data: dict[str, Any], overrides: Iterable[str], expand: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A copy of ``data`` with every override applied; all bad overrides reported at once.

    ``expand`` runs after each override (slot files: so ``prior=shapes-prior-ar.yaml`` can be
    followed by ``prior.guidance_scale=3``)."""
    result = copy.deepcopy(data)
    problems: list[tuple[str, str]] = []
    for text in overrides:
        if expand is not None:
            try:
                result = expand(result)
            except RecipeError as exc:
                problems.extend(exc.problems)
        try:
            parts, value = parse_override(text)
        except RecipeError as exc:
            problems.extend(exc.problems)
            continue
        node: Any = result
        for depth, part in enumerate(parts):
            path = ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append((path, f"no list item {part!r} (the list has {len(node)} items)"))
                    break
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                problems.append((path, f"cannot set a key inside {type(node).__name__} value"))
                break
    if problems:
        raise RecipeError(problems)
    return result
