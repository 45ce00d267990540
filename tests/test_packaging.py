"""The distribution ships every package and the recipes, and nothing top-level named
plugins/registry/recipes."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _mapped_packages() -> set[str]:
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    found = set()
    for import_name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([import_name, *relative.parts]))
    return found


def test_every_package_folder_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = _mapped_packages() - listed
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert not {"plugins", "registry", "recipes"} & listed


def test_entry_points_name_importable_modules():
    import importlib

    for name, target in PYPROJECT["project"]["entry-points"]["unclip"].items():
        importlib.import_module(target)


def test_recipes_are_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["unclip_recipes"]
    assert "*.yaml" in patterns and "**/*.safetensors" in patterns
