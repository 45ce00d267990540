"""The trained inpainting decoder (``unclip-decoder`` with ``inpainting: true``): its input
channels, starting from an ordinary decoder's weights, the training masks, the training
stage, ``Pipeline.inpaint`` choosing it, and the shipped recipes.

References, each computed by other means: the ordinary decoder's own output (a widened
decoder must compute it exactly at step 0), the UNet's first layer's input captured and
compared with ``image × (1 − mask)`` written out by hand, classifier-free guidance mixed by
hand, masks re-derived from their definition (rectangles are their own bounding boxes),
PIL's resize of the input (the pixels the pipeline must keep), and the recipes the shipped
inpainting recipes must match, read as YAML.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from test_inpainting import TargetModel, box_mask, expected_pixels, scene
from test_training import recipe_for
from test_unclip_decoder import SIZE, TINY, make_decoder, make_inputs, make_text
from unclip_core.errors import CheckpointError, InputError
from unclip_core.recipe.assemble import build_component, build_pipeline
from unclip_core.recipe.files import load_recipe
from unclip_core.recipe.validate import validate_recipe
from unclip_core.training.loop import CHECKPOINT_NAME, train
from unclip_core.training.masks import RECTANGLE_PROBABILITY, WHOLE_IMAGE_PROBABILITY, random_masks
from unclip_core.training.stages import stage_batch
from unclip_core.training.validate import validate_training
from unclip_core.weights import load_weights, read_safetensors, save_weights
from unclip_plugins.unclip_decoder import UnclipDecoder, UnclipDecoderConfig

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"


def inpainting_decoder(seed: int = 5) -> UnclipDecoder:
    torch.manual_seed(seed)
    return UnclipDecoder(UnclipDecoderConfig(**TINY, inpainting=True)).eval()


def known_and_mask(batch: int = 3, seed: int = 11) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, SIZE, SIZE, generator=g) * 2 - 1
    mask = torch.zeros(batch, 1, SIZE, SIZE)
    mask[0, :, 2:9, 3:12] = 1
    mask[1, :, :, : SIZE // 2] = 1
    mask[2] = 1
    return image, mask


def with_inpaint(cond, image, mask):
    return dataclasses.replace(cond, inpaint_image=image, inpaint_mask=mask)


# ------------------------------------------------------------------ starting from an ordinary decoder
@torch.no_grad()
def test_widened_ordinary_weights_compute_what_the_ordinary_decoder_does(tmp_path):
    plain = make_decoder(seed=3)
    save_weights(plain, tmp_path / "plain.safetensors")
    widened = inpainting_decoder()
    load_weights(widened, tmp_path / "plain.safetensors", initial=True)
    conv = widened.unet.conv_in.weight
    assert conv.shape[1] == 7
    assert torch.equal(conv[:, :3], plain.unet.conv_in.weight) and not conv[:, 3:].any()
    x_t, t, cond = make_inputs()
    expected = plain(x_t, t, cond)
    image, mask = known_and_mask()
    for given in (cond, with_inpaint(cond, image, mask)):  # nothing known, and a known image
        torch.testing.assert_close(widened(x_t, t, given), expected, rtol=1e-5, atol=1e-5)
    guided = widened.denoiser(with_inpaint(cond, image, mask), 3.0)(x_t, t)
    torch.testing.assert_close(guided, plain.denoiser(cond, 3.0)(x_t, t), rtol=1e-4, atol=1e-4)


def test_only_training_widens_and_only_an_ordinary_input_convolution(tmp_path):
    plain = make_decoder(seed=3)
    save_weights(plain, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match=r"shape mismatch for unet\.conv_in\.weight \(32, 3, 3, 3\) vs model \(32, 7, 3, 3\)"):
        load_weights(inpainting_decoder(), tmp_path / "plain.safetensors")  # inference loads exactly what it is given

    state = {k: v.clone() for k, v in plain.state_dict().items()}
    state["unet.conv_in.weight"] = torch.zeros(32, 4, 3, 3)
    save_weights_dict(state, tmp_path / "four.safetensors")
    with pytest.raises(CheckpointError, match=r"four\.safetensors: unet\.conv_in\.weight is \(32, 4, 3, 3\); an inpainting decoder starts from"):
        load_weights(inpainting_decoder(), tmp_path / "four.safetensors", initial=True)

    wider = make_decoder(seed=3, block_out_channels=[32, 96])
    save_weights(wider, tmp_path / "wider.safetensors")
    with pytest.raises(CheckpointError, match=r"does not fit the model's config: shape mismatch for .*96"):
        load_weights(inpainting_decoder(), tmp_path / "wider.safetensors", initial=True)

    own = inpainting_decoder(seed=8)
    save_weights(own, tmp_path / "own.safetensors")
    again = inpainting_decoder(seed=9)
    load_weights(again, tmp_path / "own.safetensors", initial=True)  # an inpainting decoder's own weights: unchanged
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), own.state_dict().values()))
    ordinary = make_decoder(seed=4)
    load_weights(ordinary, tmp_path / "plain.safetensors", initial=True)  # nothing to adapt for an ordinary decoder
    assert torch.equal(ordinary.unet.conv_in.weight, plain.unet.conv_in.weight)


def save_weights_dict(state: dict, path: Path) -> None:
    from unclip_core.weights import atomic_save_safetensors

    atomic_save_safetensors(state, path)


# ------------------------------------------------------------------ what the UNet reads
def first_layer_input(decoder: UnclipDecoder, *args) -> torch.Tensor:
    seen = []
    handle = decoder.unet.conv_in.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach().clone()))
    try:
        decoder(*args)
    finally:
        handle.remove()
    return seen[0]


@torch.no_grad()
def test_the_unet_reads_the_sample_the_known_image_zeroed_in_the_hole_and_the_mask():
    decoder = inpainting_decoder()
    x_t, t, cond = make_inputs()
    image, mask = known_and_mask()
    fed = first_layer_input(decoder, x_t, t, with_inpaint(cond, image, mask))
    assert torch.equal(fed[:, :3], x_t)
    assert torch.equal(fed[:, 3:6], torch.where(mask.bool(), torch.zeros(()), image))
    assert torch.equal(fed[:, 6:], mask)
    nothing_known = first_layer_input(decoder, x_t, t, cond)
    assert not nothing_known[:, 3:6].any() and bool((nothing_known[:, 6:] == 1).all())

    out = decoder(x_t, t, with_inpaint(cond, image, mask))
    scribbled = torch.where(mask.bool(), torch.randn(image.shape, generator=torch.Generator().manual_seed(4)), image)
    assert torch.equal(decoder(x_t, t, with_inpaint(cond, scribbled, mask.bool())), out)  # the hole never reaches it
    changed = image.clone()
    changed[1, :, :, -3:] = -1.0  # a known column of sample 1
    moved = decoder(x_t, t, with_inpaint(cond, changed, mask))
    assert (moved[1] - out[1]).abs().max() > 1e-4 and torch.equal(moved[[0, 2]], out[[0, 2]])


@torch.no_grad()
def test_guidance_keeps_the_known_image_in_both_branches():
    decoder = inpainting_decoder()
    x_t, t, cond = make_inputs()
    image, mask = known_and_mask()
    known = with_inpaint(cond, image, mask)
    by_hand = dataclasses.replace(known, drop_image=torch.ones(3, dtype=torch.bool), drop_text=torch.ones(3, dtype=torch.bool))
    c, u = decoder(x_t, t, known), decoder(x_t, t, by_hand)
    torch.testing.assert_close(decoder.denoiser(known, 2.5)(x_t, t), u + 2.5 * (c - u), rtol=1e-4, atol=1e-4)


def test_bad_inpaint_inputs_are_refused_in_one_line():
    decoder = inpainting_decoder()
    x_t, t, cond = make_inputs()
    image, mask = known_and_mask()
    cases = [
        (dataclasses.replace(cond, inpaint_image=image), "has inpaint_image but no inpaint_mask"),
        (with_inpaint(cond, image[:, :, :8], mask), r"inpaint_image must be \[3, 3, 16, 16\], got \[3, 3, 8, 16\]"),
        (with_inpaint(cond, image, mask.expand(3, 3, SIZE, SIZE)), r"inpaint_mask must be \[3, 1, 16, 16\]"),
        (with_inpaint(cond, image, mask * 0.5), "only 0 \\(known\\) and 1 \\(repaint\\)"),
    ]
    for bad, message in cases:
        with pytest.raises(InputError, match=message):
            decoder(x_t, t, bad)
    with pytest.raises(InputError, match="this decoder has inpainting: false"):
        make_decoder()(x_t, t, with_inpaint(cond, image, mask))


# ------------------------------------------------------------------ training masks
def classify(mask: torch.Tensor) -> str:
    """``whole``, ``rectangle`` (exactly its own filled bounding box) or ``brush``."""
    if bool(mask.all()):
        return "whole"
    rows, cols = mask.any(dim=1).nonzero()[:, 0], mask.any(dim=0).nonzero()[:, 0]
    box = torch.zeros_like(mask)
    box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    return "rectangle" if torch.equal(box, mask) else "brush"


def test_masks_are_reproducible_binary_and_mixed_as_documented():
    masks = random_masks(400, 32, torch.Generator().manual_seed(0))
    assert masks.shape == (400, 1, 32, 32) and masks.dtype == torch.float32
    assert bool(((masks == 0) | (masks == 1)).all())
    assert torch.equal(masks, random_masks(400, 32, torch.Generator().manual_seed(0)))
    assert not torch.equal(masks[:20], random_masks(20, 32, torch.Generator().manual_seed(1)))
    kinds = [classify(mask[0].bool()) for mask in masks]
    assert all(mask.any() for mask in masks), "every mask repaints something"
    shares = {kind: kinds.count(kind) / len(kinds) for kind in ("whole", "rectangle", "brush")}
    expected = {"whole": WHOLE_IMAGE_PROBABILITY, "rectangle": RECTANGLE_PROBABILITY,
                "brush": 1 - WHOLE_IMAGE_PROBABILITY - RECTANGLE_PROBABILITY}
    for kind, share in shares.items():  # 400 draws: one standard deviation is at most 0.025
        assert abs(share - expected[kind]) < 0.08, (kind, share)
    coverage = masks[[k == "rectangle" for k in kinds]].mean(dim=(1, 2, 3))
    assert 0.005 < float(coverage.min()) and float(coverage.max()) < 0.5  # sides 0.1–0.7 of the image


class FakeCache:
    """The frozen encoder's outputs for a decoder stage batch, without an encoder."""

    def __call__(self, images, captions, indices):
        from unclip_core.interfaces import TextEncoding

        count = len(indices)
        text = TextEncoding(torch.zeros(count, 24), torch.zeros(count, 6, 24), torch.ones(count, 6, dtype=torch.bool))
        return text, torch.zeros(count, 24)


def test_the_stage_draws_masks_from_the_training_generator_only_for_inpainting_decoders():
    raw = {"image": torch.zeros(5, 3, 32, 32), "caption": ["a red circle"] * 5, "index": list(range(5))}
    for model in (make_decoder(), inpainting_decoder()):
        generator = torch.Generator().manual_seed(7)
        before = generator.get_state()
        quiet = stage_batch("decoder", model, raw, FakeCache())  # previews and cache refills: no generator
        assert "inpaint_mask" not in quiet
        batch = stage_batch("decoder", model, raw, FakeCache(), generator)
        if model.config.inpainting:
            assert torch.equal(batch["inpaint_mask"], random_masks(5, SIZE, torch.Generator().manual_seed(7)))
        else:  # an ordinary decoder's random stream is exactly what it was before inpainting existed
            assert "inpaint_mask" not in batch and torch.equal(generator.get_state(), before)


def test_the_training_loss_reads_the_stage_masks():
    decoder = inpainting_decoder()
    image = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    _, mask = known_and_mask()
    _, _, cond = make_inputs()
    batch = {"image": image, "image_embed": cond.image_embed,
             "text": make_text(3), "inpaint_mask": mask}
    seen = []
    handle = decoder.unet.conv_in.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    try:
        decoder.training_loss(batch, torch.Generator().manual_seed(0))
        decoder.training_loss({k: v for k, v in batch.items() if k != "inpaint_mask"}, torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    with_mask, without = seen
    assert torch.equal(with_mask[:, 3:6], image * (1 - mask)) and torch.equal(with_mask[:, 6:], mask)
    assert not without[:, 3:6].any() and bool((without[:, 6:] == 1).all())  # absent: nothing known


# ------------------------------------------------------------------ training end to end
def inpainting_recipe(tiny: dict, weights: Path, steps: int) -> dict:
    data = recipe_for("decoder", tiny, steps=steps)
    data["model"]["weights"] = str(weights)
    data["model"]["config"]["inpainting"] = True
    data["output"]["checkpoint_every"] = 100
    return data


def test_fine_tuning_starts_from_the_ordinary_decoder_resumes_exactly_and_its_export_inpaints(
    registry, tiny_recipe_data, tiny_recipe_path, tmp_path
):
    plain_resolved = validate_training(recipe_for("decoder", tiny_recipe_data), registry)
    torch.manual_seed(0)
    plain = build_component(plain_resolved.model)
    save_weights(plain, tmp_path / "plain.safetensors")
    data = inpainting_recipe(tiny_recipe_data, tmp_path / "plain.safetensors", steps=4)
    data["output"]["export"] = str(tmp_path / "inpaint.safetensors")
    resolved = validate_training(data, registry, base_dir=tmp_path)

    start = build_component(resolved.model, trainable=True).eval()  # the training run's step 0
    x_t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cond = plain_cond(2)
    with torch.no_grad():
        torch.testing.assert_close(start(x_t, torch.tensor([10, 900]), cond), plain(x_t, torch.tensor([10, 900]), cond),
                                   rtol=1e-5, atol=1e-5)

    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, max_steps=2)
    train(resolved, registry=registry, out_dir=tmp_path / "split", progress=False, resume=True)
    train(resolved, registry=registry, out_dir=tmp_path / "straight", progress=False)
    a, b = read_safetensors(tmp_path / "straight" / CHECKPOINT_NAME), read_safetensors(tmp_path / "split" / CHECKPOINT_NAME)
    # Zero-initialised, these weights get a gradient only from known pixels: whole-image masks
    # alone (nothing known, zeros in) would leave them exactly zero under Adam.
    assert a["model/unet.conv_in.weight"][:, 3:6].abs().max() > 0, "no known pixels reached training"
    for key in a:
        if key.startswith(("model/", "ema/", "optim/")):
            assert torch.equal(a[key], b[key]), key

    pipeline = build_pipeline(load_recipe(tiny_recipe_path, [f"decoder.weights={tmp_path / 'inpaint.safetensors'}",
                                                             "decoder.config.inpainting=true"], registry), registry)
    image, mask = scene(), box_mask()
    known, repaint = expected_pixels(image, mask, pipeline.image_size)
    (result,) = pipeline.inpaint(image, mask, "a red circle", seed=1)
    assert np.array_equal(np.asarray(result, dtype=np.int16)[~repaint], known[~repaint])


def plain_cond(batch: int):
    from unclip_core.interfaces import DecoderCondition, TextEncoding

    g = torch.Generator().manual_seed(3)
    text = TextEncoding(torch.randn(batch, 16, generator=g), torch.randn(batch, 16, 32, generator=g),
                        torch.ones(batch, 16, dtype=torch.bool))
    return DecoderCondition.build(torch.nn.functional.normalize(torch.randn(batch, 16, generator=g), dim=-1), text)


# ------------------------------------------------------------------ the pipeline
class SpyDecoder(TargetModel):
    """An x0 model that records the inpainting channels it is given; ``inpainting`` as declared."""

    def __init__(self, target, size, inpainting):
        super().__init__(target, size)
        self.declared = dataclasses.replace(self.declared, inpainting=inpainting)
        self.seen = []

    def forward(self, x_t, t, cond):
        self.seen.append((cond.inpaint_image, cond.inpaint_mask))
        return super().forward(x_t, t, cond)


def test_the_pipeline_gives_a_trained_decoder_the_known_image_and_mask_and_repaints_others(tiny_pipeline):
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    image, mask = scene((32, 32)), box_mask((32, 32))
    base = tiny_pipeline.base_size
    known_base, repaint_base = expected_pixels(image, mask, base)
    for declared in (True, None):
        spy = SpyDecoder(target, base, declared)
        pipeline = dataclasses.replace(tiny_pipeline, decoder=spy)
        result = np.asarray(pipeline.inpaint(image, mask, "a red circle", n=2, seed=3)[0], dtype=np.int16)
        known, repaint = expected_pixels(image, mask, pipeline.image_size)
        assert np.array_equal(result[~repaint], known[~repaint])
        if not declared:
            assert all(seen == (None, None) for seen in spy.seen), "an ordinary decoder gets no inpainting channels"
            continue
        given_image, given_mask = spy.seen[0]
        assert given_image.shape == (4, 3, base, base) and given_mask.shape == (4, 1, base, base)  # n=2, doubled by guidance
        assert np.array_equal(given_mask[0, 0].numpy() == 1, repaint_base)
        pixels = ((given_image[0].permute(1, 2, 0).numpy() + 1) * 127.5)
        assert np.abs(pixels - known_base).max() <= 1.0  # PIL's bicubic resize, to rounding


def test_a_random_inpainting_decoder_in_the_tiny_stack_keeps_pixels_and_still_generates(registry, tiny_recipe_path):
    pipeline = build_pipeline(load_recipe(tiny_recipe_path, ["decoder.config.inpainting=true"], registry), registry)
    assert pipeline.decoder.declared.inpainting
    image, mask = scene(), box_mask()
    known, repaint = expected_pixels(image, mask, pipeline.image_size)
    for result in pipeline.inpaint(image, mask, "a red circle", n=2, seed=2, resample=2):
        assert np.array_equal(np.asarray(result, dtype=np.int16)[~repaint], known[~repaint])
    assert pipeline.generate("a red circle")[0].size == (32, 32)


# ------------------------------------------------------------------ the shipped recipes
def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_inpainting_training_recipe_fine_tunes_the_shipped_decoder(registry):
    recipe, decoder = read(RECIPES / "train" / "shapes-inpaint-decoder.yaml"), read(RECIPES / "train" / "shapes-decoder.yaml")
    assert (RECIPES / "train" / "shapes-inpaint-decoder.yaml").read_text().startswith("# Run: unclip train train/shapes-inpaint-decoder\n")
    assert recipe["stage"] == "decoder" and recipe["model"]["type"] == decoder["model"]["type"]
    assert recipe["model"]["config"] == {**decoder["model"]["config"], "inpainting": True}
    assert recipe["encoder"] == decoder["encoder"]
    assert recipe["model"]["weights"] == "../shapes/decoder.safetensors"
    assert recipe["output"]["export"] == "../shapes/inpaint-decoder.safetensors" and recipe["output"]["export_dtype"] == "fp16"
    assert recipe["dataset"]["type"] == "shapes" and recipe["dataset"]["config"]["size"] == decoder["dataset"]["config"]["size"]
    train_ = recipe["train"]
    minutes = train_["steps"] * train_["batch_size"] / 23 / 60  # the ordinary decoder's 23 samples/s on 2 threads
    assert minutes <= 25 and train_.get("threads") == 2, f"{minutes:.1f} min"
    validate_training(recipe, registry, base_dir=RECIPES / "train")


def test_the_inpainting_recipe_is_the_default_with_the_inpainting_decoder(registry):
    recipe, default = read(RECIPES / "shapes-inpaint.yaml"), read(RECIPES / "shapes.yaml")
    trained = read(RECIPES / "train" / "shapes-inpaint-decoder.yaml")
    assert (RECIPES / "shapes-inpaint.yaml").read_text().startswith("# Run: unclip inpaint ")
    for slot in set(default) | set(recipe):
        if slot not in ("name", "description", "decoder"):
            assert recipe.get(slot) == default.get(slot), f"{slot} differs from shapes.yaml"
    decoder = recipe["decoder"]
    assert decoder["config"] == trained["model"]["config"]
    assert decoder["weights"] == "shapes/inpaint-decoder.safetensors"
    assert RECIPES / decoder["weights"] == (RECIPES / "train" / trained["output"]["export"]).resolve()
    for key in ("type", "guidance_scale", "sampler"):
        assert decoder[key] == default["decoder"][key], key
    validate_recipe(copy.deepcopy(recipe), registry, base_dir=RECIPES)  # the trained weights included


def test_the_shipped_inpainting_decoder_brings_an_erased_object_back(load_bench_script):
    """bench/inpaint_shapes.py's check on a few scenes: erase one object of a two-object scene,
    inpaint with the full caption, and judge the result with the shapes checker (it scored 92%
    on 100 scenes, docs/benchmarks.md; a broken decoder or mask path scores near 0)."""
    from unclip_core.recipe.assemble import load_pipeline

    bench = load_bench_script("inpaint_shapes")
    pipeline = load_pipeline("shapes-inpaint")
    assert pipeline.decoder.declared.inpainting
    result = bench.run_method(pipeline, bench.draw_cases(6, seed=0, margin=0.04), seed=0, resample=1, save=None, label="trained")
    assert result["figures"]["exact"] >= 4 / 6, result["figures"]
