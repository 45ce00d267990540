"""Hard negative captions for CLIP (plugins/shapes/negatives.py), judged by the shapes checker
on the rendered scenes: the true caption passes, every negative fails."""
from __future__ import annotations

import math

import numpy as np
import pytest

from unclip_plugins.shapes.captions import article, caption, parse_caption
from unclip_plugins.shapes.checker import check
from unclip_plugins.shapes.dataset import ShapesDataset
from unclip_plugins.shapes.negatives import draw_negatives, negative_captions
from unclip_plugins.shapes.renderer import render_array
from unclip_plugins.shapes.world import HELD_OUT_PAIRS


@pytest.fixture(scope="module")
def scenes():
    dataset = ShapesDataset("train", size=64, length=60, seed=5)
    return [dataset.scene(i) for i in range(len(dataset))]


def test_every_negative_is_false_for_its_rendered_scene_and_the_truth_is_true(scenes):
    judged = readable = 0
    for scene in scenes:
        image = render_array(scene, 64)
        truth = caption(scene)
        negatives = negative_captions(scene)
        assert negatives and truth not in negatives and len(set(negatives)) == len(negatives)
        if not check(image, truth).exact:
            continue  # the checker misreads a few rendered scenes (docs/shapes.md): no verdict here
        readable += 1
        for text in negatives:
            assert not check(image, text).exact, f"{text!r} is true of the scene captioned {truth!r}"
            judged += 1
    assert readable >= 0.9 * len(scenes) and judged > 500


def test_no_negative_names_a_held_out_pair(scenes):
    for scene in scenes:
        for text in negative_captions(scene):
            assert not set(parse_caption(text).objects) & HELD_OUT_PAIRS


def test_a_two_object_caption_gets_its_bag_of_words_twins_first(scenes):
    """The colour, shape and order swaps use the caption's very words: drawn before the
    single-attribute edits, whatever the generator."""
    two = next(s for s in scenes if s.relation is not None and s.objects[0].color != s.objects[1].color
               and s.objects[0].shape != s.objects[1].shape)
    (c1, s1), (c2, s2) = two.pairs
    relation = two.relation
    twins = {f"{a} {relation} {b}" for a, b in [
        (f"{article(c2)} {c2} {s1}", f"{article(c1)} {c1} {s2}"),  # colours swapped
        (f"{article(c1)} {c1} {s2}", f"{article(c2)} {c2} {s1}"),  # shapes swapped
        (f"{article(c2)} {c2} {s2}", f"{article(c1)} {c1} {s1}"),  # objects swapped
    ]}
    twins = {t for t in twins if not set(parse_caption(t).objects) & HELD_OUT_PAIRS}
    for seed in range(5):
        drawn = draw_negatives(two, len(twins), np.random.default_rng(seed))
        assert set(drawn) == twins


def test_dataset_items_carry_negatives_without_changing_the_scenes():
    plain = ShapesDataset("train", size=32, length=20, seed=3)
    with_negatives = ShapesDataset("train", size=32, length=20, seed=3, hard_negatives=3)
    for index in range(20):
        item = with_negatives[index]
        assert item["caption"] == plain[index]["caption"] and "negatives" not in plain[index]
        assert len(item["negatives"]) == 3 and item["negatives"] == with_negatives[index]["negatives"]
        assert set(item["negatives"]) <= set(negative_captions(with_negatives.scene(index)))


def test_a_clip_training_run_with_hard_negatives_lowers_its_loss(registry, tiny_recipe_data, tmp_path):
    """`unclip train`'s encoder stage hands the dataset's negatives to the loss: the loss it
    logs at step 1 is above the plain run's (more candidates), and it goes down."""
    from tests.test_training import losses, recipe_for
    from unclip_core.training.loop import train
    from unclip_core.training.validate import validate_training

    runs = {}
    for count in (0, 2):
        data = recipe_for("encoder", tiny_recipe_data, steps=30)
        data["dataset"]["config"]["hard_negatives"] = count
        resolved = validate_training(data, registry, base_dir=tmp_path)
        train(resolved, registry=registry, out_dir=tmp_path / f"run-{count}", progress=False)
        runs[count] = losses(tmp_path / f"run-{count}")
    assert runs[2][0] > runs[0][0]
    assert all(math.isfinite(v) for v in runs[2]) and sum(runs[2][-6:]) < sum(runs[2][:6])
