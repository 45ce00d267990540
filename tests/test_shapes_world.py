"""The shapes world against SHAPES.md: grammar, sampling statistics, geometry, rendering and
the checker, each compared with hand-written or hand-computed expectations."""
from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from unclip_core.errors import InputError
from unclip_plugins.shapes import (
    BACKGROUND,
    HELD_OUT_PAIRS,
    PALETTE,
    RELATIONS,
    CaptionSpec,
    CheckResult,
    Scene,
    ShapeObject,
    ShapesDataset,
    all_prompts,
    caption,
    check,
    diversity,
    parse_caption,
    prompt_set,
    relation_holds,
    render,
    render_array,
    sample_scene,
    score,
)


def _scenes(n: int, split: str = "all", seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, split) for _ in range(n)]


def _two(first: ShapeObject, relation: str, second: ShapeObject) -> Scene:
    return Scene((first, second), relation)


RED_SQUARE_LEFT = ShapeObject("red", "square", 0.28, 0.5, 0.3)
BLUE_TRIANGLE_RIGHT = ShapeObject("blue", "triangle", 0.72, 0.5, 0.3)
RED_LEFT_OF_BLUE = _two(RED_SQUARE_LEFT, "to the left of", BLUE_TRIANGLE_RIGHT)


# ---------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scene", "expected"),
    [
        (Scene((ShapeObject("orange", "circle", 0.5, 0.5, 0.3),)), "an orange circle"),
        (Scene((ShapeObject("yellow", "triangle", 0.45, 0.55, 0.25),)), "a yellow triangle"),
        (RED_LEFT_OF_BLUE, "a red square to the left of a blue triangle"),
        (
            _two(ShapeObject("blue", "triangle", 0.5, 0.28, 0.3), "above", ShapeObject("orange", "circle", 0.5, 0.72, 0.3)),
            "a blue triangle above an orange circle",
        ),
        (
            _two(ShapeObject("green", "square", 0.72, 0.5, 0.3), "to the right of", ShapeObject("purple", "circle", 0.28, 0.5, 0.3)),
            "a green square to the right of a purple circle",
        ),
    ],
)
def test_caption_follows_the_grammar(scene: Scene, expected: str) -> None:
    assert caption(scene) == expected


def test_parse_caption_reads_objects_and_relation() -> None:
    assert parse_caption("an orange circle") == CaptionSpec((("orange", "circle"),), None)
    assert parse_caption("a red square below an orange triangle") == CaptionSpec(
        (("red", "square"), ("orange", "triangle")), "below"
    )


@pytest.mark.parametrize(
    "text",
    [
        "a orange circle",  # wrong article
        "an red square",
        "A red square",  # capitals
        "a red square.",  # final period
        "a red  square",  # double space
        " a red square",
        "a pink square",  # unknown colour
        "a red hexagon",
        "a red square next to a blue circle",  # unknown relation
        "a red square to the left of",
        "a red square to the left of a red square",  # same colour and shape twice
        "",
    ],
)
def test_caption_outside_the_grammar_raises_input_error_naming_it(text: str) -> None:
    with pytest.raises(InputError, match="caption"):
        parse_caption(text)
    with pytest.raises(InputError):
        check(render(RED_LEFT_OF_BLUE), text)


def test_generated_captions_are_all_in_the_grammar() -> None:
    for scene in _scenes(300):
        spec = parse_caption(caption(scene))
        assert spec.objects == scene.pairs and spec.relation == scene.relation


# ---------------------------------------------------------------------------------------
# Sampling statistics
# ---------------------------------------------------------------------------------------


def test_train_split_never_shows_a_held_out_pair_and_all_split_does() -> None:
    train = _scenes(3000, "train", seed=1)
    assert not any(pair in HELD_OUT_PAIRS for scene in train for pair in scene.pairs)
    everything = _scenes(3000, "all", seed=1)
    seen = {pair for scene in everything for pair in scene.pairs}
    assert HELD_OUT_PAIRS <= seen
    assert len(seen) == 18


def test_two_objects_never_share_colour_and_shape() -> None:
    for scene in _scenes(3000, "all", seed=2):
        assert len(set(scene.pairs)) == len(scene.objects)


@pytest.mark.parametrize("split", ["train", "all"])
def test_mixture_is_40_60_and_relations_are_uniform(split: str) -> None:
    scenes = _scenes(4000, split, seed=3)
    one_object = sum(len(scene.objects) == 1 for scene in scenes) / len(scenes)
    assert abs(one_object - 0.4) < 0.03  # 4000 draws: standard error 0.008
    relations = Counter(scene.relation for scene in scenes if scene.relation is not None)
    assert set(relations) == set(RELATIONS)
    total = sum(relations.values())
    for relation in RELATIONS:
        assert abs(relations[relation] / total - 0.25) < 0.04


def test_unknown_split_raises() -> None:
    with pytest.raises(InputError, match="split"):
        sample_scene(np.random.default_rng(0), "heldout")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Geometry (hand-computed from the spec: 0.5 ± 0.22, jitter ±0.05 or ±0.1, size 0.22–0.34)
# ---------------------------------------------------------------------------------------


def test_scene_geometry_matches_the_spec() -> None:
    scenes = _scenes(3000, "all", seed=4)
    sizes = [obj.size for scene in scenes for obj in scene.objects]
    assert 0.22 <= min(sizes) < 0.225 and 0.335 < max(sizes) <= 0.34

    singles = [scene.objects[0] for scene in scenes if len(scene.objects) == 1]
    for axis in ("cx", "cy"):
        values = [getattr(obj, axis) for obj in singles]
        assert 0.4 <= min(values) < 0.41 and 0.59 < max(values) <= 0.6

    # (first along, second along) on the named axis; the cross axis is 0.5 ± 0.05.
    expected = {"to the left of": ("cx", 0.28, 0.72), "to the right of": ("cx", 0.72, 0.28),
                "above": ("cy", 0.28, 0.72), "below": ("cy", 0.72, 0.28)}
    for relation, (axis, first_at, second_at) in expected.items():
        pairs = [scene.objects for scene in scenes if scene.relation == relation]
        assert len(pairs) > 300
        cross = "cy" if axis == "cx" else "cx"
        for first, second in pairs:
            assert abs(getattr(first, axis) - first_at) <= 0.05 + 1e-12
            assert abs(getattr(second, axis) - second_at) <= 0.05 + 1e-12
            assert abs(getattr(first, cross) - 0.5) <= 0.05 + 1e-12
            assert abs(getattr(second, cross) - 0.5) <= 0.05 + 1e-12
        firsts = [getattr(first, axis) for first, _ in pairs]
        assert max(firsts) - min(firsts) > 0.09  # the jitter is used, not just bounded


@pytest.mark.parametrize(
    ("first", "second", "relation", "expected"),
    [
        ((0.28, 0.5), (0.72, 0.5), "to the left of", True),
        ((0.28, 0.5), (0.72, 0.5), "to the right of", False),
        ((0.5, 0.28), (0.5, 0.72), "above", True),
        ((0.5, 0.28), (0.5, 0.72), "below", False),
        ((0.72, 0.55), (0.28, 0.45), "to the right of", True),
        ((0.45, 0.1), (0.5, 0.9), "to the left of", False),  # mostly above: outside the cone
    ],
)
def test_relation_holds_hand_cases(first, second, relation: str, expected: bool) -> None:
    assert relation_holds(first, second, relation) is expected


# ---------------------------------------------------------------------------------------
# Rendering (hand-computed areas, centroids and pixels)
# ---------------------------------------------------------------------------------------


def _ink(pixels: np.ndarray, color: str) -> np.ndarray:
    """Per-pixel coverage recovered from the blend on the channel where colour and background differ most."""
    channel = int(np.argmax(np.abs(np.subtract(BACKGROUND, PALETTE[color]))))
    bg, fg = BACKGROUND[channel], PALETTE[color][channel]
    return (pixels[..., channel].astype(float) - bg) / (fg - bg)


@pytest.mark.parametrize(
    ("shape", "area", "centroid_dy"),
    [("square", 1.0, 0.0), ("circle", math.pi / 4, 0.0), ("triangle", 0.5, 1 / 6)],
)
@pytest.mark.parametrize("size", [32, 64, 128])
def test_render_area_and_centroid_match_hand_computed(shape: str, area: float, centroid_dy: float, size: int) -> None:
    side = 0.3
    scene = Scene((ShapeObject("blue", shape, 0.47, 0.52, side),))
    ink = _ink(render_array(scene, size), "blue")
    expected_pixels = area * (side * size) ** 2
    # Exact coverage for squares and triangles; rounding to uint8 costs ≤ 0.5/215 per edge pixel.
    assert ink.sum() == pytest.approx(expected_pixels, rel=0.002, abs=0.3)
    ys, xs = np.mgrid[0:size, 0:size]
    cx = ((xs + 0.5) * ink).sum() / ink.sum() / size
    cy = ((ys + 0.5) * ink).sum() / ink.sum() / size
    assert cx == pytest.approx(0.47, abs=0.5 / size)
    assert cy == pytest.approx(0.52 + centroid_dy * side, abs=0.5 / size)


def test_render_pixels_of_an_aligned_square() -> None:
    # Square from 0.25 to 0.75 at 64 px: pixels 16..47 inside, 15 and 48 background.
    image = render(Scene((ShapeObject("red", "square", 0.5, 0.5, 0.5),)), 64)
    assert image.mode == "RGB" and image.size == (64, 64)
    pixels = np.asarray(image)
    assert (pixels[16:48, 16:48] == PALETTE["red"]).all()
    assert (pixels[15, :] == BACKGROUND).all() and (pixels[:, 48] == BACKGROUND).all()
    assert (pixels[:16] == BACKGROUND).all()


def test_render_anti_aliases_edges() -> None:
    # Left edge at x = 0.25 + 1/128 falls in the middle of pixel 16 (64 px): half coverage;
    # a triangle edge of slope 2 crossing a pixel corner to corner halves it too.
    scene = Scene((ShapeObject("red", "square", 0.5 + 1 / 128, 0.5, 0.5),))
    ink = _ink(render_array(scene, 64), "red")
    assert ink[32, 16] == pytest.approx(0.5, abs=0.005)
    assert ink[32, 17] == pytest.approx(1.0, abs=0.005)
    # Apex at (0.5, 0.25), side 0.5 → in pixels apex (32, 16), left edge x = 32 − (y − 16)/2:
    # column 31 is covered ∫ (y − 16)/2 dy = 1/4 over row 16 and 3/4 over row 17.
    triangle = Scene((ShapeObject("blue", "triangle", 0.5, 0.5, 0.5),))
    ink = _ink(render_array(triangle, 64), "blue")
    assert ink[16, 31] == pytest.approx(0.25, abs=0.005)
    assert ink[17, 31] == pytest.approx(0.75, abs=0.005)


# ---------------------------------------------------------------------------------------
# Checker
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "count", "minimum"), [(64, 500, 0.99), (128, 250, 0.99), (32, 250, 0.88)])
def test_checker_reads_back_clean_renders(size: int, count: int, minimum: float) -> None:
    # Seen over 5000 scenes: 64 px 99.98%, 128 px 100%, 32 px 94.4% (objects of 7-11 px:
    # small triangles fill ~2/3 of their box and read as circles).
    scenes = _scenes(count, "all", seed=5)
    results = [check(render_array(scene, size), caption(scene)) for scene in scenes]
    assert score(results)["exact"] >= minimum


def test_checker_detects_colour_shape_and_centres() -> None:
    result = check(render(RED_LEFT_OF_BLUE), caption(RED_LEFT_OF_BLUE))
    assert result.exact and result.color and result.shape and result.count and result.relation
    by_colour = {obj.color: obj for obj in result.objects}
    assert by_colour["red"].shape == "square" and by_colour["blue"].shape == "triangle"
    assert by_colour["red"].cx == pytest.approx(0.28, abs=1 / 64)
    assert by_colour["blue"].cy == pytest.approx(0.5, abs=1 / 64)
    # Red spans x in [0.13, 0.43] → pixels 8.32..27.52, y in [0.35, 0.65] → 22.4..41.6: 18 full
    # pixels each way; the edge pixels (coverage 0.68, 0.52, 0.6, 0.6) blend nearer to orange.
    assert by_colour["red"].area == 18 * 18 / 64**2


def test_checker_accepts_pil_uint8_and_float_tensor() -> None:
    pixels = render_array(RED_LEFT_OF_BLUE, 64)
    tensor = torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1
    text = caption(RED_LEFT_OF_BLUE)
    for image in (Image.fromarray(pixels), pixels, tensor):
        assert check(image, text).exact
    with pytest.raises(InputError, match="tensor"):
        check(tensor[None], text)
    with pytest.raises(InputError, match="array"):
        check(pixels.astype(np.float32), text)


def test_checker_rejects_swapped_colour() -> None:
    wrong = _two(dataclasses.replace(RED_SQUARE_LEFT, color="green"), "to the left of", BLUE_TRIANGLE_RIGHT)
    result = check(render(wrong), caption(RED_LEFT_OF_BLUE))
    assert not result.exact and not result.color
    assert result.shape and result.count


def test_checker_rejects_wrong_shape() -> None:
    wrong = _two(dataclasses.replace(RED_SQUARE_LEFT, shape="circle"), "to the left of", BLUE_TRIANGLE_RIGHT)
    result = check(render(wrong), caption(RED_LEFT_OF_BLUE))
    assert not result.exact and not result.shape
    assert result.color and result.count


def test_checker_rejects_flipped_relation() -> None:
    flipped = _two(
        dataclasses.replace(RED_SQUARE_LEFT, cx=0.72), "to the left of", dataclasses.replace(BLUE_TRIANGLE_RIGHT, cx=0.28)
    )
    result = check(render(flipped), caption(RED_LEFT_OF_BLUE))
    assert result.relation is False and not result.exact
    assert result.color and result.shape and result.count


def test_checker_rejects_swapped_binding() -> None:
    # Right colours, right shapes, wrong pairing: an attribute binding error.
    swapped = _two(
        dataclasses.replace(RED_SQUARE_LEFT, shape="triangle"), "to the left of", dataclasses.replace(BLUE_TRIANGLE_RIGHT, shape="square")
    )
    result = check(render(swapped), caption(RED_LEFT_OF_BLUE))
    assert result.color and result.shape and result.count
    assert not result.exact and result.relation is False


def test_checker_rejects_blank_canvas() -> None:
    blank = np.full((64, 64, 3), BACKGROUND, dtype=np.uint8)
    result = check(blank, "an orange circle")
    assert not result.count and not result.exact and result.objects == ()
    assert result.relation is None


def test_checker_ignores_regions_below_the_area_threshold() -> None:
    # A 7×7 red blob is 49 px < 1.5% of 64×64 (61.4 px): not an object.
    pixels = render_array(Scene((ShapeObject("blue", "circle", 0.5, 0.5, 0.3),)), 64)
    pixels[2:9, 2:9] = PALETTE["red"]
    assert check(pixels, "a blue circle").exact
    pixels[2:10, 2:10] = PALETTE["red"]  # 64 px: now an object
    result = check(pixels, "a blue circle")
    assert not result.exact and not result.count


def test_checker_is_not_fooled_by_noise_of_the_right_colours() -> None:
    rng = np.random.default_rng(0)
    colours = np.array([BACKGROUND, PALETTE["red"], PALETTE["blue"]], dtype=np.uint8)
    noise = colours[rng.integers(0, 3, size=(64, 64))]
    assert not check(noise, caption(RED_LEFT_OF_BLUE)).exact


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def _result(exact: bool, color: bool, shape: bool, count: bool, relation: bool | None) -> CheckResult:
    return CheckResult(exact, color, shape, count, relation, (), "")


def test_score_hand_computed() -> None:
    results = [
        _result(True, True, True, True, None),
        _result(False, True, False, True, None),
        _result(False, True, True, True, False),
        _result(True, True, True, True, True),
    ]
    assert score(results) == {
        "exact": 0.5, "color": 1.0, "shape": 0.75, "count": 1.0, "relation": 0.5, "n": 4, "n_relation": 2,
    }
    assert score(results[:2])["relation"] is None


def test_diversity_is_rms_distance() -> None:
    white = np.full((8, 8, 3), 255, dtype=np.uint8)
    black = np.zeros((8, 8, 3), dtype=np.uint8)
    assert diversity([white, white, white]) == 0.0
    assert diversity([white, black]) == pytest.approx(1.0)
    # pairs: (w,w)=0, (w,b)=1, (w,b)=1 → mean 2/3
    assert diversity([white, white, black]) == pytest.approx(2 / 3)
    one_pixel = white.copy()
    one_pixel[0, 0] = 0  # 3 of 192 values differ by 1: sqrt(3 / 192)
    assert diversity([white, one_pixel]) == pytest.approx(math.sqrt(3 / 192))
    with pytest.raises(InputError):
        diversity([white])


# ---------------------------------------------------------------------------------------
# Prompt sets
# ---------------------------------------------------------------------------------------


def test_prompt_groups_hold_the_right_captions() -> None:
    assert len(all_prompts("seen_one")) == 15  # 18 pairs − 3 held out
    assert len(all_prompts("seen_two")) == 15 * 14 * 4
    assert len(all_prompts("heldout")) == 3 + (18 * 17 - 15 * 14) * 4
    for group, held_out in (("seen_one", False), ("seen_two", False), ("heldout", True)):
        prompts = prompt_set(group, 200, seed=7)
        assert len(prompts) == 200
        for text in prompts:
            spec = parse_caption(text)
            assert any(pair in HELD_OUT_PAIRS for pair in spec.objects) is held_out
        counts = {len(parse_caption(text).objects) for text in prompts}
        assert counts == {"seen_one": {1}, "seen_two": {2}, "heldout": {1, 2}}[group]
    heldout = prompt_set("heldout", 100, seed=1)
    assert sum(len(parse_caption(text).objects) == 1 for text in heldout) == 40


def test_prompt_sets_are_reproducible_and_cover_evenly() -> None:
    assert prompt_set("seen_two", 50, seed=3) == prompt_set("seen_two", 50, seed=3)
    assert prompt_set("seen_two", 50, seed=3) != prompt_set("seen_two", 50, seed=4)
    assert set(Counter(prompt_set("seen_one", 45, seed=0)).values()) == {3}
    with pytest.raises(InputError, match="prompt group"):
        prompt_set("unseen", 5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------


def test_dataset_items_are_deterministic_scored_renders() -> None:
    dataset = ShapesDataset("train", size=32, length=40, seed=11)
    again = ShapesDataset("train", size=32, length=40, seed=11, cache=True)
    for index in (0, 7, 39):
        item = dataset[index]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["image"].min() >= -1 and item["image"].max() <= 1
        assert item["caption"] == caption(dataset.scene(index))
        assert torch.equal(item["image"], again[index]["image"]) and torch.equal(again[index]["image"], item["image"])
        assert item["caption"] == again[index]["caption"]
        expected = render_array(dataset.scene(index), 32).astype(np.float32) / 127.5 - 1
        assert torch.allclose(item["image"], torch.from_numpy(expected).permute(2, 0, 1))
    assert dataset[0]["caption"] != ShapesDataset("train", size=32, length=40, seed=12)[0]["caption"] or (
        not torch.equal(dataset[0]["image"], ShapesDataset("train", size=32, length=40, seed=12)[0]["image"])
    )
    assert not any(dataset.scene(i).has_held_out_pair() for i in range(len(dataset)))
    with pytest.raises(IndexError):
        dataset[40]
    with pytest.raises(InputError, match="split"):
        ShapesDataset("test")  # type: ignore[arg-type]


def test_place_objects_draws_a_scene_its_caption_describes() -> None:
    """Checked by the shapes checker on the rendered scene, for every seen two-object prompt
    and the held-out ones (as bench/ablations.py's oracle row uses it)."""
    from unclip_plugins.shapes.checker import check
    from unclip_plugins.shapes.world import place_objects

    prompts = all_prompts("seen_one") + all_prompts("heldout")[:200]
    rng = np.random.default_rng(4)
    exact = 0
    for text in prompts:
        spec = parse_caption(text)
        scene = place_objects(spec.objects, spec.relation, rng)
        assert caption(scene) == text
        exact += check(render_array(scene, 64), text).exact
    assert exact >= 0.95 * len(prompts)
    with pytest.raises(InputError, match="two with a relation"):
        place_objects([("red", "circle"), ("blue", "square")], "beside", rng)
