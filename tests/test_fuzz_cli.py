"""Generated bad input thrown at the CLI's entry points: recipes, overrides, PNG metadata.

The rule, asserted for every example: the command exits 0 or 2 (never raises, never any
other status), a refusal is ``unclip: error: ...`` without a traceback, and nothing is
written anywhere in the folder the command runs in. The default run is short (a few dozen
examples per test, cheap commands); ``UNCLIP_FUZZ_EXAMPLES=2000`` runs a longer campaign.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from unclip_core.cli.main import main
from unclip_core.errors import InputError
from unclip_core.images import METADATA_KEY

EXAMPLES = int(os.environ.get("UNCLIP_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)
TINY = Path(__file__).parent / "recipes" / "tiny.yaml"
TINY_DATA = yaml.safe_load(TINY.read_text())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(argv: list[str], cwd: Path) -> tuple[int, str]:
    """``unclip ARGV`` in-process with ``cwd`` as the working folder: (status, stderr). Any
    exception escaping ``main`` fails the test with it."""
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exit:  # argparse's own usage errors
                status = exit.code
    finally:
        os.chdir(previous)
    return status, err.getvalue()


def assert_rule(status: int, stderr: str) -> None:
    assert status in (0, 2), (status, stderr[-3000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    if status == 2 and not stderr.startswith("usage:"):
        assert stderr.startswith("unclip: error: "), stderr[-3000:]


# ------------------------------------------------------------------ strategies
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=20,
)
SLOTS = ["name", "description", "encoder", "prior", "decoder", "upsamplers", "runtime", "stage"]


def paths_of(node, prefix=()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths_of(value, (*prefix, index))
    return found


TINY_PATHS = paths_of(TINY_DATA)


@st.composite
def mutated_recipes(draw) -> str:
    """The tiny recipe with a few values replaced, keys added or slots dropped."""
    import copy

    data = copy.deepcopy(TINY_DATA)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(TINY_PATHS))
        node = data
        try:
            for part in path[:-1]:
                node = node[part]
            if draw(st.booleans()) and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            continue
    if draw(st.booleans()):
        data[draw(st.sampled_from(SLOTS))] = draw(values)
    return yaml.safe_dump(data, allow_unicode=True)


yaml_punctuation = st.text(alphabet=st.sampled_from(list("[]{}:,-&*!|>'\"#%@` \n\tab1.=<")), max_size=200)
nested = st.integers(1, 500).map(lambda depth: "a: " + "[" * depth + "]" * depth + "\n")
aliases = st.integers(2, 12).map(
    lambda width: "a: &a [x]\n" + "".join(f"b{i}: &b{i} [" + ",".join([f"*{'a' if i == 0 else f'b{i - 1}'}"] * width) + "]\n" for i in range(8))
)
recipe_texts = st.one_of(
    mutated_recipes(), st.builds(lambda v: yaml.safe_dump(v, allow_unicode=True), values), yaml_punctuation, nested, aliases,
    st.text(max_size=300),
)
recipe_bytes = st.one_of(recipe_texts.map(lambda text: text.encode("utf-8", "surrogatepass")), st.binary(max_size=300))

override_keys = st.one_of(
    st.sampled_from([".".join(map(str, p)) for p in TINY_PATHS]), st.text(alphabet="abcdeprior.0_-=", min_size=0, max_size=20)
)
override_values = st.one_of(values.map(lambda v: json.dumps(v, default=str)), yaml_punctuation, nested.map(lambda t: t[3:-1]))
overrides = st.lists(st.builds(lambda k, v: f"{k}={v}", override_keys, override_values), min_size=1, max_size=3)


# ------------------------------------------------------------------ tests
@FUZZ
@given(text=recipe_bytes, command=st.sampled_from(["validate", "show"]))
def test_generated_recipes_follow_the_rule(text, command):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        recipe = folder / "fuzz.yaml"
        recipe.write_bytes(text)
        before = snapshot(folder)
        status, stderr = run_cli(["recipe", command, str(recipe)], folder)
        assert_rule(status, stderr)
        assert snapshot(folder) == before


@FUZZ
@given(items=overrides, command=st.sampled_from(["validate", "show"]))
def test_generated_overrides_follow_the_rule(items, command):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        status, stderr = run_cli(["recipe", command, str(TINY), *items], folder)
        assert_rule(status, stderr)
        assert snapshot(folder) == {}


settings_values = st.fixed_dictionaries(
    {},
    optional={
        "command": st.one_of(st.just("generate"), values),
        "recipe": st.one_of(st.just(str(TINY)), values),
        "prompt": st.one_of(st.just("a red circle"), st.text(max_size=40), values),
        "seed": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), values),
        "n": st.one_of(st.integers(min_value=-5, max_value=10**6), values),
        "index": st.one_of(st.integers(min_value=-5, max_value=10), values),
        "overrides": st.one_of(overrides, values),
        "precision": st.one_of(st.sampled_from(["fp32", "bf16", "auto"]), values),
    },
)
png_chunks = st.one_of(
    settings_values.map(lambda d: json.dumps(d, default=str)), values.map(lambda v: json.dumps(v, default=str)), st.text(max_size=100)
)


class ReachedThePipeline(InputError):
    """Stands in for loading models: the settings passed every check before it."""


@FUZZ
@given(chunk=png_chunks)
def test_generated_png_metadata_follows_the_rule(chunk):
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        folder = Path(folder)
        patch.setattr(
            "unclip_core.recipe.assemble.load_pipeline", lambda *a, **k: (_ for _ in ()).throw(ReachedThePipeline("reached"))
        )
        source = folder / "in.png"
        info = PngInfo()
        info.add_text(METADATA_KEY, chunk)
        Image.new("RGB", (8, 8)).save(source, pnginfo=info)
        before = snapshot(folder)
        status, stderr = run_cli(["generate", "--from", str(source), "-o", str(folder / "out" / "again.png")], folder)
        assert_rule(status, stderr)
        assert status == 2  # nothing can be drawn: the pipeline is stood in for
        assert snapshot(folder) == before
