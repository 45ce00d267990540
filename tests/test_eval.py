"""`unclip eval` and the shapes evaluation, against images whose verdicts are known.

The references are rendered scenes: a "model" that renders exactly what each caption says
must score 1.0 everywhere; one that swaps the two objects' shapes must keep colours right and
get shapes bound wrong; a blank canvas has no object at all.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unclip_core.cli.main import main
from unclip_core.errors import InputError, PluginError
from unclip_core.evaluation import EvalCase, Evaluation, run_evaluation
from unclip_plugins.evaluations.shapes import GROUPS, ShapesEvaluation, ShapesEvaluationConfig, group_of
from unclip_plugins.shapes import Scene, ShapeObject, parse_caption, render
from unclip_plugins.shapes.world import RELATION_DIRECTIONS, TWO_OBJECT_OFFSET


def scene_for(prompt: str, rng: np.random.Generator, swap_shapes: bool = False) -> Scene:
    """A scene that satisfies ``prompt`` (SHAPES.md placement, small jitter)."""
    spec = parse_caption(prompt)
    pairs = list(spec.objects)
    if swap_shapes and len(pairs) == 2:
        (c1, s1), (c2, s2) = pairs
        pairs = [(c1, s2), (c2, s1)]
    if len(pairs) == 1:
        cx, cy = 0.5 + rng.uniform(-0.1, 0.1, 2)
        return Scene((ShapeObject(*pairs[0], float(cx), float(cy), float(rng.uniform(0.22, 0.34))),))
    dx, dy = RELATION_DIRECTIONS[spec.relation]
    objects = tuple(
        ShapeObject(color, shape, float(0.5 + sign * TWO_OBJECT_OFFSET * dx + rng.uniform(-0.05, 0.05)),
                    float(0.5 + sign * TWO_OBJECT_OFFSET * dy + rng.uniform(-0.05, 0.05)), float(rng.uniform(0.22, 0.34)))
        for (color, shape), sign in zip(pairs, (1, -1))
    )
    return Scene(objects, spec.relation)


def renderer(swap_shapes: bool = False, calls: list | None = None):
    def generate(prompts: list[str], n: int, seed: int) -> list[Image.Image]:
        if calls is not None:
            calls.append((list(prompts), n, seed))
        rng = np.random.default_rng(seed)
        return [render(scene_for(p, rng, swap_shapes), size=64) for p in prompts for _ in range(n)]

    return generate


def blank(prompts: list[str], n: int, seed: int) -> list[Image.Image]:
    return [Image.new("RGB", (64, 64), (245, 245, 245)) for _ in range(len(prompts) * n)]


def small(**changes) -> ShapesEvaluation:
    settings = {"prompts_per_group": 12, "diversity_prompts": 3, "diversity_samples": 3, **changes}
    return ShapesEvaluation(ShapesEvaluationConfig(**settings))


def test_group_of_separates_objects_and_held_out_pairs():
    assert group_of("a red circle") == "seen_one"
    assert group_of("a green circle") == "heldout_one"
    assert group_of("a red circle above a blue square") == "seen_two"
    assert group_of("a red circle above an orange square") == "heldout_two"


def test_default_set_covers_every_group_and_spreads_diversity_samples():
    cases = small().cases()
    assert len(cases) == 36
    assert {c.group for c in cases} == set(GROUPS)
    assert sorted(c.samples for c in cases).count(3) == 3
    assert cases == small().cases(), "the prompt set is seeded"
    assert cases != small(prompt_seed=1).cases()


def test_exact_renders_score_perfectly():
    report = run_evaluation(renderer(), small(), batch_size=8)
    assert report["overall"]["exact"] == 1.0
    for group in GROUPS:
        figures = report["groups"][group]
        assert figures["exact"] == figures["color"] == figures["shape"] == figures["count"] == 1.0
    assert report["failed"] == 0 and report["failures"] == []
    assert report["diversity_prompts"] == 3
    assert 0.0 < report["diversity"] < 0.5, "different jitters differ, but scenes of one caption stay alike"


def test_swapped_shapes_are_binding_errors():
    prompts = ["a red circle above a blue square", "a yellow triangle to the left of a green square"]
    report = run_evaluation(renderer(swap_shapes=True), small(diversity_prompts=0), prompts)
    figures = report["groups"]["seen_two"]
    assert figures["color"] == 1.0 and figures["shape"] == 1.0 and figures["count"] == 1.0
    assert figures["exact"] == 0.0 and figures["relation"] == 0.0
    assert report["failures"][0]["saw"] and report["failed"] == 2


def test_blank_images_hold_no_objects():
    report = run_evaluation(blank, small(diversity_prompts=0), ["a red circle", "a blue square"])
    assert report["overall"]["count"] == 0.0 and report["overall"]["exact"] == 0.0
    assert report["failures"][0]["saw"] == []


def test_batches_respect_batch_size_and_use_successive_seeds():
    calls: list = []
    evaluation = small(prompts_per_group=4, diversity_prompts=2, diversity_samples=3)
    report = run_evaluation(renderer(calls=calls), evaluation, seed=10, batch_size=4)
    assert [seed for _, _, seed in calls] == list(range(10, 10 + len(calls)))
    assert all(len(prompts) * n <= 4 for prompts, n, _ in calls)
    assert sum(len(p) * n for p, n, _ in calls) == report["run"]["images"] == 10 + 2 * 3
    assert report["run"]["prompts"] == 12


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match=r"prompt 2: caption 'a blue blob'"):
        small().cases(["a red circle", "a blue blob"])
    with pytest.raises(InputError, match="batch size"):
        run_evaluation(renderer(), small(), batch_size=0)

    class Short(Evaluation):
        def cases(self, prompts=None):
            return [EvalCase("a red circle", "g")]

        def report(self, samples):
            return {}

    with pytest.raises(InputError, match="returned 0 images"):
        run_evaluation(lambda p, n, s: [], Short(ShapesEvaluationConfig()))


# ---------------------------------------------------------------- the command


def test_cli_eval_with_a_prompts_file(tmp_path, tiny_recipe_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# one per line\na red circle\n\na green circle above a blue square\n")
    saved = tmp_path / "images"
    code = main(["eval", "shapes", "-r", str(tiny_recipe_path), "--prompts", str(prompts), "--json", "-q",
                 "-s", "diversity_prompts=0", "--save", str(saved), "decoder.sampler.config.steps=2"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["groups"]) == {"seen_one", "heldout_two"}
    assert report["run"]["prompts"] == 2 and report["recipe"]["digest"]
    assert sorted(p.name for p in saved.iterdir()) == [
        "0000-a_red_circle.png", "0001-a_green_circle_above_a_blue_square.png"]


def test_cli_eval_table(tiny_recipe_path, capsys):
    code = main(["eval", "shapes", "-r", str(tiny_recipe_path), "-q", "-s", "prompts_per_group=1", "-s", "diversity_prompts=1",
                 "-s", "diversity_samples=2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "group" in out and "seen_one" in out and "all" in out and "diversity:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "shapez"], "did you mean 'shapes'"),
        (["eval", "shapes", "-s", "prompts_per_group=0"], "prompts_per_group"),
        (["eval", "shapes", "-s", "nonsense"], "not KEY=VALUE"),
        (["eval", "shapes", "--prompts", "/nonexistent/prompts.txt"], "does not exist"),
    ],
)
def test_cli_eval_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_eval_names_the_bad_line(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n\na blue blob\n")
    assert main(["eval", "shapes", "--prompts", str(prompts)]) == 2
    assert f"{prompts}:3: caption 'a blue blob'" in capsys.readouterr().err


def test_unknown_evaluation_is_a_plugin_error(registry):
    with pytest.raises(PluginError, match="not a registered evaluation"):
        registry.get("evaluation", "nope")
