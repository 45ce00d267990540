"""Slot files: one stage of a recipe in a file of its own, so swapping a stage — the diffusion
prior for the autoregressive one — is one line in a recipe or one override."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from unclip_core.cli.main import main
from unclip_core.errors import RecipeError
from unclip_core.recipe.files import is_slot_file, load_recipe, shipped_recipes

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"


def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------ the shipped slot files
def test_the_diffusion_slot_file_is_exactly_the_default_prior(registry):
    default = read(RECIPES / "shapes.yaml")
    assert read(RECIPES / "shapes-prior-diffusion.yaml") == default["prior"]
    plain = load_recipe("shapes", registry=registry)
    swapped = load_recipe("shapes", ["prior=shapes-prior-diffusion.yaml"], registry=registry)
    assert swapped.data == plain.data and swapped.digest == plain.digest


def test_the_ar_slot_file_takes_the_weights_its_training_recipe_writes(registry):
    slot = read(RECIPES / "shapes-prior-ar.yaml")
    trained = read(RECIPES / "train" / "shapes-ar-prior.yaml")
    assert slot["type"] == trained["model"]["type"] == "ar-prior" and "sampler" not in slot
    assert slot["config"] == trained["model"]["config"]
    assert (RECIPES / slot["weights"]).resolve() == (RECIPES / "train" / trained["output"]["export"]).resolve()
    assert trained["output"]["export_dtype"] == "fp16"
    assert trained["encoder"] == {**read(RECIPES / "shapes.yaml")["encoder"], "weights": "../shapes/clip.safetensors"}
    try:
        recipe = load_recipe("shapes", ["prior=shapes-prior-ar.yaml"], registry=registry)
    except RecipeError as error:  # before the lead trains it, the only problem may be its weights
        assert error.paths == ["prior.weights"], str(error)
    else:
        assert recipe.prior.spec.name == "ar-prior" and recipe.prior_sampler is None


def test_the_ar_training_recipe_fits_its_budget(registry):
    """≤ 30 min on 2 cores: the AR prior costs about twice the diffusion prior per sample
    (measured side by side), and the diffusion prior trained at 231 samples/s on one thread
    (docs/benchmarks.md); two threads are counted as no faster, to leave room for fitting."""
    from unclip_core.training.validate import load_training

    resolved = load_training("train/shapes-ar-prior", registry=registry)
    settings = resolved.recipe.train
    minutes = settings.steps * settings.batch_size / (231 / 2) / 60
    assert minutes <= 30 and settings.threads == 2, f"{minutes:.1f} min"
    assert resolved.model.config.fit_items <= resolved.dataset.config.length


def test_slot_files_are_not_listed_as_recipes():
    shipped = shipped_recipes()
    assert "shapes" in shipped and "train/shapes-ar-prior" in shipped
    assert "shapes-prior-ar" not in shipped and "shapes-prior-diffusion" not in shipped
    assert is_slot_file(RECIPES / "shapes-prior-ar.yaml") and not is_slot_file(RECIPES / "shapes.yaml")


# ------------------------------------------------------------------ the mechanism
@pytest.fixture()
def folder(tmp_path, tiny_recipe_data) -> Path:
    """A recipe whose prior is a slot file in a subfolder, with (empty) weights beside it."""
    data = dict(tiny_recipe_data)
    prior = dict(data["prior"], weights="prior.safetensors")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "prior.yaml").write_text("# Slot: prior\n" + yaml.safe_dump(prior))
    (tmp_path / "parts" / "prior.safetensors").write_bytes(b"")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({**data, "prior": "parts/prior.yaml"}))
    return tmp_path


def test_a_slot_file_reads_as_the_slot_with_weights_beside_it(folder, tiny_recipe_data, registry):
    recipe = load_recipe(folder / "recipe.yaml", registry=registry)
    assert recipe.data["prior"] == dict(tiny_recipe_data["prior"], weights="parts/prior.safetensors")
    assert recipe.prior.weights == folder / "parts" / "prior.safetensors"
    # overrides reach into a slot file, also one named by an earlier override
    tuned = load_recipe(folder / "recipe.yaml", ["prior.guidance_scale=7"], registry=registry)
    assert tuned.recipe.prior.guidance_scale == 7
    again = load_recipe(folder / "recipe.yaml", ["prior=parts/prior.yaml", "prior.candidates=3"], registry=registry)
    assert again.recipe.prior.candidates == 3


def test_slot_file_errors_name_the_slot_and_the_file(folder, registry):
    with pytest.raises(RecipeError, match=r"prior: slot file not found: .*/nowhere\.yaml$"):
        load_recipe(folder / "recipe.yaml", ["prior=nowhere.yaml"], registry=registry)
    (folder / "list.yaml").write_text("- type: ar-prior\n")
    with pytest.raises(RecipeError, match=r"decoder: slot file .*list\.yaml must hold one slot \(a mapping with 'type'\), got list"):
        load_recipe(folder / "recipe.yaml", ["decoder=list.yaml"], registry=registry)


def test_recipe_cp_keeps_slot_files_and_their_weights_found(folder, tmp_path, registry, capsys):
    copy = tmp_path / "elsewhere" / "copy.yaml"
    assert main(["recipe", "cp", str(folder / "recipe.yaml"), str(copy)]) == 0
    assert read(copy)["prior"] == str(folder / "parts" / "prior.yaml")
    recipe = load_recipe(copy, registry=registry)
    assert recipe.prior.weights == folder / "parts" / "prior.safetensors"


def test_eval_runs_with_either_prior_by_one_override(tmp_path, tiny_recipe_path, capsys):
    """The tiny stack's prior swapped for a random-weight AR prior by naming a slot file."""
    recipe = tmp_path / "tiny.yaml"
    shutil.copy(tiny_recipe_path, recipe)
    tiny_prior = read(tiny_recipe_path)["prior"]["config"]
    ar = {"type": "ar-prior", "guidance_scale": 2.0, "candidates": 2, "config": {
        "embed_dim": tiny_prior["embed_dim"], "text_width": tiny_prior["text_width"], "context_length": 16,
        "pca_dims": 4, "num_buckets": 16, "dot_buckets": 4, "num_layers": 1, "num_attention_heads": 2,
        "attention_head_dim": 8}}
    (tmp_path / "ar-prior.yaml").write_text("# Slot: prior\n" + yaml.safe_dump(ar))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    reports = {}
    for name, swap in (("diffusion", []), ("ar", ["prior=ar-prior.yaml"])):
        code = main(["eval", "shapes", "-r", str(recipe), "--prompts", str(prompts), "--json", "-q",
                     "-s", "diversity_prompts=0", "upsamplers=[]", "decoder.sampler.config.steps=2", *swap])
        assert code == 0
        reports[name] = json.loads(capsys.readouterr().out)
    assert reports["diffusion"]["recipe"]["digest"] != reports["ar"]["recipe"]["digest"]
    assert all(report["run"]["prompts"] == 1 for report in reports.values())
