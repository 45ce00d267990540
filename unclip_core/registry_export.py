"""The generated catalogue under ``registry/``: what every built-in component is and accepts.

``unclip registry export`` writes it; a test regenerates it and fails when the committed copy
differs, so a change to any component's settings shows up in review, and editors can
validate recipes against ``registry/recipe.schema.json``.

Layout::

    registry/catalogue.json             kind, name, provider, summary, schema file per component
    registry/schemas/<kind>/<name>.json JSON Schema of that component's ``config``
    registry/recipe.schema.json         the recipe file, with each slot's ``config`` checked
                                        against the schema of the component its ``type`` names
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unclip_core.recipe.schema import Recipe
from unclip_core.registry import ComponentSpec, Registry

CORE_DISTRIBUTION = "unclip"

SLOT_KINDS = {
    "ComponentSlot": "encoder",
    "PriorStage": "prior",
    "DecoderStage": "decoder",
    "UpsamplerStage": "upsampler",
    "SamplerSlot": "sampler",
    "AutoencoderSlot": "autoencoder",
}


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _selected(registry: Registry, include_third_party: bool) -> list[ComponentSpec]:
    return [
        spec
        for spec in registry.all_components()
        if include_third_party or spec.provider.distribution == CORE_DISTRIBUTION
    ]


def registry_files(registry: Registry, include_third_party: bool = False) -> dict[str, str]:
    """Relative path → file content of the whole catalogue (nothing written)."""
    specs = _selected(registry, include_third_party)
    files: dict[str, str] = {}
    catalogue = []
    for spec in specs:
        schema_path = f"schemas/{spec.kind}/{spec.name}.json"
        files[schema_path] = _dump(spec.config_model.model_json_schema())
        catalogue.append(
            {
                "kind": spec.kind,
                "name": spec.name,
                "distribution": spec.provider.distribution,
                "plugin": spec.provider.plugin,
                "summary": spec.summary,
                "config_schema": schema_path,
            }
        )
    files["catalogue.json"] = _dump({"components": catalogue})
    files["recipe.schema.json"] = _dump(recipe_schema(specs))
    return files


def recipe_schema(specs: list[ComponentSpec]) -> dict[str, Any]:
    """The recipe's JSON Schema, each slot's ``config`` tied to the component named by ``type``."""
    schema = Recipe.model_json_schema()
    definitions = schema.get("$defs", {})
    for definition_name, kind in SLOT_KINDS.items():
        definition = definitions.get(definition_name)
        if definition is None:
            continue
        kind_specs = [s for s in specs if s.kind == kind]
        if definition_name == "ComponentSlot":
            kind_specs = [s for s in specs if s.kind == "encoder"]
        definition["properties"]["type"]["enum"] = [s.name for s in kind_specs]
        definition["allOf"] = [
            {
                "if": {"properties": {"type": {"const": s.name}}},
                "then": {"properties": {"config": {"$ref": f"schemas/{s.kind}/{s.name}.json"}}},
            }
            for s in kind_specs
        ]
    # A stage may also be a slot file's name (unclip_core.recipe.files.expand_slot_files).
    slot_file = {"type": "string", "pattern": r"\.ya?ml$", "description": "A slot file: this stage's slot in a YAML file of its own, relative to the recipe."}
    properties = schema["properties"]
    for key in ("encoder", "prior", "decoder"):
        properties[key] = {"anyOf": [properties[key], slot_file]}
    properties["upsamplers"]["items"] = {"anyOf": [properties["upsamplers"]["items"], slot_file]}
    schema["title"] = "unclip recipe"
    return schema


def export_registry(registry: Registry, out: Path, include_third_party: bool = False) -> list[Path]:
    """Write the catalogue to ``out`` (stale schema files of removed components are deleted)."""
    from unclip_core.atomic import atomic_write_all

    files = registry_files(registry, include_third_party)
    out.mkdir(parents=True, exist_ok=True)
    written = atomic_write_all([  # all or none: a full disk leaves the old catalogue whole
        (out / relative, lambda tmp, content=content: tmp.write_text(content, encoding="utf-8"))
        for relative, content in files.items()
    ])
    for old in (out / "schemas").rglob("*.json"):
        if old.relative_to(out).as_posix() not in files:
            old.unlink()
    return written
