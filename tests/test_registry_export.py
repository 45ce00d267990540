"""The committed registry/ catalogue is what `unclip registry export` writes today.

A component whose settings change without a re-export fails here, so the change shows in
review and editors validating recipes against registry/recipe.schema.json stay right.
"""
from __future__ import annotations

import json
from pathlib import Path

from unclip_core.cli.main import main
from unclip_core.registry_export import export_registry, registry_files

REGISTRY = Path(__file__).resolve().parent.parent / "registry"


def test_committed_registry_is_fresh(registry):
    expected = registry_files(registry)
    committed = {p.relative_to(REGISTRY).as_posix() for p in REGISTRY.rglob("*.json")}
    stale = sorted(name for name, content in expected.items()
                   if not (REGISTRY / name).is_file() or (REGISTRY / name).read_text(encoding="utf-8") != content)
    extra = sorted(committed - set(expected))
    assert not stale and not extra, (
        f"registry/ is stale (changed: {stale}, no longer exported: {extra}); run `unclip registry export`"
    )


def test_catalogue_lists_every_built_in_with_its_schema(registry):
    catalogue = json.loads((REGISTRY / "catalogue.json").read_text())["components"]
    built_ins = {(s.kind, s.name) for s in registry.all_components() if s.provider.distribution == "unclip"}
    assert {(c["kind"], c["name"]) for c in catalogue} == built_ins
    for entry in catalogue:
        schema = json.loads((REGISTRY / entry["config_schema"]).read_text())
        assert schema["additionalProperties"] is False, f"{entry['name']}: configs forbid unknown settings"


def test_recipe_schema_ties_each_slot_to_its_components():
    schema = json.loads((REGISTRY / "recipe.schema.json").read_text())
    decoder = schema["$defs"]["DecoderStage"]
    assert "unclip-decoder" in decoder["properties"]["type"]["enum"]
    refs = [rule["then"]["properties"]["config"]["$ref"] for rule in decoder["allOf"]]
    assert "schemas/decoder/unclip-decoder.json" in refs


def test_export_removes_schemas_of_components_gone(registry, tmp_path):
    ghost = tmp_path / "schemas" / "decoder" / "gone.json"
    ghost.parent.mkdir(parents=True)
    ghost.write_text("{}")
    export_registry(registry, tmp_path)
    assert not ghost.exists()
    assert (tmp_path / "schemas" / "sampler" / "ddim.json").is_file()


def test_cli_export_writes_the_folder(tmp_path, capsys):
    assert main(["registry", "export", "--out", str(tmp_path / "reg")]) == 0
    assert (tmp_path / "reg" / "catalogue.json").is_file()
