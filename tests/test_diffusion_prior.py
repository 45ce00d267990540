"""The ``diffusion-prior`` component: diffusers' PriorTransformer wrapped as an unCLIP prior.

References: diffusers' own ``PriorTransformer`` called the way Karlo's pipeline calls it,
diffusers' cosine betas, classifier-free guidance computed by hand from two plain forward
calls, and an exact denoiser whose answer the sampler must return.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from unclip_core import (
    ComponentConfig,
    DiffusionModel,
    InputError,
    Prior,
    PriorCondition,
    Sampler,
    StepInfo,
    TextEncoding,
    UnclipError,
)
from unclip_core.diffusion.parameterization import eps_from_x0
from unclip_plugins.diffusion_prior import DiffusionPrior, DiffusionPriorConfig, select_best_candidates

D, W, L = 16, 32, 8
TINY = dict(embed_dim=D, text_width=W, context_length=L, num_layers=2, num_attention_heads=2, attention_head_dim=8)


def make_prior(seed: int = 0, **overrides) -> DiffusionPrior:
    torch.manual_seed(seed)  # module initialisation draws from the global generator
    return DiffusionPrior(DiffusionPriorConfig(**{**TINY, **overrides})).eval()


def make_text(batch: int, seed: int, width: int = W, *, pad_from: int | None = None) -> TextEncoding:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, L, dtype=torch.bool)
    if pad_from is not None:
        mask[:, pad_from:] = False
    embed = F.normalize(torch.randn(batch, D, generator=g), dim=-1)
    return TextEncoding(embed, torch.randn(batch, L, width, generator=g), mask)


def noised(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, D, generator=g), torch.randint(0, 1000, (batch,), generator=g)


# ---------------------------------------------------------------------------- the model
def test_is_a_prior_and_an_x0_diffusion_model_with_diffusers_cosine_schedule():
    from diffusers import DDPMScheduler

    prior = make_prior()
    assert isinstance(prior, Prior) and isinstance(prior, DiffusionModel)
    assert prior.kind == "prior"
    assert (prior.prediction_type, prior.variance_type, prior.clip_range) == ("x0", "fixed_small", None)
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    torch.testing.assert_close(prior.schedule.betas.float(), reference.betas.float(), rtol=0, atol=0)
    configured = make_prior(variance_type="fixed_large", clip_range=5.0, beta_schedule="linear", num_train_timesteps=50)
    assert (configured.variance_type, configured.clip_range, configured.schedule.num_train_timesteps) == (
        "fixed_large",
        5.0,
        50,
    )


def test_forward_shape_dtype_and_batch_independence():
    prior = make_prior()
    text = make_text(3, seed=1)
    x_t, t = noised(3, seed=2)
    out = prior(x_t, t, PriorCondition.from_text(text))
    assert out.shape == (3, D) and out.dtype == torch.float32
    # Each row is its own causal sequence: row 1 alone gives the same answer.
    single = PriorCondition.from_text(TextEncoding(text.embed[1:2], text.tokens[1:2], text.mask[1:2]))
    torch.testing.assert_close(prior(x_t[1:2], t[1:2], single), out[1:2], atol=1e-5, rtol=1e-5)


def test_forward_matches_diffusers_prior_transformer_called_as_karlo_does():
    """With W == D the caption projection is PriorTransformer's own (Karlo's layout)."""
    prior = make_prior(text_width=D)
    assert prior.text_proj is None
    text = make_text(2, seed=3, width=D, pad_from=5)
    x_t, t = noised(2, seed=4)
    expected = prior.transformer(
        x_t, timestep=t, proj_embedding=text.embed, encoder_hidden_states=text.tokens, attention_mask=text.mask
    ).predicted_image_embedding
    torch.testing.assert_close(prior(x_t, t, PriorCondition.from_text(text)), expected)
    # and the padding mask matters (so the comparison above covers it)
    unmasked = dataclasses.replace(text, mask=torch.ones_like(text.mask))
    assert not torch.allclose(prior(x_t, t, PriorCondition.from_text(unmasked)), expected, atol=1e-4)


def test_caption_of_wrong_shape_is_a_one_line_input_error():
    prior = make_prior()
    text = make_text(2, seed=1, width=W + 1)
    x_t, t = noised(2, seed=2)
    with pytest.raises(InputError, match=r"tokens has shape \[2, 8, 33\], expected \[2, 8, 32\]"):
        prior(x_t, t, PriorCondition.from_text(text))


# ---------------------------------------------------------------------------- conditioning
def test_guidance_is_uncond_plus_scale_times_difference():
    prior = make_prior()
    cond = PriorCondition.from_text(make_text(3, seed=5))
    x_t, t = noised(3, seed=6)
    conditional = prior(x_t, t, cond)
    unconditional = prior(x_t, t, cond.unconditional())
    assert not torch.allclose(conditional, unconditional, atol=1e-4)
    torch.testing.assert_close(prior.denoiser(cond, 1.0)(x_t, t), conditional)
    for scale in (0.0, 3.0, 7.5):
        expected = unconditional + scale * (conditional - unconditional)
        torch.testing.assert_close(prior.denoiser(cond, scale)(x_t, t), expected, atol=1e-5, rtol=1e-5)


def test_drop_text_switches_each_row_to_the_null_caption():
    prior = make_prior()
    with torch.no_grad():  # a non-trivial null caption
        prior.null_text_embed.normal_(generator=torch.Generator().manual_seed(7))
        prior.null_text_tokens.normal_(generator=torch.Generator().manual_seed(8))
    caption, other_caption = make_text(2, seed=9), make_text(2, seed=10, pad_from=3)
    x_t, t = noised(2, seed=11)
    kept = prior(x_t, t, PriorCondition.from_text(caption))
    drop_second = torch.tensor([False, True])
    mixed = prior(x_t, t, PriorCondition(caption.embed, caption.tokens, caption.mask, drop_second))
    torch.testing.assert_close(mixed[0], kept[0])
    assert not torch.allclose(mixed[1], kept[1], atol=1e-4)
    # The dropped row ignores whatever caption it was given ...
    other = prior(x_t, t, PriorCondition(other_caption.embed, other_caption.tokens, other_caption.mask, drop_second))
    torch.testing.assert_close(other[1], mixed[1])
    # ... and is exactly the model fed the null caption (with an all-valid mask) as a caption.
    null = TextEncoding(
        prior.null_text_embed.detach().expand(2, D),
        prior.null_text_tokens.detach().expand(2, L, W),
        torch.ones(2, L, dtype=torch.bool),
    )
    torch.testing.assert_close(prior(x_t, t, PriorCondition.from_text(null))[1], mixed[1])


# ---------------------------------------------------------------------------- sampling
class HandDDIM(Sampler):
    """Deterministic DDIM (η = 0, Song et al. 2021) written out here, independent of the
    project's samplers, for checking the prior against an exact denoiser."""

    def __init__(self, steps: int = 10):
        super().__init__(ComponentConfig())
        self.steps = steps

    def sample(self, denoiser, shape, *, generator, x_T=None, callback=None):
        schedule = denoiser.schedule
        timesteps = torch.linspace(schedule.num_train_timesteps - 1, 0, self.steps).round().long()
        x = torch.randn(tuple(shape), generator=generator) if x_T is None else x_T
        for index, t in enumerate(timesteps):
            x0 = denoiser(x, t.expand(shape[0]))
            eps = eps_from_x0(schedule, x, t, x0)
            t_prev = timesteps[index + 1] if index + 1 < len(timesteps) else torch.tensor(-1)
            abar_prev = schedule.alpha_bar(t_prev).to(x.dtype)
            x = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
            if callback is not None:
                callback(StepInfo(index, len(timesteps), int(t), x, x0))
        return x


def _registered_sampler(name: str) -> Sampler | None:
    """The project's own sampler of that name, once a plugin registers it."""
    from unclip_core.registry import discover

    registry = discover()
    if name not in registry.components["sampler"]:
        return None
    spec = registry.components["sampler"][name]
    return spec.build(spec.config_model())


@pytest.fixture(params=["hand-ddim", "ddim", "ddpm"])
def sampler(request, monkeypatch) -> Sampler:
    if request.param == "hand-ddim":
        return HandDDIM()
    monkeypatch.setenv("UNCLIP_PLUGINS", "samplers")  # load only the samplers' entry point
    found = _registered_sampler(request.param)
    if found is None:
        pytest.skip(f"no {request.param!r} sampler registered yet")
    return found


def test_with_an_exact_denoiser_the_sampler_returns_the_target_embedding(sampler, monkeypatch):
    """The model always answers the caption's true image embedding (normalised); sampling
    must then hand back that embedding in CLIP space, unit-normalised."""
    prior = make_prior()
    g = torch.Generator().manual_seed(12)
    prior.fit_normalization(torch.randn(64, D, generator=g) * 0.3 + 0.1)  # non-trivial statistics
    rotation = torch.linalg.qr(torch.randn(D, D, generator=g))[0]

    def true_image_embed(text_embed: torch.Tensor) -> torch.Tensor:
        return F.normalize(text_embed @ rotation + 0.2, dim=-1)

    def exact_forward(x_t, t, cond):
        return prior.normalize(true_image_embed(cond.text_embed))

    monkeypatch.setattr(prior, "forward", exact_forward)
    text = make_text(3, seed=13)
    steps = []
    out = prior.sample(text, sampler=sampler, generator=g, candidates=2, callback=steps.append)
    torch.testing.assert_close(out, true_image_embed(text.embed), atol=1e-5, rtol=1e-5)
    assert steps and steps[-1].x.shape == (6, D)

    # without renormalisation the un-normalised sample itself comes back
    monkeypatch.setattr(prior, "config", prior.config.model_copy(update={"normalize_output": False}))
    raw = torch.randn(3, D, generator=g)
    monkeypatch.setattr(prior, "forward", lambda x_t, t, cond: prior.normalize(raw[: x_t.shape[0]]))
    torch.testing.assert_close(prior.sample(text, sampler=sampler, generator=g), raw, atol=1e-5, rtol=1e-5)


class FixedSampler(Sampler):
    """Returns given samples (ignoring the denoiser) and records what it was asked."""

    def __init__(self, samples: torch.Tensor):
        super().__init__(ComponentConfig())
        self.samples = samples
        self.calls: list[tuple] = []

    def sample(self, denoiser, shape, *, generator, x_T=None, callback=None):
        self.calls.append((tuple(shape), denoiser))
        return self.samples.clone()


def test_best_of_n_keeps_the_candidate_with_the_highest_dot_product():
    basis = torch.eye(D)
    text_embed = F.normalize(torch.stack([basis[0] + 0.5 * basis[1], basis[2]]), dim=-1)
    # caption 0: dot products 0, 0.89, 0.45 -> candidate 1; caption 1: 0, -1, 0.6 -> candidate 2
    candidates = torch.stack(
        [basis[3], basis[0], basis[1], basis[4], -basis[2], F.normalize(0.6 * basis[2] + 0.8 * basis[5], dim=0)]
    )
    expected = candidates[[1, 5]]
    torch.testing.assert_close(select_best_candidates(candidates, text_embed, 3), expected)

    prior = make_prior()  # identity statistics: the sampler's output is the embedding
    text = make_text(2, seed=14)
    text = TextEncoding(text_embed, text.tokens, text.mask)
    fixed = FixedSampler(candidates)
    out = prior.sample(text, sampler=fixed, generator=torch.Generator(), guidance_scale=4.0, candidates=3)
    torch.testing.assert_close(out, expected)
    (shape, denoiser), = fixed.calls
    assert shape == (6, D) and denoiser.guidance_scale == 4.0
    # each caption repeated N times, in order, as the candidates' conditioning
    torch.testing.assert_close(denoiser.cond.text_embed, text_embed.repeat_interleave(3, dim=0))


def test_sampling_is_deterministic_under_a_seeded_generator():
    prior = make_prior()
    text = make_text(2, seed=15)
    first = prior.sample(text, sampler=HandDDIM(4), generator=torch.Generator().manual_seed(1), guidance_scale=2.0)
    again = prior.sample(text, sampler=HandDDIM(4), generator=torch.Generator().manual_seed(1), guidance_scale=2.0)
    other = prior.sample(text, sampler=HandDDIM(4), generator=torch.Generator().manual_seed(2), guidance_scale=2.0)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(2))


def test_missing_sampler_is_a_one_line_error():
    with pytest.raises(UnclipError, match="diffusion prior needs a sampler") as info:
        make_prior().sample(make_text(1, seed=0), sampler=None, generator=torch.Generator())
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- weights
def test_safetensors_round_trip_into_a_fresh_prior(tmp_path):
    prior = make_prior(seed=0)
    prior.fit_normalization(torch.randn(32, D, generator=torch.Generator().manual_seed(16)))
    with torch.no_grad():
        prior.null_text_mask[4:] = False
    path = tmp_path / "prior.safetensors"
    save_file(prior.state_dict(), str(path))

    fresh = make_prior(seed=1)
    text = make_text(2, seed=17)
    x_t, t = noised(2, seed=18)
    cond = PriorCondition(text.embed, text.tokens, text.mask, torch.tensor([False, True]))
    assert not torch.allclose(fresh(x_t, t, cond), prior(x_t, t, cond))
    fresh.load_state_dict(load_file(str(path)))
    torch.testing.assert_close(fresh(x_t, t, cond), prior(x_t, t, cond), rtol=0, atol=0)
    torch.testing.assert_close(fresh.unnormalize(x_t), prior.unnormalize(x_t), rtol=0, atol=0)
    assert fresh.null_text_mask.tolist() == [True] * 4 + [False] * 4


# ---------------------------------------------------------------------------- training
def test_fit_normalization_sets_per_dimension_statistics():
    prior = make_prior()
    embeds = torch.randn(100, D, generator=torch.Generator().manual_seed(19)) * torch.arange(1, D + 1) + 3.0
    prior.fit_normalization(embeds)
    normalised = prior.normalize(embeds)
    torch.testing.assert_close(normalised.mean(0), torch.zeros(D), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised.std(0), torch.ones(D), atol=1e-5, rtol=0)
    torch.testing.assert_close(prior.unnormalize(normalised), embeds, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match=r"fit_normalization needs \[N, 16\]"):
        prior.fit_normalization(torch.randn(10, D + 1))


def test_training_loss_is_the_x0_mse_of_the_paper():
    """At a fixed timestep and noise the loss is ||f(x_t, t, z_t) − x0||² (mean), x0 normalised."""
    prior = make_prior(text_drop_prob=0.0)
    prior.fit_normalization(torch.randn(32, D, generator=torch.Generator().manual_seed(20)))
    text = make_text(4, seed=21)
    image_embed = F.normalize(torch.randn(4, D, generator=torch.Generator().manual_seed(22)), dim=-1)
    generator = torch.Generator().manual_seed(23)
    loss = prior.training_loss({"image_embed": image_embed, "text": text}, generator)

    replay = torch.Generator().manual_seed(23)  # same draws, in the loss's order: t, then noise
    t = torch.randint(0, 1000, (4,), generator=replay)
    noise = torch.randn(4, D, generator=replay)
    abar = prior.schedule.alpha_bar(t).float()[:, None]
    x0 = (image_embed - prior.transformer.clip_mean) / prior.transformer.clip_std
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    expected = (prior(x_t, t, PriorCondition.from_text(text)) - x0).pow(2).mean()
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-5)


def test_training_loss_is_seeded_and_drops_captions():
    prior = make_prior(text_drop_prob=0.5)
    batch = {"image_embed": torch.randn(8, D, generator=torch.Generator().manual_seed(24)), "text": make_text(8, 25)}
    first = prior.training_loss(batch, torch.Generator().manual_seed(3))
    again = prior.training_loss(batch, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert first != prior.training_loss(batch, torch.Generator().manual_seed(4))

    seen = []
    original = prior.forward
    prior.forward = lambda x_t, t, cond: seen.append(cond.drop_text.clone()) or original(x_t, t, cond)
    for seed in range(5):
        prior.training_loss(batch, torch.Generator().manual_seed(seed))
    drops = torch.stack(seen).float()
    assert 0.0 < drops.mean() < 1.0  # some captions dropped, not all
    with pytest.raises(InputError, match="lacks 'image_embed'"):
        prior.training_loss({"text": batch["text"]}, torch.Generator())


def test_training_loss_decreases_with_adamw():
    prior = make_prior(seed=2).train()
    batch = {
        "image_embed": F.normalize(torch.randn(8, D, generator=torch.Generator().manual_seed(26)), dim=-1),
        "text": make_text(8, seed=27),
    }
    prior.fit_normalization(batch["image_embed"])

    def evaluation_loss() -> float:
        with torch.no_grad():
            return float(
                sum(prior.training_loss(batch, torch.Generator().manual_seed(100 + i)) for i in range(4)) / 4
            )

    before = evaluation_loss()
    optimiser = torch.optim.AdamW([p for p in prior.parameters() if p.requires_grad], lr=3e-3)
    generator = torch.Generator().manual_seed(28)
    for _ in range(30):
        optimiser.zero_grad()
        prior.training_loss(batch, generator).backward()
        optimiser.step()
    after = evaluation_loss()
    assert after < 0.7 * before, (before, after)
    # the embedding statistics are data, not trained
    assert not prior.transformer.clip_std.requires_grad and not prior.transformer.clip_mean.requires_grad


# ---------------------------------------------------------------------------- registration
def test_registered_through_its_entry_point_and_declares_what_it_builds(monkeypatch):
    from unclip_core.registry import discover

    monkeypatch.setenv("UNCLIP_PLUGINS", "diffusion-prior")
    registry = discover()
    spec = registry.get("prior", "diffusion-prior")
    config = spec.config_model(**TINY)
    prior = spec.build(config)
    assert isinstance(prior, DiffusionPrior) and spec.summary
    declared = prior.declared
    assert declared.needs_sampler is True
    assert declared.embed_dim == prior.transformer.config.embedding_dim == D
    assert declared.context_length == prior.transformer.config.num_embeddings == L
    assert declared.text_width == prior.text_proj.in_features == W
    # and the declared sizes are exactly what forward accepts
    text = make_text(1, seed=29, width=declared.text_width)
    x_t, t = noised(1, seed=30)
    assert prior(x_t, t, PriorCondition.from_text(text)).shape == (1, declared.embed_dim)
    with pytest.raises(Exception, match="extra"):
        spec.config_model(**TINY, unknown_setting=1)
