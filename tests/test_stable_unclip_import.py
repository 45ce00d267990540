"""``unclip import stable-unclip``: what it writes, the command line, one-line errors that
leave nothing half-written, and ``recipe validate`` refusing a prior whose embeddings do
not fit the Stable unCLIP decoder (size or named space), in one line naming both slots."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("transformers")

from stable_unclip_folders import UNET, save_image_to_image, save_text_to_image  # noqa: E402
from unclip_core.errors import CheckpointError, InputError, RecipeError, UnclipError  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``(text-to-image folder, img2img folder, its recipe imported with the first's prior)``."""
    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    root = tmp_path_factory.mktemp("su-import")
    t2i = save_text_to_image(root / "su-t2i")
    i2i = save_image_to_image(root / "su-i2i", seed=4)
    recipe = import_stable_unclip(t2i, root / "t2i-imported")
    return t2i, i2i, recipe


def test_import_writes_a_self_contained_recipe(folders):
    _, _, recipe = folders
    names = sorted(p.name for p in recipe.parent.iterdir())
    assert names == ["autoencoder.safetensors", "decoder.safetensors", "encoder.safetensors", "prior.safetensors",
                     "prior_tokenizer", "stable-unclip.yaml", "tokenizer"]
    data = yaml.safe_load(recipe.read_text())
    assert data["decoder"]["type"] == "stable-unclip-decoder" and data["decoder"]["autoencoder"]["type"] == "kl"
    assert data["prior"]["sampler"]["config"]["scheduler"] == "DDPMScheduler"
    assert data["decoder"]["sampler"]["config"]["scheduler"] == "DDIMScheduler"
    assert not [p for p in recipe.parent.parent.iterdir() if p.name.startswith(".")], "a temporary folder was left behind"


def test_cli_import_validate_and_generate(folders, tmp_path, capsys):
    from unclip_core.cli.main import main

    t2i, i2i, recipe = folders
    out = tmp_path / "cli"
    assert main(["import", "stable-unclip", str(t2i), "--out", str(out)]) == 0
    assert "run it with: unclip generate" in capsys.readouterr().out
    assert main(["import", "stable-unclip", str(t2i), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["recipe", "validate", str(out / "stable-unclip.yaml")]) == 0
    image = tmp_path / "turtle.png"
    steps = ["prior.sampler.config.steps=2", "decoder.sampler.config.steps=2"]
    assert main(["generate", "an anime turtle", "-r", str(out / "stable-unclip.yaml"), "-o", str(image), "-q", *steps]) == 0
    assert image.is_file()
    # an img2img folder takes its prior from another recipe
    assert main(["import", "stable-unclip", str(i2i), "--prior", str(recipe), "--out", str(tmp_path / "mixed")]) == 0
    assert main(["recipe", "validate", str(tmp_path / "mixed" / "stable-unclip.yaml")]) == 0


def test_img2img_folder_needs_a_prior(folders, tmp_path, capsys):
    from unclip_core.cli.main import main

    _, i2i, _ = folders
    assert main(["import", "stable-unclip", str(i2i), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "StableUnCLIPImg2ImgPipeline folder" in err and "--prior RECIPE" in err
    assert not (tmp_path / "out").exists()


def _broken_copy(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(folder, copy)
    return copy


def test_import_refuses_a_folder_missing_a_part(folders, tmp_path):
    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    broken = _broken_copy(folders[0], tmp_path)
    shutil.rmtree(broken / "image_normalizer")
    with pytest.raises(InputError, match=r"not a complete StableUnCLIPPipeline folder: missing image_normalizer/") as error:
        import_stable_unclip(broken, tmp_path / "out")
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
    (tmp_path / "photos").mkdir()
    with pytest.raises(InputError, match=r"photos is not a Stable unCLIP \(diffusers\) folder"):
        import_stable_unclip(tmp_path / "photos", tmp_path / "out")


def test_import_refuses_wrong_shapes_and_leaves_nothing(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    broken = _broken_copy(folders[0], tmp_path)
    weights = broken / "image_normalizer" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["std"] = torch.ones(1, 7)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match=r"unet/, image_normalizer/ and text_encoder/ does not fit.*std") as error:
        import_stable_unclip(broken, tmp_path / "out")
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"], "nothing half-written"


def test_import_names_the_file_and_key_of_a_bad_config(folders, tmp_path):
    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    broken = _broken_copy(folders[0], tmp_path)
    config = broken / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"v_prediction"', '"flow"'))
    with pytest.raises(InputError, match=r"scheduler/scheduler_config.json: prediction_type 'flow' is not supported"):
        import_stable_unclip(broken, tmp_path / "out")


# --------------------------------------------------------------------------------------
# recipe validate: a prior must fit the decoder
# --------------------------------------------------------------------------------------
def _validate(data: dict, folder: Path) -> None:
    from unclip_core.recipe.validate import validate_recipe
    from unclip_core.registry import default_registry

    validate_recipe(data, default_registry(), base_dir=folder, source=folder / "edited.yaml")


def _one_line_naming_both(error: RecipeError) -> str:
    text = str(error)
    assert "\n" not in text, text
    assert len(error.problems) == 1 and error.problems[0][0] == "decoder", error.problems
    assert "decoder (stable-unclip-decoder)" in text and "the prior (diffusion-prior)" in text, text
    return text


def test_validate_refuses_a_prior_of_another_embedding_size(folders):
    _, _, recipe = folders
    data = yaml.safe_load(recipe.read_text())
    _validate(data, recipe.parent)  # as imported, it fits
    data["decoder"]["config"]["unet"]["projection_class_embeddings_input_dim"] = 96
    with pytest.raises(RecipeError) as error:
        _validate(data, recipe.parent)
    text = _one_line_naming_both(error.value)
    assert "reads image embeddings of embedding size 48 but the prior (diffusion-prior) samples embedding size 32" in text


def test_validate_refuses_a_prior_of_another_embedding_space(folders):
    _, _, recipe = folders
    data = yaml.safe_load(recipe.read_text())
    data["prior"]["config"]["embedding_space"] = "openai/clip-vit-large-patch14"
    data["decoder"]["config"]["embedding_space"] = "openai/clip-vit-large-patch14"
    _validate(data, recipe.parent)  # one space named on both sides fits
    data["decoder"]["config"]["embedding_space"] = "laion/CLIP-ViT-H-14"
    with pytest.raises(RecipeError) as error:
        _validate(data, recipe.parent)
    text = _one_line_naming_both(error.value)
    assert "'laion/CLIP-ViT-H-14'" in text and "'openai/clip-vit-large-patch14'" in text


def test_importing_with_a_prior_that_does_not_fit_is_refused(folders, tmp_path):
    """An img2img folder whose decoder reads 48-dim embeddings, given a 32-dim prior: the
    import fails in one line naming both, and writes nothing."""
    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    _, _, recipe = folders
    wide = save_image_to_image(
        tmp_path / "su-48", unet={**UNET, "projection_class_embeddings_input_dim": 96},
        image_encoder={"projection_dim": 48},
    )
    with pytest.raises(UnclipError, match=r"the prior \(diffusion-prior\) samples embedding size 32 but the decoder "
                       r"of su-48 \(stable-unclip-decoder\) reads embedding size 48") as error:
        import_stable_unclip(wide, tmp_path / "out", prior=recipe)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_embedding_space_option_is_declared(folders, tmp_path):
    from unclip_core.recipe.files import load_recipe
    from unclip_plugins.stable_unclip.importer import import_stable_unclip

    recipe = import_stable_unclip(folders[0], tmp_path / "out", embedding_space="openai/clip-vit-large-patch14")
    resolved = load_recipe(recipe)
    assert resolved.prior.declared.embedding_space == resolved.decoder.declared.embedding_space == "openai/clip-vit-large-patch14"
    assert resolved.encoder.declared.embedding_space == "openai/clip-vit-large-patch14"
