"""The latent route's training stages: the autoencoder stage (KL, L1 + KL), the decoder stage of
a latent decoder (on a frozen autoencoder's cached latents), the reconstruction evaluation the
shapes checker judges, and the shipped recipes of the latent shapes model."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from unclip_core.errors import RecipeError
from unclip_core.recipe.assemble import build_component
from unclip_core.recipe.validate import validate_recipe
from unclip_core.training.loop import CHECKPOINT_NAME, train
from unclip_core.training.validate import load_training, validate_training
from unclip_core.weights import atomic_save_safetensors, load_weights, read_safetensors
from unclip_plugins.shapes.reconstruction import main as reconstruction_main
from unclip_plugins.shapes.reconstruction import load_autoencoder, reconstruction_report

TINY_AUTOENCODER = {
    "type": "kl",
    "config": {
        "block_out_channels": [8, 16],
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
        "layers_per_block": 1,
        "latent_channels": 2,
        "norm_num_groups": 8,
        "sample_size": 16,
        "mid_block_add_attention": False,
        "scaling_factor": 1.0,
    },
}


ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SHIPPED_LATENT_DECODER = "shapes-latent-decoder"  # the variant shapes-latent ships (docs/ablations.md)


def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r and "event" not in r]


def autoencoder_recipe(**train) -> dict:
    return {
        "name": "tiny-autoencoder",
        "stage": "autoencoder",
        "model": copy.deepcopy(TINY_AUTOENCODER),
        "dataset": {"type": "shapes", "config": {"size": 16, "length": 16, "seed": 0}},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "decay": "constant"},
        "ema": {"decay": 0.9},
        "train": {"steps": 40, "batch_size": 8, "seed": 0, **train},
        "output": {"checkpoint_every": 5, "log_every": 1},
    }


@pytest.fixture(scope="module")
def autoencoder_weights(tmp_path_factory, registry) -> Path:
    """Weights of the tiny autoencoder (random: the latent decoder stage only needs them frozen)."""
    path = tmp_path_factory.mktemp("ae") / "autoencoder.safetensors"
    resolved = validate_training(autoencoder_recipe(), registry)
    torch.manual_seed(0)
    model = build_component(resolved.model)
    atomic_save_safetensors(model.state_dict(), path)
    return path


def latent_decoder_recipe(tiny: dict, weights: Path, use_text: bool = True, **train) -> dict:
    decoder = copy.deepcopy({k: tiny["decoder"][k] for k in ("type", "config")})
    decoder["config"].update({"latent_channels": 2, "use_text": use_text, "prediction_type": "v"})
    return {
        "name": "tiny-latent-decoder",
        "stage": "decoder",
        "model": decoder,
        "autoencoder": {**copy.deepcopy(TINY_AUTOENCODER), "weights": str(weights)},
        "encoder": copy.deepcopy(tiny["encoder"]),
        "dataset": {"type": "shapes", "config": {"size": 16, "length": 16, "seed": 0}},
        "optim": {"lr": 3e-3, "warmup_steps": 2, "decay": "constant"},
        "ema": {"decay": 0.9},
        "train": {"steps": 40, "batch_size": 8, "seed": 0, **train},
        "output": {"checkpoint_every": 5, "log_every": 1},
    }


# ------------------------------------------------------------------ the autoencoder stage
def test_autoencoder_stage_trains_reconstruction_improves_and_exports(registry, tmp_path):
    data = autoencoder_recipe()
    data["output"]["export"] = str(tmp_path / "exported.safetensors")
    resolved = validate_training(data, registry, base_dir=tmp_path)
    summary = train(resolved, registry=registry, out_dir=tmp_path / "run", progress=False)
    values = losses(tmp_path / "run")
    assert summary["step"] == 40 and len(values) == 40 and all(math.isfinite(v) for v in values)
    first, last = sum(values[:8]) / 8, sum(values[-8:]) / 8
    assert last < 0.7 * first, f"autoencoder loss did not go down ({first:.4f} → {last:.4f})"
    # the exported EMA weights reconstruct the scenes better than the untrained model does
    torch.manual_seed(0)
    untrained = build_component(resolved.model)
    trained = build_component(resolved.model)
    load_weights(trained, tmp_path / "exported.safetensors")
    dataset = build_component(resolved.dataset)
    images = torch.stack([dataset[i]["image"] for i in range(16)])
    with torch.no_grad():
        errors = [float((m.decode(m.encode(images)) - images).abs().mean()) for m in (untrained, trained)]
    assert errors[1] < 0.7 * errors[0], errors
    assert list((tmp_path / "run" / "samples").glob("step-*.png"))


def test_autoencoder_loss_is_l1_plus_weighted_kl(registry):
    """The loss against the terms computed by hand from diffusers' posterior."""
    data = autoencoder_recipe()
    data["model"]["config"]["kl_weight"] = 0.5
    model = build_component(validate_training(data, registry).model, trainable=True)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    loss = model.training_loss({"image": images}, torch.Generator().manual_seed(3))
    posterior = model.model.encode(images).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    rebuilt = model.model.decode(posterior.mean + posterior.std * noise).sample
    kl = 0.5 * (posterior.mean**2 + posterior.var - 1 - posterior.logvar).mean()
    assert torch.allclose(loss, F.l1_loss(rebuilt, images) + 0.5 * kl, rtol=1e-5, atol=1e-6)


def test_autoencoder_resume_is_exact(registry, tmp_path):
    assert_resume_is_exact(validate_training(autoencoder_recipe(steps=8), registry, base_dir=tmp_path), registry, tmp_path)


def assert_resume_is_exact(resolved, registry, tmp_path: Path) -> None:
    """3 steps, stop, resume to the end: the same weights, EMA and optimiser state as one run."""
    train(resolved, registry=registry, out_dir=tmp_path / "straight", progress=False)
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, max_steps=3)
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, resume=True)
    straight = read_safetensors(tmp_path / "straight" / CHECKPOINT_NAME)
    split = read_safetensors(tmp_path / "split" / CHECKPOINT_NAME)
    assert straight.keys() == split.keys()
    compared = [key for key in straight if key.startswith(("model/", "ema/", "optim/"))]
    assert compared and all(torch.equal(straight[key], split[key]) for key in compared), \
        [key for key in compared if not torch.equal(straight[key], split[key])][:3]


# ------------------------------------------------------------------ the latent decoder stage
@pytest.mark.parametrize("use_text", [True, False])
def test_latent_decoder_trains_on_the_autoencoders_latents(registry, tiny_recipe_data, autoencoder_weights, tmp_path, use_text):
    data = latent_decoder_recipe(tiny_recipe_data, autoencoder_weights, use_text)
    resolved = validate_training(data, registry, base_dir=tmp_path)
    train(resolved, registry=registry, out_dir=tmp_path / "run", progress=False)
    values = losses(tmp_path / "run")
    first, last = sum(values[:8]) / 8, sum(values[-8:]) / 8
    assert last < first, f"latent decoder loss did not go down ({first:.4f} → {last:.4f})"
    assert list((tmp_path / "run" / "samples").glob("step-*.png"))  # sampled latents, decoded


def test_latent_decoder_batch_holds_the_autoencoders_latents(registry, tiny_recipe_data, autoencoder_weights):
    """What the decoder trains on is the frozen autoencoder's encoding of the scene (its mean)."""
    from unclip_core.training.stages import EmbeddingCache, LatentCache, stage_batch
    from unclip_core.training.data import collate

    resolved = validate_training(latent_decoder_recipe(tiny_recipe_data, autoencoder_weights), registry)
    model = build_component(resolved.model, trainable=True)
    autoencoder = build_component(resolved.autoencoder)
    dataset = build_component(resolved.dataset)
    raw = collate(dataset, [3, 1, 4])
    cache = LatentCache(autoencoder, 16)
    batch = stage_batch("decoder", model, raw, EmbeddingCache(build_component(resolved.encoder)), latents=cache)
    with torch.no_grad():
        expected = autoencoder.model.encode(raw["image"]).latent_dist.mean
    assert batch["latents"].shape == (3, 2, 8, 8)
    assert torch.allclose(batch["latents"], expected, atol=1e-6)
    assert sorted(cache.store) == [1, 3, 4]


def test_latent_decoder_resume_is_exact(registry, tiny_recipe_data, autoencoder_weights, tmp_path):
    """Cached latents are re-encoded in the batches they first came in, as embeddings are."""
    data = latent_decoder_recipe(tiny_recipe_data, autoencoder_weights, steps=6)
    data["output"]["checkpoint_every"] = 100
    assert_resume_is_exact(validate_training(data, registry, base_dir=tmp_path), registry, tmp_path)


def test_latent_training_recipe_errors(registry, tiny_recipe_data, autoencoder_weights):
    data = latent_decoder_recipe(tiny_recipe_data, autoencoder_weights)
    del data["autoencoder"]
    with pytest.raises(RecipeError, match="autoencoder: decoder 'unclip-decoder' denoises in latent space and needs an autoencoder"):
        validate_training(data, registry)
    data = latent_decoder_recipe(tiny_recipe_data, autoencoder_weights)
    del data["autoencoder"]["weights"]
    with pytest.raises(RecipeError, match="autoencoder.weights: the frozen autoencoder needs its trained weights"):
        validate_training(data, registry)
    data = latent_decoder_recipe(tiny_recipe_data, autoencoder_weights)
    data["autoencoder"]["config"]["latent_channels"] = 3
    with pytest.raises(RecipeError, match="makes 3-channel latents but decoder 'unclip-decoder' denoises 2-channel ones"):
        validate_training(data, registry)
    data = autoencoder_recipe()
    data["autoencoder"] = copy.deepcopy(TINY_AUTOENCODER)
    with pytest.raises(RecipeError, match="autoencoder: only the decoder stage"):
        validate_training(data, registry)
    data = autoencoder_recipe()
    data["model"] = {"type": "vq", "config": {}}
    with pytest.raises(RecipeError, match="model.type: 'vq' cannot be trained by unclip train"):
        validate_training(data, registry)
    data = latent_decoder_recipe(tiny_recipe_data, autoencoder_weights)
    data["model"] = {"type": "kandinsky22-decoder", "config": {"image_size": 16, "unet": {
        "in_channels": 2, "out_channels": 2, "encoder_hid_dim": 16, "addition_embed_type": "image",
        "encoder_hid_dim_type": "image_proj"}}}
    with pytest.raises(RecipeError, match="'kandinsky22-decoder' cannot be trained by unclip train \\(it has no training_loss\\)"):
        validate_training(data, registry)
    data = latent_decoder_recipe(tiny_recipe_data, autoencoder_weights)
    data["model"]["config"]["inpainting"] = True
    with pytest.raises(RecipeError, match="cannot be a trained inpainting decoder"):
        validate_training(data, registry)


# ------------------------------------------------------------------ reconstruction evaluation
class _Identity:
    """A perfect autoencoder: the latents are the image."""

    def encode(self, images):
        return images

    def decode(self, latents):
        return latents


class _Blurry(_Identity):
    """A lossy one: 8× average-pool then nearest upsampling (what a too-small latent loses)."""

    def decode(self, latents):
        return F.interpolate(F.avg_pool2d(latents, 8), scale_factor=8, mode="nearest")


def test_reconstruction_scores_identity_perfect_and_a_lossy_autoencoder_low():
    perfect = reconstruction_report(_Identity(), count=60, size=64)
    assert perfect["exact"] == 1.0 and perfect["rendered_exact"] == 1.0 and perfect["mean_abs_error"] == 0.0
    lossy = reconstruction_report(_Blurry(), count=60, size=64)
    assert lossy["exact"] < 0.5 and lossy["failures"]
    assert lossy["rendered_exact"] == 1.0


def test_reconstruction_command(registry, tmp_path, capsys):
    recipe = tmp_path / "ae.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(autoencoder_recipe()))
    weights = tmp_path / "w.safetensors"
    torch.manual_seed(0)
    atomic_save_safetensors(build_component(validate_training(autoencoder_recipe(), registry).model).state_dict(), weights)
    assert reconstruction_main([str(recipe), "--weights", str(weights), "--count", "4", "--size", "16"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenes"] == 4 and 0 <= report["exact"] <= 1 and report["latent_std"] > 0
    assert reconstruction_main([str(recipe), "--weights", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    assert reconstruction_main([str(recipe)]) == 2  # no --weights, and the recipe exports none
    assert "exports no weights (output.export); pass --weights" in capsys.readouterr().err


# ------------------------------------------------------------------ a latent unclip-decoder in a pipeline
@torch.no_grad()
def test_a_latent_unclip_decoder_generates_and_round_trips_through_its_kl_autoencoder(tiny_recipe_path):
    """The pipeline's latent path with the unclip-decoder made latent: it samples 2-channel
    8 × 8 latents and decodes them; img2img at strength 0 is diffusers' AutoencoderKL round
    trip of the input (a posterior sample drawn with the call's generator)."""
    import yaml
    from diffusers import AutoencoderKL

    from unclip_core.recipe.assemble import load_pipeline

    autoencoder = yaml.safe_dump(TINY_AUTOENCODER, default_flow_style=True).strip()
    pipeline = load_pipeline(tiny_recipe_path, ["decoder.config.latent_channels=2", f"decoder.autoencoder={autoencoder}"])
    assert pipeline.latent and pipeline.decoder_shape(3) == (3, 2, 8, 8)
    assert pipeline.decoder.unet.conv_in.in_channels == 2 and pipeline.decoder.clip_range is None
    images = pipeline.generate_tensors(["a red circle"], n=2, seed=0)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    reference = AutoencoderKL(**pipeline.autoencoder.config.diffusers_kwargs()).eval()
    reference.load_state_dict(pipeline.autoencoder.model.state_dict())
    scene = torch.rand(1, 3, 16, 16) * 2 - 1
    posterior = reference.encode(scene).latent_dist  # img2img samples it with the call's generator
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(0))
    expected = reference.decode(posterior.mean + posterior.std * noise).sample.clamp(-1, 1)
    base = pipeline.decode(torch.zeros(1, 16), None, pipeline.generator(0), start=(scene, 0.0))
    assert torch.allclose(base, expected, atol=1e-5)


# ------------------------------------------------------------------ shipped recipes
@pytest.mark.parametrize("name", ["shapes-latent-decoder", "shapes-latent-decoder-embed"])
def test_shipped_latent_decoder_recipes_validate(name, registry):
    """They read the autoencoder that train/shapes-autoencoder exports (shipped), with its
    architecture and the scaling factor its reconstruction check measured."""
    shipped = load_training("train/shapes-autoencoder", registry=registry)
    resolved = load_training(f"train/{name}", registry=registry)
    assert resolved.model.declared.latent and resolved.autoencoder.declared.downscale == 4
    assert resolved.model.declared.image_size // resolved.autoencoder.declared.downscale == 16
    assert resolved.autoencoder.config.model_dump(exclude={"scaling_factor", "kl_weight"}) == \
        shipped.model.config.model_dump(exclude={"scaling_factor", "kl_weight"})
    assert Path(resolved.autoencoder.weights) == (RECIPES / "train" / shipped.recipe.output.export).resolve()


def test_the_shipped_autoencoder_reconstructs_unseen_scenes():
    """The gate before latent decoding (docs/ablations.md: 99.4% on 500 unseen scenes, held-out
    pairs included); a broken or wrongly scaled autoencoder reads back well under this. The
    latents it hands the decoder have unit spread, which is what scaling_factor is for."""
    report = reconstruction_report(load_autoencoder("shapes-latent", None), count=100, seed=7)
    assert report["rendered_exact"] == 1.0
    assert report["exact"] >= 0.97, report["failures"]
    assert 0.9 < report["latent_std"] < 1.1, report["latent_std"]


def test_the_shapes_latent_recipe_is_the_default_with_the_latent_decoder(registry):
    """Same CLIP and prior as shapes.yaml; the decoder and autoencoder exactly as trained."""
    recipe, default = read(RECIPES / "shapes-latent.yaml"), read(RECIPES / "shapes.yaml")
    assert (RECIPES / "shapes-latent.yaml").read_text().startswith("# Run: unclip generate ")
    for slot in set(default) | set(recipe):
        if slot not in ("name", "description", "decoder", "upsamplers"):
            assert recipe.get(slot) == default.get(slot), f"{slot} differs from shapes.yaml"
    assert recipe["upsamplers"] == []
    decoder = recipe["decoder"]
    trained = read(RECIPES / "train" / f"{SHIPPED_LATENT_DECODER}.yaml")
    assert decoder["config"] == trained["model"]["config"]
    assert (RECIPES / "train" / trained["output"]["export"]).resolve() == (RECIPES / decoder["weights"]).resolve()
    autoencoder = trained["autoencoder"]
    assert decoder["autoencoder"]["config"] == autoencoder["config"]
    assert (RECIPES / "train" / autoencoder["weights"]).resolve() == (RECIPES / decoder["autoencoder"]["weights"]).resolve()
    for key in ("type", "guidance_scale", "sampler"):
        assert decoder[key] == default["decoder"][key], key
    validate_recipe(copy.deepcopy(recipe), registry, base_dir=RECIPES)  # the trained weights included


def test_shipped_autoencoder_recipe_validates(registry):
    resolved = load_training("train/shapes-autoencoder", registry=registry)
    assert resolved.recipe.stage == "autoencoder" and resolved.model.declared.downscale == 4
    assert resolved.recipe.dataset.config["size"] == 64


def test_speed_bench_swaps_in_the_latent_decoder_and_drops_the_upsampler(load_bench_script):
    from unclip_core.recipe.assemble import load_pipeline

    overrides = load_bench_script("shapes_latent_speed").latent_overrides("train/shapes-latent-decoder")
    pipeline = load_pipeline("shapes", overrides)
    assert pipeline.latent and not pipeline.upsamplers and pipeline.decoder_shape(2) == (2, 4, 16, 16)
    assert pipeline.decoder.config.use_text and pipeline.autoencoder.downscale == 4
