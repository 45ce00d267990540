"""The ``open-clip`` encoder against open_clip itself (the reference), on a tiny random model."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math
import warnings
from argparse import Namespace

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import ValidationError
from safetensors.torch import load_file, save_file, save_model

from unclip_core import CheckpointError, Declared, InputError
from unclip_plugins.open_clip_encoder import OpenClipConfig, OpenClipEncoder, build

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
OPENAI_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
OPENAI_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
PROMPTS = ["a photo of a cat", "an oil painting of a lighthouse at dusk", ""]
SOT, EOT = 49406, 49407


def tiny_config(**changes) -> OpenClipConfig:
    return OpenClipConfig(model_config=TINY, **changes)


@pytest.fixture(scope="module")
def encoder() -> OpenClipEncoder:
    return OpenClipEncoder(tiny_config()).eval()


def random_pil(generator: torch.Generator, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    width, height = size
    pixels = torch.randint(0, 256, (height, width, channels), generator=generator, dtype=torch.uint8).numpy()
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


def reference_image_embed(encoder: OpenClipEncoder, images: list[Image.Image]) -> torch.Tensor:
    """open_clip's own eval transform and ``encode_image``."""
    transform = open_clip.image_transform(32, is_train=False)
    pixels = torch.stack([transform(image) for image in images])
    return encoder.model.encode_image(pixels, normalize=True)


# ------------------------------------------------------------------------------ text
@torch.no_grad()
def test_text_shapes_dtypes_and_unit_norm(encoder):
    text = encoder.encode_text(PROMPTS)
    assert text.embed.shape == (3, 32) and text.embed.dtype == torch.float32
    assert text.tokens.shape == (3, 16, 64) and text.tokens.dtype == torch.float32
    assert text.mask.shape == (3, 16) and text.mask.dtype == torch.bool
    torch.testing.assert_close(text.embed.norm(dim=-1), torch.ones(3))


@torch.no_grad()
def test_embed_equals_open_clip_encode_text(encoder):
    ids = open_clip.tokenize(PROMPTS, context_length=16)
    reference = encoder.model.encode_text(ids, normalize=True)
    torch.testing.assert_close(encoder.encode_text(PROMPTS).embed, reference, rtol=0, atol=1e-6)


@torch.no_grad()
def test_tokens_are_the_text_transformer_output_after_ln_final(encoder):
    model = encoder.model
    ids = open_clip.tokenize(PROMPTS, context_length=16)
    x = model.token_embedding(ids) + model.positional_embedding
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    text = encoder.encode_text(PROMPTS)
    torch.testing.assert_close(text.tokens, x, rtol=0, atol=1e-5)
    # and the pooled embedding is the projected EOT token of those very features
    pooled = text.tokens[torch.arange(3), ids.argmax(dim=-1)] @ model.text_projection
    torch.testing.assert_close(F.normalize(pooled, dim=-1), text.embed, rtol=0, atol=1e-6)


def test_mask_marks_exactly_sot_to_eot(encoder):
    tokenizer = open_clip.SimpleTokenizer()
    lengths = [len(tokenizer.encode(p)) + 2 for p in PROMPTS]
    assert lengths[-1] == 2  # '' is SOT, EOT
    mask = encoder.encode_text(PROMPTS).mask
    ids = open_clip.tokenize(PROMPTS, context_length=16)
    for row, length in enumerate(lengths):
        assert mask[row].tolist() == [i < length for i in range(16)]
        assert ids[row, 0] == SOT and ids[row, length - 1] == EOT


def test_long_prompt_is_truncated_with_a_warning_naming_it(encoder):
    long_prompt = "a very detailed photograph of " + "a red cat and " * 10
    with pytest.warns(UserWarning, match="a very detailed photograph of") as record:
        text = encoder.encode_text(["a dog", long_prompt])
    assert len(record) == 1 and "truncated" in str(record[0].message)
    assert text.mask[1].all() and text.mask[0].sum() < 16
    with torch.no_grad():
        reference = encoder.model.encode_text(open_clip.tokenize([long_prompt], context_length=16), normalize=True)
    torch.testing.assert_close(text.embed[1:].detach(), reference, rtol=0, atol=1e-6)


def test_short_prompts_do_not_warn(encoder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode_text(PROMPTS)


@torch.no_grad()
def test_empty_prompt_is_the_unconditional_caption(encoder):
    text = encoder.encode_text([""])
    assert text.mask[0].sum() == 2
    torch.testing.assert_close(text.embed.norm(dim=-1), torch.ones(1))
    reference = encoder.model.encode_text(open_clip.tokenize([""], context_length=16), normalize=True)
    torch.testing.assert_close(text.embed, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "prompts, message",
    [([], "empty"), ([3], "prompt 0 must be a string"), (["a cat", None], "prompt 1 must be a string"), (7, "list of strings")],
)
def test_bad_prompts_raise_input_error(encoder, prompts, message):
    with pytest.raises(InputError, match=message):
        encoder.encode_text(prompts)


# ------------------------------------------------------------------------------ images
@torch.no_grad()
def test_pil_images_equal_open_clip_preprocess_and_encode_image(encoder):
    generator = torch.Generator().manual_seed(0)
    images = [random_pil(generator, (48, 40)), random_pil(generator, (32, 32)), random_pil(generator, (20, 70))]
    embed = encoder.encode_image(images)
    assert embed.shape == (3, 32) and embed.dtype == torch.float32
    torch.testing.assert_close(embed.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(embed, reference_image_embed(encoder, images), rtol=0, atol=1e-6)


@torch.no_grad()
def test_grayscale_and_rgba_images_encode_as_their_rgb_conversion(encoder):
    generator = torch.Generator().manual_seed(1)
    gray, rgba = random_pil(generator, (40, 40), "L"), random_pil(generator, (36, 44), "RGBA")
    embed = encoder.encode_image([gray, rgba])
    assert embed.shape == (2, 32)
    reference = reference_image_embed(encoder, [gray.convert("RGB"), rgba.convert("RGB")])
    torch.testing.assert_close(embed, reference, rtol=0, atol=1e-5)


@torch.no_grad()
def test_tensor_at_model_size_is_mapped_to_unit_range_and_normalised(encoder):
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1
    reference = encoder.model.encode_image(((x + 1) / 2 - OPENAI_MEAN) / OPENAI_STD, normalize=True)
    torch.testing.assert_close(encoder.encode_image(x), reference, rtol=0, atol=1e-6)


@torch.no_grad()
def test_larger_tensor_is_resized_like_the_pil_path(encoder):
    """Bicubic antialiased resize + centre crop in torch ≈ open_clip's PIL eval transform."""
    generator = torch.Generator().manual_seed(3)
    smooth = F.interpolate(torch.rand(1, 3, 8, 12, generator=generator), size=(64, 96), mode="bilinear")
    image = Image.fromarray((smooth[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
    from_tensor, from_pil = encoder.encode_image(x), encoder.encode_image([image])
    assert F.cosine_similarity(from_tensor, from_pil).item() > 0.995


def test_tensor_path_is_differentiable(encoder):
    x = (torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(4)) * 2 - 1).requires_grad_()
    encoder.encode_image(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(2, 32, 32), r"\[B, 3, H, W\]"),
        (torch.zeros(2, 4, 32, 32), r"shape \[2, 4, 32, 32\]"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "dtype torch.uint8"),
        (["not an image"], "image 0 is a str"),
        ([], "empty"),
        (42, "got int"),
    ],
)
def test_bad_images_raise_input_error(encoder, images, message):
    with pytest.raises(InputError, match=message):
        encoder.encode_image(images)


# ------------------------------------------------------------------------------ weights
def test_state_dict_is_open_clips_under_one_prefix(encoder):
    assert set(encoder.state_dict()) == {f"model.{key}" for key in encoder.model.state_dict()}


@torch.no_grad()
def test_build_is_deterministic_and_leaves_global_rng_alone(encoder):
    rng_before = torch.get_rng_state()
    again = OpenClipEncoder(tiny_config())
    assert torch.equal(torch.get_rng_state(), rng_before)
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert torch.equal(encoder.encode_text(PROMPTS).embed, encoder.encode_text(PROMPTS).embed)
    other = OpenClipEncoder(tiny_config(init_seed=1))
    assert not torch.equal(other.model.text_projection, encoder.model.text_projection)


@torch.no_grad()
def test_safetensors_round_trip_into_a_fresh_encoder(encoder, tmp_path):
    path = tmp_path / "encoder.safetensors"
    save_model(encoder, str(path))
    fresh = OpenClipEncoder(tiny_config(init_seed=7)).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    assert not torch.allclose(fresh.encode_text(PROMPTS).embed, encoder.encode_text(PROMPTS).embed)
    fresh.load_state_dict(load_file(str(path)), strict=True)
    for mine, theirs in [(fresh.encode_text(PROMPTS), encoder.encode_text(PROMPTS))]:
        assert torch.equal(mine.embed, theirs.embed) and torch.equal(mine.tokens, theirs.tokens)
    assert torch.equal(fresh.encode_image(x), encoder.encode_image(x))
    assert torch.equal(fresh.logit_scale, encoder.logit_scale)


@torch.no_grad()
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_open_clip_checkpoint_file_loads_through_checkpoint_setting(encoder, tmp_path, suffix):
    path = tmp_path / f"open_clip{suffix}"
    weights = {k: v.contiguous() for k, v in encoder.model.state_dict().items()}  # open_clip's own keys
    if suffix == ".pt":
        torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}, "epoch": 3}, path)
    else:
        save_file(weights, str(path))
    loaded = OpenClipEncoder(tiny_config(checkpoint=str(path), init_seed=9)).eval()
    assert torch.equal(loaded.encode_text(PROMPTS).embed, encoder.encode_text(PROMPTS).embed)


def test_pickled_objects_in_a_checkpoint_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "args": Namespace(lr=1.0)}, path)
    with pytest.raises(CheckpointError, match="not unpickled"):
        OpenClipEncoder(tiny_config(checkpoint=str(path)))


def test_checkpoint_problems_are_one_line_checkpoint_errors(encoder, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        OpenClipEncoder(tiny_config(checkpoint=str(tmp_path / "missing.safetensors")))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"visual.proj": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(CheckpointError, match="does not fit") as info:
        OpenClipEncoder(tiny_config(checkpoint=str(wrong)))
    assert "\n" not in str(info.value)
    with pytest.raises(ValidationError, match="must end in one of"):
        tiny_config(checkpoint="weights.npz")


# ------------------------------------------------------------------------------ config
@torch.no_grad()
def test_declares_matches_the_built_model(encoder):
    declared = tiny_config().declares()
    assert declared == Declared(embed_dim=32, text_width=64, context_length=16, image_size=32)
    assert encoder.model.text_projection.shape[1] == declared.embed_dim
    assert encoder.model.transformer.width == declared.text_width
    assert encoder.model.context_length == declared.context_length
    assert encoder.model.visual.image_size == (declared.image_size, declared.image_size)
    text = encoder.encode_text(PROMPTS)
    assert text.tokens.shape[1:] == (declared.context_length, declared.text_width)
    assert encoder.encode_image(torch.zeros(1, 3, 50, 50)).shape[1] == declared.embed_dim


@pytest.mark.parametrize(
    "name, expected",
    [("ViT-B-32", Declared(512, 512, 77, 224)), ("ViT-L-14", Declared(768, 768, 77, 224)), ("RN50", Declared(1024, 512, 77, 224))],
)
def test_declares_for_named_architectures_without_building(monkeypatch, name, expected):
    def refuse(*args, **kwargs):
        raise AssertionError("declares() must not build the model")

    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)  # no module of any kind gets built
    assert OpenClipConfig(model=name).declares() == expected


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(ValidationError, match="'ViT-B-32'") as info:
        OpenClipConfig(model="ViT-B-23")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({}, "exactly one of"),
        ({"model": "ViT-B-32", "model_config": TINY}, "exactly one of"),
        ({"model_config": {**TINY, "vision_cfg": {**TINY["vision_cfg"], "patchsize": 8}}}, "did you mean 'patch_size'"),
        ({"model_config": {**TINY, "embedding_dim": 3}}, "unknown key 'embedding_dim'"),
        ({"model_config": {"vision_cfg": {}, "text_cfg": {}}}, "embed_dim must be a positive integer"),
        ({"model_config": {**TINY, "vision_cfg": {**TINY["vision_cfg"], "image_size": [32, 48]}}}, "not square"),
        ({"model": "ViT-B-16-SigLIP"}, "need the hub"),
        ({"model": "coca_ViT-B-32"}, "CoCa"),
        ({"model": "hf-hub:timm/ViT-B-16-SigLIP"}, "built-in architecture names"),
        ({"model": "ViT-B-32", "pretrained": "openai"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_rejected_with_a_clear_message(settings, message):
    with pytest.raises(ValidationError, match=message):
        OpenClipConfig.model_validate(settings)


def test_registered_as_open_clip_through_its_entry_point(monkeypatch):
    from unclip_core.registry import discover

    monkeypatch.setenv("UNCLIP_PLUGINS", "open-clip")
    registry = discover()
    spec = registry.get("encoder", "open-clip")
    assert spec.config_model is OpenClipConfig and spec.factory is build and spec.summary
    assert isinstance(spec.build(OpenClipConfig.model_validate({"model_config": TINY})), OpenClipEncoder)


# ------------------------------------------------------------------------------ training
def test_contrastive_loss_is_clips_symmetric_infonce_and_trains():
    encoder = OpenClipEncoder(tiny_config(init_seed=3)).train()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(6)) * 2 - 1
    prompts = ["a red square", "a blue circle", "a green triangle", "a yellow star"]
    assert math.isclose(encoder.logit_scale.item(), 1 / 0.07, rel_tol=1e-5)

    loss = encoder.contrastive_loss(images, prompts)
    with torch.no_grad():
        logits = encoder.logit_scale * encoder.encode_image(images) @ encoder.encode_text(prompts).embed.T
        labels = torch.arange(4)
        by_hand = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(loss.detach(), by_hand)

    # The 49408-row token table would make every step dense and slow; the rest learns fine.
    encoder.model.token_embedding.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad], lr=1e-3)
    initial = loss.item()
    for _ in range(20):
        optimizer.zero_grad()
        loss = encoder.contrastive_loss(images, prompts)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * initial


def test_hard_negatives_join_each_images_candidates_in_the_image_to_caption_direction_only():
    """Checked against the loss written out term by term in float64: for image i,
    -log softmax over (every caption, then image i's own negatives) at caption i; for
    caption i, -log softmax over the images at image i."""
    encoder = OpenClipEncoder(tiny_config(init_seed=3)).eval()
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1
    prompts = ["a red square", "a blue circle", "a green triangle"]
    negatives = [["a blue square", "a red circle"], ["a red circle", "a blue square"], ["a red triangle", "a green circle"]]
    with torch.no_grad():
        loss = encoder.contrastive_loss(images, prompts, negatives=negatives).item()
        image = encoder.encode_image(images).double()
        text = encoder.encode_text(prompts).embed.double()
        scale = float(encoder.logit_scale)
    expected = 0.0
    for i in range(3):
        candidates = [scale * float(image[i] @ text[j]) for j in range(3)]
        negative = encoder.encode_text(negatives[i]).embed.double().detach()
        candidates += [scale * float(image[i] @ negative[k]) for k in range(2)]
        image_term = -candidates[i] + math.log(sum(math.exp(c) for c in candidates))
        against = [scale * float(text[i] @ image[j]) for j in range(3)]
        text_term = -against[i] + math.log(sum(math.exp(c) for c in against))
        expected += (image_term + text_term) / 2 / 3
    assert math.isclose(loss, expected, rel_tol=1e-4)
    plain = encoder.contrastive_loss(images, prompts).item()
    assert loss > plain  # extra candidates can only add to each image's normaliser
    assert math.isclose(encoder.contrastive_loss(images, prompts, negatives=[[], [], []]).item(), plain, rel_tol=1e-5)


@pytest.mark.parametrize("negatives, message", [
    ([["a blue square"]], "one list of negative captions per image"),
    ([["a blue square"], []], "same number of negative captions"),
    ([["a blue square"], [3]], "must be a string"),
])
def test_bad_hard_negatives_are_one_line_errors(encoder, negatives, message):
    with pytest.raises(InputError, match=message):
        encoder.contrastive_loss(torch.zeros(2, 3, 32, 32), ["a red square", "a blue circle"], negatives=negatives)


def test_contrastive_loss_needs_one_prompt_per_image(encoder):
    with pytest.raises(InputError, match="2 images but 3 prompts"):
        encoder.contrastive_loss(torch.zeros(2, 3, 32, 32), PROMPTS)


def test_config_dump_reads_back_under_the_recipe_key():
    dumped = tiny_config(checkpoint="clip.safetensors").model_dump(mode="json")
    assert "model_config" in dumped and "model_cfg" not in dumped
    assert OpenClipConfig.model_validate(dumped) == tiny_config(checkpoint="clip.safetensors")


@torch.no_grad()
def test_custom_text_tower_layout_also_matches_open_clip():
    """``custom_text: true`` builds open_clip's ``CustomTextCLIP`` (text tower under ``text.``)."""
    encoder = OpenClipEncoder(OpenClipConfig(model_config={**TINY, "custom_text": True})).eval()
    assert isinstance(encoder.model, open_clip.CustomTextCLIP)
    ids = open_clip.tokenize(PROMPTS, context_length=16)
    text = encoder.encode_text(PROMPTS)
    torch.testing.assert_close(text.embed, encoder.model.encode_text(ids, normalize=True), rtol=0, atol=1e-6)
    tower = encoder.model.text
    x = tower.ln_final(tower.transformer(tower.token_embedding(ids) + tower.positional_embedding, attn_mask=tower.attn_mask))
    torch.testing.assert_close(text.tokens, x, rtol=0, atol=1e-5)


def test_token_ids_equal_a_freshly_built_open_clip_tokenizer_at_the_encoder_context(encoder):
    """The encoder reuses the tokenizer open_clip builds at import (one BPE load, not two):
    its ids must still be those of a SimpleTokenizer built for the encoder's own context."""
    from open_clip.tokenizer import SimpleTokenizer

    reference = SimpleTokenizer(context_length=16)
    prompts = ["a red circle to the left of a blue square", "", "Café, 3 GREEN triangles!!", "word " * 30]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long prompt's truncation warning
        ids = encoder.tokenize(prompts).ids
    assert torch.equal(ids, reference(prompts))
