"""Recipe validation: every problem reported at once with its YAML path, nothing half-built."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from PIL import Image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unclip_core.errors import RecipeError
from unclip_core.recipe.files import load_recipe, read_yaml
from unclip_core.recipe.overrides import apply_overrides
from unclip_core.recipe.validate import validate_recipe


def check(data, registry, tmp_path=Path(".")):
    return validate_recipe(data, registry, base_dir=tmp_path)


def test_tiny_recipe_is_valid(registry, tiny_recipe_data):
    resolved = check(tiny_recipe_data, registry)
    assert resolved.decoder.spec.name == "unclip-decoder"
    assert resolved.decoder_sampler.config.steps == 3
    assert len(resolved.upsamplers) == 1
    assert len(resolved.digest) == 16


def test_all_problems_reported_at_once(registry, tiny_recipe_data):
    data = copy.deepcopy(tiny_recipe_data)
    data["decodr"] = {}
    data["prior"]["sampler"]["type"] = "dddim"
    data["prior"]["config"]["num_layer"] = 3
    data["decoder"]["guidance"] = 2
    data["upsamplers"][0]["config"]["input_size"] = 8
    data["encoder"]["type"] = "open-clop"
    with pytest.raises(RecipeError) as info:
        check(data, registry)
    problems = dict(info.value.problems)
    assert "did you mean 'decoder'" in problems["decodr"]
    assert "did you mean 'ddim'" in problems["prior.sampler.type"]
    assert "unknown setting 'num_layer' (did you mean 'num_layers'?)" in problems["prior.config.num_layer"]
    assert "decoder.guidance" in problems
    assert "did you mean 'open-clip'" in problems["encoder.type"]
    assert "8px input" in problems["upsamplers.0"] and "16px" in problems["upsamplers.0"]
    assert len(info.value.problems) == 6
    assert str(info.value).startswith("6 recipe errors")


def test_chain_mismatch_embedding_sizes(registry, tiny_recipe_data):
    data = copy.deepcopy(tiny_recipe_data)
    data["prior"]["config"]["embed_dim"] = 24
    data["decoder"]["config"]["text_width"] = 48
    with pytest.raises(RecipeError) as info:
        check(data, registry)
    problems = dict(info.value.problems)
    assert "embedding size 24 does not match the encoder's 16" in problems["prior"]
    assert "caption token width 48" in problems["decoder"]


def test_prior_sampler_rules(registry, tiny_recipe_data):
    data = copy.deepcopy(tiny_recipe_data)
    del data["prior"]["sampler"]
    with pytest.raises(RecipeError, match=r"prior.sampler: prior 'diffusion-prior' is a diffusion model and needs a sampler"):
        check(data, registry)
    data = copy.deepcopy(tiny_recipe_data)
    data["prior"] = {"type": "text-as-image", "sampler": {"type": "ddim"}}
    with pytest.raises(RecipeError, match=r"prior.sampler: prior 'text-as-image' samples by itself"):
        check(data, registry)


def test_inversion_sampler_is_a_slot_validated_like_any(registry, tiny_recipe_data):
    """``decoder.inversion_sampler`` defaults to the sampler registered for the inversion role
    (following the decoder sampler's steps), and a given one is checked like any sampler slot."""
    resolved = check(copy.deepcopy(tiny_recipe_data), registry)
    assert "inversion" in resolved.inversion_sampler.spec.roles
    assert resolved.inversion_sampler.config.steps == resolved.decoder_sampler.config.steps
    data = copy.deepcopy(tiny_recipe_data)
    data["decoder"]["inversion_sampler"] = {"type": "ddmi", "config": {}}
    with pytest.raises(RecipeError, match=r"decoder.inversion_sampler.type: 'ddmi' is not a registered sampler \(did you mean"):
        check(data, registry)
    data["decoder"]["inversion_sampler"] = {"type": "ddim", "config": {"stpes": 3}}
    with pytest.raises(RecipeError, match=r"decoder.inversion_sampler.config.stpes: unknown setting 'stpes'"):
        check(data, registry)
    data["decoder"]["inversion_sampler"] = {"type": "ddim", "config": {"steps": 3}}
    assert check(data, registry).inversion_sampler.config.steps == 3


def test_the_recipe_inversion_sampler_is_the_one_inverting(registry, tiny_recipe_path):
    """A recipe naming a sampler that cannot invert gets that sampler's refusal, so the setting
    is what runs (the registered default, DDIM, would invert)."""
    from unclip_core.errors import UnclipError
    from unclip_core.recipe.assemble import build_pipeline

    image = Image.new("RGB", (32, 32), (200, 30, 30))
    pipe = build_pipeline(load_recipe(tiny_recipe_path, ["decoder.inversion_sampler.type=ddpm"], registry=registry), registry)
    with pytest.raises(UnclipError, match=r"sampler DDPMSampler cannot invert"):
        pipe.invert(image)
    with pytest.raises(UnclipError, match=r"has no eta setting|DDPMSampler"):
        pipe.variations(image, n=1, eta=0.5)


def test_no_built_in_component_is_named_in_core(registry):
    """The core asks the registry for roles, never for a built-in by name: no first-party
    component's name appears quoted (or as a recipe ``type:``) in unclip_core/."""
    import re

    import unclip_core

    names = {spec.name for spec in registry.all_components() if spec.provider.distribution == "unclip"
             and spec.kind in ("encoder", "prior", "decoder", "upsampler", "sampler")}
    names |= {name for name, spec in registry.importers.items() if spec.provider.distribution == "unclip"}
    pattern = re.compile("|".join(rf"['\"`]{re.escape(name)}['\"`]|type: ?{re.escape(name)}\b|type={re.escape(name)}\b"
                                  for name in sorted(names)))
    found = [
        f"{path.relative_to(Path(unclip_core.__file__).parent)}:{number}: {line.strip()}"
        for path in sorted(Path(unclip_core.__file__).parent.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "\n".join(found)


def test_missing_and_bad_weights(registry, tiny_recipe_data, tmp_path):
    data = copy.deepcopy(tiny_recipe_data)
    data["decoder"]["weights"] = "nowhere.safetensors"
    data["prior"]["weights"] = "prior.pt"
    with pytest.raises(RecipeError) as info:
        check(data, registry, tmp_path)
    problems = dict(info.value.problems)
    assert "file not found" in problems["decoder.weights"]
    assert "must be a .safetensors file" in problems["prior.weights"]


def test_required_slots_and_non_mapping(registry):
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        check(["a", "list"], registry)
    with pytest.raises(RecipeError) as info:
        check({"encoder": {"type": "open-clip", "config": {"model": "ViT-B-32"}}}, registry)
    assert {"prior", "decoder"} <= set(info.value.paths)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("encoder:\n  type: [open-clip\n")
    with pytest.raises(RecipeError, match=r"bad.yaml at line \d+, column \d+: invalid YAML"):
        read_yaml(path)


def test_overrides(tiny_recipe_data, registry, tiny_recipe_path):
    data = apply_overrides(tiny_recipe_data, ["decoder.sampler.config.steps=7", "upsamplers.0.sampler.type=ddpm", "runtime.precision=bf16"])
    assert data["decoder"]["sampler"]["config"]["steps"] == 7
    assert data["upsamplers"][0]["sampler"]["type"] == "ddpm"
    assert tiny_recipe_data["decoder"]["sampler"]["config"]["steps"] == 3  # input untouched
    resolved = load_recipe(tiny_recipe_path, ["decoder.sampler.config.steps=7"], registry)
    assert resolved.decoder_sampler.config.steps == 7
    with pytest.raises(RecipeError) as info:
        apply_overrides(tiny_recipe_data, ["nokey", "upsamplers.5.type=x", "decoder..x=1"])
    assert len(info.value.problems) == 3
    with pytest.raises(RecipeError, match=r"decoder.sampler.config.steps: Input should be a valid integer"):
        load_recipe(tiny_recipe_path, ["decoder.sampler.config.steps=many"], registry)


def test_unknown_recipe_name_suggests(registry):
    with pytest.raises(RecipeError, match="no recipe file or shipped recipe named"):
        load_recipe("no-such-recipe", registry=registry)
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe("missing/file.yaml", registry=registry)


def test_shipped_recipes_start_with_their_run_command(registry):
    from unclip_core.recipe.files import shipped_recipes

    recipes = shipped_recipes()
    # Weights a shipped training recipe exports may not be trained yet (a recipe lands before
    # the long run that fills its slot); a missing file is then the only problem allowed.
    exported = {
        str((path.parent / data["output"]["export"]).resolve())
        for name, path in recipes.items()
        if name.startswith("train/") and (data := yaml.safe_load(path.read_text())).get("output", {}).get("export")
    }
    for name, path in recipes.items():
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Run: unclip "), f"recipe {name} must start with '# Run: <command>'"
        if not name.startswith("train/"):
            try:
                validate_recipe(yaml.safe_load(path.read_text()), registry, base_dir=path.parent)
            except RecipeError as error:
                untrained = [m for p, m in error.problems if p.endswith(".weights") and m.removeprefix("file not found: ") in exported]
                assert len(untrained) == len(error.problems), f"{name}: {error}"


# ---------------------------------------------------------------- property-based mutations
JUNK = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(node, prefix=()):
    """Every (path) into the nested recipe, mappings and lists alike."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _get(node, path):
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_recipes(draw, base):
    data = copy.deepcopy(base)
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    parent, key = _get(data, path[:-1]), path[-1]
    action = draw(st.sampled_from(["junk", "extra_key", "misspell_type", "delete", "break_chain"]))
    if action == "junk":
        value = draw(JUNK)
        parent[key] = value
    elif action == "extra_key" and isinstance(parent, dict):
        parent["zz_" + draw(st.text(alphabet="abcxyz", min_size=1, max_size=5))] = draw(JUNK)
    elif action == "misspell_type":
        slot = draw(st.sampled_from(["encoder", "prior", "decoder"]))
        data[slot]["type"] = data[slot]["type"] + draw(st.sampled_from(["x", "-2", "s"]))
    elif action == "delete" and isinstance(parent, dict):
        del parent[key]
    elif action == "break_chain":
        data["decoder"]["config"]["embed_dim"] = draw(st.integers(17, 64))
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_recipes_fail_cleanly_with_a_path(registry, tiny_recipe_data, data):
    recipe = data.draw(mutated_recipes(tiny_recipe_data))
    try:
        check(recipe, registry)
    except RecipeError as exc:
        assert exc.problems, "a RecipeError must list its problems"
        for path, message in exc.problems:
            assert message
            root = path.split(".")[0]
            assert root in recipe or root in {"encoder", "prior", "decoder"} or root == "", (path, message)
    # Some mutations are legal (e.g. a name field, or a setting changed to another valid
    # value); any other exception type fails the test with its traceback.
