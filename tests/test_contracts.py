"""The contract suite (:mod:`unclip_core.contracts`) on every built-in component, and on
deliberately broken ones: each broken promise must make the matching check fail with a
message that names it, so a passing suite means something."""
from __future__ import annotations

import io
import tarfile

import dataclasses
from pathlib import Path

import pytest
import yaml
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from unclip_core import ComponentConfig, Declared, Prior
from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.contracts import (
    check_component,
    check_config_rejects_unknown_settings,
    check_dataset,
    check_declared_matches,
    check_decoder,
    check_determinism,
    check_encoder,
    check_prior,
    check_sampler,
    check_state_dict_roundtrip,
    check_train_step_reduces_loss,
    check_upsampler,
    make_exact_denoiser,
    make_text_encoding,
    make_training_batch,
)


# --------------------------------------------------------------------------------------
# Every built-in component passes
# --------------------------------------------------------------------------------------
TINY_HF_CLIP = {
    "text_config": {
        "vocab_size": 100, "hidden_size": 32, "intermediate_size": 37, "projection_dim": 16,
        "num_hidden_layers": 1, "num_attention_heads": 4, "max_position_embeddings": 32,
        "bos_token_id": 63, "eos_token_id": 64, "pad_token_id": 64,
    },
    "vision_config": {
        "hidden_size": 32, "intermediate_size": 37, "projection_dim": 16, "num_hidden_layers": 1,
        "num_attention_heads": 4, "image_size": 32, "patch_size": 8,
    },
    "tokenizer": str(Path(__file__).parent / "data" / "tiny-clip-tokenizer"),
}
"""A tiny ``hf-clip`` encoder (the tokenizer folder holds a 65-token vocabulary)."""


TINY_STABLE_UNCLIP = {
    "unet": {
        "sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64], "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "attention_head_dim": [2, 4], "class_embed_type": "projection", "projection_class_embeddings_input_dim": 32,
        "cross_attention_dim": 32, "use_linear_projection": True,
    },
    "text_encoder": {k: v for k, v in TINY_HF_CLIP["text_config"].items() if k != "projection_dim"},
    "tokenizer": TINY_HF_CLIP["tokenizer"],
    "image_size": 8,
    "noise_level": 100,
}
"""A tiny ``stable-unclip-decoder`` (16-dim embeddings, SD's caption tower 32 wide)."""

TINY_LATENT = yaml.safe_load((Path(__file__).parent / "recipes" / "tiny-latent.yaml").read_text())
"""A Kandinsky 2.2 decoder over a VQ autoencoder, in tiny sizes."""


def _tiny_settings(tiny_recipe_data: dict, tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Tiny settings for every built-in component, mostly from tests/recipes/tiny.yaml."""
    recipe = tiny_recipe_data
    upsampler = recipe["upsamplers"][0]
    folder = tmp_path_factory.mktemp("image-folder")
    from PIL import Image

    Image.new("RGB", (20, 12), (200, 30, 30)).save(folder / "red.png")
    (folder / "red.txt").write_text("a red rectangle")
    shards = tmp_path_factory.mktemp("shards")
    with tarfile.open(shards / "00000.tar", "w") as tar:
        for key, colour in (("a", (200, 30, 30)), ("b", (30, 30, 200))):
            png = io.BytesIO()
            Image.new("RGB", (20, 12), colour).save(png, format="PNG")
            for suffix, data in ((".png", png.getvalue()), (".txt", f"a {key} rectangle".encode())):
                info = tarfile.TarInfo(key + suffix)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return {
        ("encoder", recipe["encoder"]["type"]): recipe["encoder"]["config"],
        ("prior", recipe["prior"]["type"]): recipe["prior"]["config"],
        ("prior", "ar-prior"): {
            "embed_dim": 16, "text_width": 32, "context_length": 16, "pca_dims": 6, "num_buckets": 32,
            "dot_buckets": 8, "num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 8,
        },
        ("decoder", recipe["decoder"]["type"]): recipe["decoder"]["config"],
        ("upsampler", upsampler["type"]): upsampler["config"],
        ("sampler", "ddim"): {"steps": 3},
        ("sampler", "ddpm"): {"steps": 3},
        ("sampler", "dpm-solver++"): {"steps": 3},
        ("sampler", "diffusers-scheduler"): {"scheduler": "EulerDiscreteScheduler", "steps": 3},
        ("encoder", "hf-clip"): TINY_HF_CLIP,
        ("sampler", "unclip-scheduler"): {"steps": 3, "exact_float32": False},
        ("dataset", "shapes"): {"size": 16, "length": 4},
        ("dataset", "image-folder"): {"root": str(folder), "size": 16},
        ("dataset", "shards"): {"urls": str(shards / "00000.tar"), "size": 16},
        ("evaluation", "shapes"): {"prompts_per_group": 2, "diversity_prompts": 1},
        ("decoder", "kandinsky22-decoder"): TINY_LATENT["decoder"]["config"],
        ("autoencoder", "vq"): TINY_LATENT["decoder"]["autoencoder"]["config"],
        ("decoder", "stable-unclip-decoder"): TINY_STABLE_UNCLIP,
        ("sampler", "diffusers-saved-scheduler"): {
            "scheduler": "DDIMScheduler", "scheduler_config": {"beta_schedule": "squaredcos_cap_v2"}, "steps": 3,
        },
        ("autoencoder", "kl"): {"block_out_channels": [16, 32], "down_block_types": ["DownEncoderBlock2D"] * 2,
                                "up_block_types": ["UpDecoderBlock2D"] * 2, "norm_num_groups": 8},
    }


@pytest.fixture(scope="module")
def tiny_settings(tiny_recipe_data, tmp_path_factory):
    return _tiny_settings(tiny_recipe_data, tmp_path_factory)


def test_every_built_in_component_has_tiny_settings_here(registry, tiny_settings):
    built_ins = {(s.kind, s.name) for s in registry.all_components() if s.provider.distribution == "unclip"}
    assert built_ins == set(tiny_settings), "add tiny settings for new built-ins so the contract suite covers them"


@pytest.mark.parametrize(
    "kind, name",
    [
        ("encoder", "open-clip"),
        ("prior", "diffusion-prior"),
        ("prior", "ar-prior"),
        ("decoder", "unclip-decoder"),
        ("upsampler", "unet-upsampler"),
        ("sampler", "ddim"),
        ("sampler", "ddpm"),
        ("sampler", "dpm-solver++"),
        ("sampler", "diffusers-scheduler"),
        ("encoder", "hf-clip"),
        ("sampler", "unclip-scheduler"),
        ("dataset", "shapes"),
        ("dataset", "image-folder"),
        ("dataset", "shards"),
        ("evaluation", "shapes"),
        ("decoder", "kandinsky22-decoder"),
        ("decoder", "stable-unclip-decoder"),
        ("sampler", "diffusers-saved-scheduler"),
        ("autoencoder", "vq"),
        ("autoencoder", "kl"),
    ],
)
def test_built_in_component_keeps_the_contract(registry, tiny_settings, kind, name):
    if name in ("hf-clip", "stable-unclip-decoder"):
        pytest.importorskip("transformers")
    spec = registry.get(kind, name)
    config = spec.config_model.model_validate(tiny_settings[(kind, name)])
    check_component(kind, spec.factory, config, stochastic=True if kind == "prior" else None)


def test_decoder_with_learned_variance_and_v_prediction(registry, tiny_settings):
    spec = registry.get("decoder", "unclip-decoder")
    settings = {**tiny_settings[("decoder", "unclip-decoder")], "variance_type": "learned_range", "prediction_type": "v"}
    check_component("decoder", spec.factory, spec.config_model.model_validate(settings))


# --------------------------------------------------------------------------------------
# Inputs for plugin authors, against hand-computed references
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_exact_denoiser_returns_what_a_perfect_model_would(prediction_type):
    from diffusers import DDPMScheduler

    schedule = NoiseSchedule.from_name("cosine", 1000)
    betas = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").betas.double()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 250, 700, 999])
    abar = torch.cumprod(1 - betas, dim=0)[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    expected = {"eps": noise, "x0": x0, "v": abar.sqrt() * noise - (1 - abar).sqrt() * x0}[prediction_type]
    denoiser = make_exact_denoiser(x0, schedule, prediction_type=prediction_type)
    torch.testing.assert_close(denoiser(x_t, t), expected, atol=1e-5, rtol=1e-5)

    learned = make_exact_denoiser(x0, schedule, prediction_type=prediction_type, variance_type="learned_range")
    out = learned(x_t, t)
    assert out.shape == (4, 6, 8, 8) and torch.equal(out[:, 3:], torch.zeros(4, 3, 8, 8, dtype=torch.float64))


def test_text_encoding_helper_looks_like_an_encoders_output():
    text = make_text_encoding(5, 16, 8, 12, torch.Generator().manual_seed(1))
    assert text.embed.shape == (5, 16) and text.tokens.shape == (5, 8, 12) and text.mask.shape == (5, 8)
    torch.testing.assert_close(text.embed.norm(dim=-1), torch.ones(5))
    lengths = text.mask.sum(dim=1)
    assert bool((lengths >= 1).all())
    assert torch.equal(text.mask, torch.arange(8)[None] < lengths[:, None]), "mask must mark a prefix of real tokens"
    again = make_text_encoding(5, 16, 8, 12, torch.Generator().manual_seed(1))
    assert torch.equal(again.tokens, text.tokens) and torch.equal(again.mask, text.mask)


def test_checks_leave_the_global_rng_alone(registry):
    spec = registry.get("sampler", "ddpm")
    state = torch.get_rng_state()
    check_component("sampler", spec.factory, spec.config_model(steps=2))
    assert torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------------------------------------
# Broken components make the matching check fail
# --------------------------------------------------------------------------------------
class NoisyConfig(ComponentConfig):
    embed_dim: int = 8
    noise: float = 0.5

    def declares(self) -> Declared:
        return Declared(embed_dim=self.embed_dim, needs_sampler=False)


class NoisyPrior(Prior[NoisyConfig]):
    """A correct sampler-free prior: the best of N noisy copies of the caption embedding."""

    def sample(self, text, *, sampler=None, generator, guidance_scale=1.0, candidates=1, callback=None):
        noise = self.draw((candidates, *text.embed.shape), generator)
        samples = F.normalize(text.embed + self.config.noise * noise, dim=-1)
        return self.choose(samples, text.embed)

    def draw(self, shape, generator):
        return torch.randn(shape, generator=generator)

    def choose(self, samples, embed):
        best = (samples * embed).sum(-1).argmax(dim=0)
        return samples[best, torch.arange(embed.shape[0])]


def test_the_correct_reference_prior_passes():
    check_component("prior", NoisyPrior, NoisyConfig(), stochastic=True)


def test_prior_drawing_from_the_global_rng_fails():
    class GlobalRngPrior(NoisyPrior):
        def draw(self, shape, generator):
            return torch.randn(shape)

    with pytest.raises(AssertionError, match="prior GlobalRngPrior: sample .*global RNG"):
        check_determinism(GlobalRngPrior(NoisyConfig()))


def test_prior_ignoring_the_generator_seed_fails_when_stochastic():
    class FixedSeedPrior(NoisyPrior):
        def draw(self, shape, generator):
            return torch.randn(shape, generator=torch.Generator().manual_seed(0))

    prior = FixedSeedPrior(NoisyConfig())
    check_determinism(prior)  # deterministic, so only the promise of stochasticity catches it
    with pytest.raises(AssertionError, match="identical results for generator seeds 0 and 1"):
        check_determinism(prior, stochastic=True)


def test_prior_ignoring_candidates_fails():
    class FirstCandidatePrior(NoisyPrior):
        def choose(self, samples, embed):
            return samples[0]

    with pytest.raises(AssertionError, match="FirstCandidatePrior: with candidates=8 the embeddings are no closer"):
        check_prior(FirstCandidatePrior(NoisyConfig()))


def test_prior_producing_other_sizes_than_declared_fails():
    class TruncatingPrior(NoisyPrior):
        def sample(self, text, **kwargs):
            return super().sample(text, **kwargs)[:, :4]

    with pytest.raises(AssertionError, match=r"declares embed_dim=8 but sample gives \[2, 4\]"):
        check_declared_matches(TruncatingPrior(NoisyConfig()))


def test_config_accepting_unknown_keys_fails():
    class LaxConfig(NoisyConfig):
        model_config = ConfigDict(extra="allow")

    with pytest.raises(AssertionError, match="accepted the unknown setting 'surely_not_a_setting'"):
        check_config_rejects_unknown_settings(LaxConfig, LaxConfig())

    class PlainConfig(BaseModel):
        model_config = ConfigDict(extra="forbid")

    with pytest.raises(AssertionError, match="must derive from unclip_core.ComponentConfig"):
        check_config_rejects_unknown_settings(PlainConfig)


class ProjectedPrior(NoisyPrior):
    """Applies a random projection fixed at construction (random-features style)."""

    def __init__(self, config):
        super().__init__(config)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.register_buffer("projection", torch.randn(config.embed_dim, config.embed_dim), persistent=False)

    def sample(self, text, **kwargs):
        return F.normalize(super().sample(text, **kwargs) @ self.projection * self.scale, dim=-1)


def test_state_missing_from_the_state_dict_fails():
    with pytest.raises(AssertionError, match="buffer.s. projection are not restored"):
        check_state_dict_roundtrip(ProjectedPrior, NoisyConfig())

    class AttributePrior(ProjectedPrior):
        def __init__(self, config):
            super().__init__(config)
            self.projection = self._buffers.pop("projection")  # a plain attribute now, not a buffer

    with pytest.raises(AssertionError, match="sample differs after saving its weights"):
        check_state_dict_roundtrip(AttributePrior, NoisyConfig())


@pytest.fixture(scope="module")
def decoder_parts(registry, tiny_recipe_data):
    spec = registry.get("decoder", "unclip-decoder")
    return spec.factory, spec.config_model.model_validate(tiny_recipe_data["decoder"]["config"])


def test_decoder_ignoring_drop_image_fails(decoder_parts):
    factory, config = decoder_parts

    class DeafDecoder(factory):
        def forward(self, x_t, t, cond):
            return super().forward(x_t, t, dataclasses.replace(cond, drop_image=torch.zeros_like(cond.drop_image)))

    with pytest.raises(AssertionError, match="DeafDecoder: setting drop_image does not change its prediction"):
        check_decoder(DeafDecoder(config).eval())


def test_decoder_whose_denoiser_is_not_its_forward_fails(decoder_parts):
    factory, config = decoder_parts

    class OverguidedDecoder(factory):
        def denoiser(self, cond, guidance_scale=1.0):
            return super().denoiser(cond, guidance_scale + 1.0)

    with pytest.raises(AssertionError, match=r"denoiser\(cond, guidance_scale=1\) must equal the plain forward call"):
        check_decoder(OverguidedDecoder(config).eval())


@pytest.fixture(scope="module")
def upsampler_parts(registry, tiny_recipe_data):
    spec = registry.get("upsampler", "unet-upsampler")
    return spec.factory, spec.config_model.model_validate(tiny_recipe_data["upsamplers"][0]["config"])


def test_upsampler_ignoring_its_condition_fails(upsampler_parts):
    factory, config = upsampler_parts

    class BlindUpsampler(factory):
        def forward(self, x_t, t, cond):
            return super().forward(x_t, t, type(cond)(torch.zeros_like(cond.low_res)))

    with pytest.raises(AssertionError, match="does not depend on the low-resolution condition"):
        check_upsampler(BlindUpsampler(config).eval())


def test_training_loss_that_does_not_train_fails(upsampler_parts):
    factory, config = upsampler_parts

    class InferenceOnlyUpsampler(factory):
        forward = torch.no_grad()(factory.forward)  # a speed-up that also stops training

    class DetachedUpsampler(factory):
        def training_loss(self, batch, generator):
            loss = super().training_loss(batch, generator).detach()
            return loss + 0 * self.unet.conv_in.bias.sum()  # has a gradient, but none that helps

    batch = make_training_batch("upsampler", factory(config).declared)
    with pytest.raises(AssertionError, match="InferenceOnlyUpsampler: training_loss returned a tensor that carries no gradient"):
        check_train_step_reduces_loss(InferenceOnlyUpsampler(config), batch)
    with pytest.raises(AssertionError, match="DetachedUpsampler: training_loss did not decrease over 5 AdamW steps"):
        check_train_step_reduces_loss(DetachedUpsampler(config), batch)


def test_encoder_with_unnormalised_embeddings_fails(registry, tiny_recipe_data):
    from unclip_plugins.open_clip_encoder import OpenClipConfig, OpenClipEncoder

    class LongEncoder(OpenClipEncoder):
        def encode_text(self, prompts):
            text = super().encode_text(prompts)
            return dataclasses.replace(text, embed=2 * text.embed)

    encoder = LongEncoder(OpenClipConfig.model_validate(tiny_recipe_data["encoder"]["config"])).eval()
    with pytest.raises(AssertionError, match="encode_text embed must be unit-norm"):
        check_encoder(encoder)


@pytest.fixture(scope="module")
def ddim(registry):
    spec = registry.get("sampler", "ddim")
    return spec.factory, spec.config_model(steps=4)


def test_sampler_with_a_parameterisation_bug_fails(ddim):
    factory, config = ddim

    class Halved:
        """The model's prediction scaled, as a sampler mixing up eps and v conversions might see it."""

        def __init__(self, denoiser):
            self.inner = denoiser

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, x_t, t):
            return 0.5 * self.inner(x_t, t)

    class HalfEpsSampler(factory):
        def sample(self, denoiser, shape, **kwargs):
            return super().sample(Halved(denoiser), shape, **kwargs)

    with pytest.raises(AssertionError, match="with an exact denoiser sample must return the clean sample x0"):
        check_sampler(HalfEpsSampler(config))


def test_sampler_skipping_the_callback_fails(ddim):
    factory, config = ddim

    class SilentSampler(factory):
        def sample(self, denoiser, shape, *, generator, x_T=None, callback=None):
            return super().sample(denoiser, shape, generator=generator, x_T=x_T)

    with pytest.raises(AssertionError, match="SilentSampler: never called the callback"):
        check_sampler(SilentSampler(config))


def test_sampler_drawing_x_T_from_the_global_rng_fails(ddim):
    factory, config = ddim

    class GlobalNoiseSampler(factory):
        def sample(self, denoiser, shape, *, generator, x_T=None, callback=None):
            x_T = torch.randn(tuple(shape)) if x_T is None else x_T
            return super().sample(denoiser, shape, generator=generator, x_T=x_T, callback=callback)

    with pytest.raises(AssertionError, match="sampler GlobalNoiseSampler: sample gave different results .* global RNG"):
        check_determinism(GlobalNoiseSampler(config))


def test_dataset_with_images_outside_the_range_fails():
    class ByteImages(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return {"image": torch.full((3, 8, 8), 255.0), "caption": "a white square"}

    with pytest.raises(AssertionError, match="dataset ByteImages: item 0's image has values outside"):
        check_dataset(ByteImages())
