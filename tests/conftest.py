"""Shared fixtures. Tests never reach a model hub: everything runs offline on tiny components."""
from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

TESTS = Path(__file__).parent
TINY_RECIPE = TESTS / "recipes" / "tiny.yaml"


@pytest.fixture(scope="session")
def registry():
    from unclip_core.registry import discover

    return discover()


@pytest.fixture(scope="session")
def tiny_recipe_path() -> Path:
    return TINY_RECIPE


@pytest.fixture(scope="session")
def tiny_recipe_data() -> dict:
    import yaml

    return yaml.safe_load(TINY_RECIPE.read_text())


@pytest.fixture(scope="session")
def tiny_pipeline(registry):
    from unclip_core.recipe.assemble import build_pipeline
    from unclip_core.recipe.files import load_recipe

    return build_pipeline(load_recipe(TINY_RECIPE, registry=registry), registry)
