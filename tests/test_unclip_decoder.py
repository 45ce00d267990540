"""The ``unclip-decoder`` component: conditioning, guidance, Karlo parity, weights, training.

References: diffusers' own ``UnCLIPTextProjModel`` and the way diffusers' unCLIP pipeline
calls Karlo's decoder UNet (for the conditioning arithmetic), and classifier-free guidance
computed by hand from two plain forwards.
"""
from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from unclip_core import DecoderCondition, InputError, TextEncoding
from unclip_core.registry import discover
from unclip_plugins.unclip_decoder import UnclipDecoder, UnclipDecoderConfig

D, W, L, SIZE = 24, 24, 6, 16
TINY = dict(
    image_size=SIZE,
    embed_dim=D,
    text_width=W,
    context_length=L,
    block_out_channels=[32, 64],
    layers_per_block=1,
    attention_head_dim=16,
    cross_attention_dim=32,
)


def make_decoder(seed: int = 0, **overrides) -> UnclipDecoder:
    """A tiny decoder whose null inputs are random (as after training), so that dropping
    conditioning is distinguishable from feeding zeros."""
    torch.manual_seed(seed)
    decoder = UnclipDecoder(UnclipDecoderConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        decoder.text_proj.learned_classifier_free_guidance_embeddings.normal_()
        if decoder.config.use_text:
            decoder.null_text_embed.normal_()
            decoder.null_text_tokens.normal_()
            decoder.null_text_mask[L // 2 :] = False
    return decoder


def make_text(batch: int, seed: int = 1) -> TextEncoding:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, L + 1, (batch,), generator=g)
    mask = torch.arange(L)[None] < lengths[:, None]
    return TextEncoding(F.normalize(torch.randn(batch, D, generator=g), dim=-1), torch.randn(batch, L, W, generator=g), mask)


def make_inputs(batch: int = 3, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, 3, SIZE, SIZE, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g)
    image_embed = F.normalize(torch.randn(batch, D, generator=g), dim=-1)
    return x_t, t, DecoderCondition.build(image_embed, make_text(batch, seed + 1))


@pytest.fixture(scope="module")
def decoder() -> UnclipDecoder:
    return make_decoder()


@torch.no_grad()
def test_output_shapes():
    x_t, t, cond = make_inputs()
    assert make_decoder()(x_t, t, cond).shape == (3, 3, SIZE, SIZE)
    learned = make_decoder(variance_type="learned_range")
    assert learned.unet.config.out_channels == 6
    assert learned(x_t, t, cond).shape == (3, 6, SIZE, SIZE)


@torch.no_grad()
def test_image_embedding_conditions_only_its_own_sample(decoder):
    x_t, t, cond = make_inputs()
    base = decoder(x_t, t, cond)
    changed = cond.image_embed.clone()
    changed[1] = F.normalize(torch.randn(D, generator=torch.Generator().manual_seed(9)), dim=0)
    out = decoder(x_t, t, dataclasses.replace(cond, image_embed=changed))
    assert (out[1] - base[1]).abs().max() > 1e-3
    torch.testing.assert_close(out[[0, 2]], base[[0, 2]], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_dropped_image_is_the_learned_null_embedding(decoder):
    x_t, t, cond = make_inputs()
    dropped = dataclasses.replace(cond, drop_image=torch.ones(3, dtype=torch.bool))
    other = dataclasses.replace(dropped, image_embed=torch.randn(3, D))
    null = decoder.text_proj.learned_classifier_free_guidance_embeddings.detach()
    explicit = dataclasses.replace(cond, image_embed=null.expand(3, D).clone())
    out = decoder(x_t, t, dropped)
    torch.testing.assert_close(decoder(x_t, t, other), out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(decoder(x_t, t, explicit), out, rtol=1e-5, atol=1e-5)
    assert (decoder(x_t, t, cond) - out).abs().max() > 1e-3


@torch.no_grad()
def test_dropped_or_missing_caption_is_the_null_caption(decoder):
    x_t, t, cond = make_inputs()
    dropped = dataclasses.replace(cond, drop_text=torch.tensor([True, False, True]))
    null_text = TextEncoding(
        decoder.null_text_embed.detach().expand(3, D).clone(),
        decoder.null_text_tokens.detach().expand(3, L, W).clone(),
        decoder.null_text_mask.expand(3, L).clone(),
    )
    explicit = DecoderCondition.build(cond.image_embed, null_text)
    out = decoder(x_t, t, dropped)
    torch.testing.assert_close(out[[0, 2]], decoder(x_t, t, explicit)[[0, 2]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[1], decoder(x_t, t, cond)[1], rtol=1e-5, atol=1e-5)
    no_text = DecoderCondition.build(cond.image_embed, None)
    torch.testing.assert_close(decoder(x_t, t, no_text), decoder(x_t, t, explicit), rtol=1e-5, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("variance_type", ["fixed_small", "learned_range"])
def test_guidance_matches_hand_computed_mix(variance_type):
    decoder = make_decoder(variance_type=variance_type)
    x_t, t, cond = make_inputs()
    plain_cond = decoder(x_t, t, cond)
    plain_uncond = decoder(x_t, t, cond.unconditional())
    torch.testing.assert_close(decoder.denoiser(cond, 1.0)(x_t, t), plain_cond, rtol=1e-5, atol=1e-5)
    scale = 3.5
    guided = decoder.denoiser(cond, scale)(x_t, t)
    expected = plain_uncond + scale * (plain_cond - plain_uncond)
    if variance_type == "learned_range":  # the variance half comes unguided from the conditional branch
        expected = torch.cat([expected[:, :3], plain_cond[:, 3:]], dim=1)
    torch.testing.assert_close(guided, expected, rtol=1e-4, atol=1e-4)


def _diffusers_text_proj_class():
    for module in ("diffusers.pipelines.deprecated.unclip.text_proj", "diffusers.pipelines.unclip.text_proj"):
        try:
            return importlib.import_module(module).UnCLIPTextProjModel
        except (ImportError, AttributeError):
            continue
    pytest.skip("this diffusers has no UnCLIPTextProjModel")


@torch.no_grad()
def test_matches_diffusers_unclip_conditioning(decoder):
    """Our conditioning, fed to our UNet, equals what diffusers' unCLIP pipeline computes
    with ``UnCLIPTextProjModel`` holding the same weights: 4 extra tokens before the caption,
    the CLIP embedding added to the timestep embedding, the caption mask padded with True."""
    reference_cls = _diffusers_text_proj_class()
    cfg = decoder.config
    reference = reference_cls(
        clip_embeddings_dim=D, time_embed_dim=cfg.time_embed_dim, cross_attention_dim=cfg.cross_attention_dim
    )
    reference.load_state_dict(decoder.text_proj.state_dict(), strict=True)  # identical parameter names
    x_t, t, cond = make_inputs()

    seen = {}

    def capture(module, args, kwargs):
        seen.update(context=kwargs["encoder_hidden_states"], time=kwargs["class_labels"])

    handle = decoder.unet.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        ours = decoder(x_t, t, cond)
    finally:
        handle.remove()
    assert seen["context"].shape == (3, L + 4, cfg.cross_attention_dim)

    context, time_embedding = reference(
        image_embeddings=cond.image_embed,
        prompt_embeds=cond.text_embed,
        text_encoder_hidden_states=cond.text_tokens,
        do_classifier_free_guidance=False,
    )
    torch.testing.assert_close(seen["context"], context, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(seen["time"], time_embedding, rtol=1e-5, atol=1e-5)
    karlo_mask = F.pad(cond.text_mask, (reference.clip_extra_context_tokens, 0), value=True)
    expected = decoder.unet(
        x_t, t, encoder_hidden_states=context, class_labels=time_embedding, attention_mask=karlo_mask
    ).sample
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_caption_mask_hides_padding_tokens(decoder):
    x_t, t, cond = make_inputs()
    padded = ~cond.text_mask
    assert padded.any()
    scrambled = cond.text_tokens.clone()
    scrambled[padded] = 100.0
    torch.testing.assert_close(
        decoder(x_t, t, dataclasses.replace(cond, text_tokens=scrambled)), decoder(x_t, t, cond), rtol=1e-5, atol=1e-5
    )


@torch.no_grad()
def test_text_width_may_differ_from_embed_dim():
    decoder = make_decoder(text_width=W + 8)
    x_t, t, cond = make_inputs()
    text = TextEncoding(cond.text_embed, torch.randn(3, L, W + 8), cond.text_mask)
    assert decoder(x_t, t, DecoderCondition.build(cond.image_embed, text)).shape == (3, 3, SIZE, SIZE)


@torch.no_grad()
def test_image_only_decoder_has_no_caption_layers():
    decoder = make_decoder(use_text=False)
    names = set(decoder.state_dict())
    assert not any("embedding_proj" in n or "encoder_hidden_states" in n or n.startswith("null_text") for n in names)
    x_t, t, cond = make_inputs()
    out = decoder(x_t, t, DecoderCondition.build(cond.image_embed))
    torch.testing.assert_close(decoder(x_t, t, cond), out)  # a caption, if given, is ignored
    assert decoder.declared.text_width is None and decoder.declared.context_length is None


def test_determinism_and_safetensors_round_trip(tmp_path):
    x_t, t, cond = make_inputs()
    first, again = make_decoder(seed=3), make_decoder(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(first(x_t, t, cond), again(x_t, t, cond), rtol=0, atol=0)
    batch = {"image": x_t.clamp(-1, 1), "image_embed": cond.image_embed, "text": make_text(3)}
    loss_a = first.training_loss(batch, torch.Generator().manual_seed(5))
    loss_b = first.training_loss(batch, torch.Generator().manual_seed(5))
    assert loss_a.item() == loss_b.item()

    path = tmp_path / "decoder.safetensors"
    save_file(first.state_dict(), str(path))
    loaded = make_decoder(seed=4)
    loaded.load_state_dict(load_file(str(path)), strict=True)
    assert torch.equal(loaded.null_text_mask, first.null_text_mask)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x_t, t, cond), first(x_t, t, cond), rtol=0, atol=0)


def test_training_loss_decreases_on_a_fixed_batch():
    decoder = make_decoder(seed=6).train()
    g = torch.Generator().manual_seed(7)
    image = torch.rand(4, 3, SIZE, SIZE, generator=g) * 2 - 1
    batch = {"image": image, "image_embed": F.normalize(torch.randn(4, D, generator=g), dim=-1), "text": make_text(4)}
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = decoder.training_loss(batch, torch.Generator().manual_seed(8))  # same t, noise and drops
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_training_draws_both_dropouts():
    decoder = make_decoder(image_drop_prob=0.5, text_drop_prob=0.5)
    seen = []
    decoder.register_forward_pre_hook(lambda module, args: seen.append(args[2]))
    x_t, _, cond = make_inputs(batch=16)
    text = make_text(16)
    decoder.training_loss({"image": x_t.clamp(-1, 1), "image_embed": cond.image_embed, "text": text}, torch.Generator().manual_seed(0))
    drawn = seen[-1]
    for flags in (drawn.drop_image, drawn.drop_text):
        assert 0 < int(flags.sum()) < 16
    assert not torch.equal(drawn.drop_image, drawn.drop_text)


def test_learned_range_loss_trains_the_variance_head():
    decoder = make_decoder(variance_type="learned_range")
    x_t, _, cond = make_inputs()
    loss = decoder.training_loss(
        {"image": x_t.clamp(-1, 1), "image_embed": cond.image_embed, "text": make_text(3)}, torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(loss)
    loss.backward()
    assert decoder.unet.conv_out.weight.grad[3:].abs().sum() > 0  # the variance channels learn


def test_declares_and_registration():
    cfg = UnclipDecoderConfig(**TINY)
    declared = cfg.declares()
    assert (declared.embed_dim, declared.text_width, declared.context_length, declared.image_size) == (D, W, L, SIZE)
    assert declared.input_size is None
    spec = discover().get("decoder", "unclip-decoder")
    assert spec.config_model is UnclipDecoderConfig
    assert isinstance(spec.build(cfg), UnclipDecoder)
    for name, field in UnclipDecoderConfig.model_fields.items():
        assert field.description, f"{name} has no description"


def test_bad_settings_and_inputs_are_rejected(decoder):
    with pytest.raises(ValidationError, match="attention_levels"):
        UnclipDecoderConfig(**{**TINY, "attention_levels": [True]})
    with pytest.raises(ValidationError, match="divisible"):
        UnclipDecoderConfig(**{**TINY, "image_size": 15})
    with pytest.raises(ValidationError):
        UnclipDecoderConfig(**{**TINY, "unknown_setting": 1})
    x_t, t, cond = make_inputs()
    with pytest.raises(InputError, match="image_embed"):
        decoder(x_t, t, dataclasses.replace(cond, image_embed=torch.randn(3, D + 1)))
    with pytest.raises(InputError, match="text_tokens"):
        decoder(x_t, t, dataclasses.replace(cond, text_tokens=torch.randn(3, L + 1, W)))
    with pytest.raises(InputError, match="image"):
        decoder.training_loss({"image_embed": cond.image_embed}, torch.Generator())
