"""The held-out colour–shape pairs (docs/shapes.md) stay out of every shipped training recipe's
data — CLIP's included — so the held-out scores measure generalisation, not memory.

Each recipe in recipes/train/ is loaded as ``unclip train`` loads it and its dataset built from
the recipe's own settings; the captions it would train on are parsed back into objects and
checked against the world's list of held-out pairs. A new training recipe is covered by
being shipped; one whose data this test cannot read fails here until it is taught to."""
from __future__ import annotations

from pathlib import Path

import pytest

from unclip_core.errors import RecipeError
from unclip_core.recipe.files import find_recipe, read_yaml
from unclip_core.recipe.shipped import shipped_recipes
from unclip_core.recipe.validate import _resolve_component
from unclip_core.registry import default_registry
from unclip_core.training.validate import load_training
from unclip_plugins.shapes.captions import parse_caption
from unclip_plugins.shapes.world import HELD_OUT_PAIRS

TRAINING_RECIPES = sorted(name for name in shipped_recipes() if name.startswith("train/"))
CAPTIONS_CHECKED = 400  # rendered items, each parsed back from its caption
SCENES_CHECKED = 5000  # scenes drawn (no rendering), checked on their objects


def test_every_shipped_training_recipe_is_checked():
    assert "train/shapes-clip" in TRAINING_RECIPES and len(TRAINING_RECIPES) >= 5


def exported_weights() -> set[str]:
    """The weights files shipped training recipes export (``output.export``), resolved."""
    files = set()
    for name, path in shipped_recipes().items():
        if name.startswith("train/") and (export := (read_yaml(path).get("output") or {}).get("export")):
            files.add(str((path.parent / export).resolve()))
    return files


def training_dataset(name: str):
    """The dataset of a shipped training recipe, loaded as ``unclip train`` loads it. A stage
    whose frozen input is weights another shipped recipe exports but has not trained yet (the
    latent decoder's autoencoder) fails validation on that file alone; its dataset still counts."""
    try:
        resolved = load_training(name)
    except RecipeError as error:
        pending = exported_weights()
        if not all(path.endswith(".weights") and message.removeprefix("file not found: ") in pending
                   for path, message in error.problems):
            raise
        data = read_yaml(find_recipe(name))
        problems: list = []
        slot = _resolve_component(data["dataset"], "dataset", "dataset", default_registry(), Path("."), problems)
        assert slot is not None and not problems, problems
        return slot.spec.build(slot.config), slot.config
    return resolved.dataset.spec.build(resolved.dataset.config), resolved.dataset.config


@pytest.mark.parametrize("name", TRAINING_RECIPES)
def test_no_training_recipe_sees_a_held_out_pair(name):
    dataset, config = training_dataset(name)
    assert hasattr(dataset, "scene"), (
        f"{name}: its dataset {type(dataset).__name__} is not the shapes world; teach this test "
        "how to list what it trains on"
    )
    assert getattr(config, "split", "train") == "train", f"{name} trains on the 'all' split"
    count = min(len(dataset), SCENES_CHECKED)
    seen = [(obj.color, obj.shape) for i in range(count) for obj in dataset.scene(i).objects]
    assert seen and not set(seen) & HELD_OUT_PAIRS
    for index in range(min(len(dataset), CAPTIONS_CHECKED)):
        item = dataset[index]
        for text in [item["caption"], *item.get("negatives", [])]:  # CLIP's hard negatives are training text too
            pairs = set(parse_caption(text).objects)
            assert not pairs & HELD_OUT_PAIRS, f"{name}: item {index} trains on {text!r}"


def test_the_check_would_see_a_held_out_pair():
    """Not vacuous: the 'all' split, which keeps the held-out pairs, is caught."""
    from unclip_plugins.shapes.dataset import ShapesDataset

    dataset = ShapesDataset("all", size=32, length=SCENES_CHECKED, seed=1)
    seen = {(obj.color, obj.shape) for i in range(len(dataset)) for obj in dataset.scene(i).objects}
    assert seen & HELD_OUT_PAIRS
