"""Small random Stable unCLIP folders, built the way diffusers' own pipeline tests build their
dummy components (``tests/pipelines/stable_unclip/test_stable_unclip.py`` and
``test_stable_unclip_img2img.py``: 32-wide CLIP towers, a one-layer PriorTransformer, a
two-level 32 px ``UNet2DConditionModel`` with the noised image embedding as its projected class
label, ``AutoencoderKL()``, a DDPM prior scheduler, a DDIM v-prediction decoder scheduler and a
squared-cosine image-noising scheduler), with two changes: the tokenizer is the tiny local one
(``tests/data/tiny-clip-tokenizer``; no hub), and the parameters diffusers initialises to zero
or constants — the prior's position embeddings, query token and embedding statistics, the image
normaliser's mean and standard deviation — are randomised, so every stage shapes the image and a
mistake anywhere shows.

Shared by the Stable unCLIP parity, importer and mixed-system tests and by
``bench/stable_unclip_vs_diffusers.py`` (which builds medium sizes with ``changes``).
"""
from __future__ import annotations

from pathlib import Path

import torch

TOKENIZER = Path(__file__).parent / "data" / "tiny-clip-tokenizer"

EMBED = 32
TEXT_ENCODER = dict(
    hidden_size=EMBED, projection_dim=EMBED, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4,
    num_hidden_layers=5, vocab_size=1000,
)
PRIOR = dict(num_attention_heads=2, attention_head_dim=12, embedding_dim=EMBED, num_layers=1)
IMAGE_ENCODER = dict(
    hidden_size=EMBED, projection_dim=EMBED, num_hidden_layers=5, num_attention_heads=4, image_size=32,
    intermediate_size=37, patch_size=1,
)
UNET = dict(
    sample_size=32,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64),
    attention_head_dim=(2, 4),
    class_embed_type="projection",
    projection_class_embeddings_input_dim=EMBED * 2,
    cross_attention_dim=EMBED,
    layers_per_block=1,
    upcast_attention=True,
    use_linear_projection=True,
)
VAE: dict = {}
PRIOR_SCHEDULER = dict(
    variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000, clip_sample=True,
    clip_sample_range=5.0, beta_schedule="squaredcos_cap_v2",
)
SCHEDULER = dict(
    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
    set_alpha_to_one=False, steps_offset=1,
)
NOISING_SCHEDULER = dict(beta_schedule="squaredcos_cap_v2")


def _tokenizer(tokenizer: Path):
    import transformers

    loaded = transformers.CLIPTokenizer.from_pretrained(str(tokenizer), local_files_only=True)
    vocab = loaded.get_vocab()
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]}
    return loaded, special


def _settings(changes: dict, part: str, defaults: dict) -> dict:
    return {**defaults, **changes.get(part, {})}


def decoder_components(seed: int = 0, tokenizer: Path = TOKENIZER, **changes: dict) -> dict:
    """The parts every Stable unCLIP folder has: image normaliser and noising scheduler, the
    SD text encoder and tokenizer, UNet, scheduler and VAE (``changes[part]`` updates a part's
    settings: ``text_encoder``, ``unet``, ``vae``, ``scheduler``, ``noising_scheduler``)."""
    import transformers
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    loaded, special = _tokenizer(tokenizer)
    unet_settings = _settings(changes, "unet", UNET)
    embed = unet_settings["projection_class_embeddings_input_dim"] // 2
    torch.manual_seed(seed)
    image_normalizer = StableUnCLIPImageNormalizer(embedding_dim=embed)
    torch.manual_seed(seed)
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(**special, **_settings(changes, "text_encoder", {**TEXT_ENCODER, "hidden_size": unet_settings["cross_attention_dim"]}))
    )
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_settings)
    torch.manual_seed(seed)
    vae = AutoencoderKL(**_settings(changes, "vae", VAE))

    # What diffusers leaves at constants (it expects trained statistics), made to matter.
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        image_normalizer.mean.normal_(0, 0.5, generator=generator)
        image_normalizer.std.uniform_(0.5, 1.5, generator=generator)
    return {
        "image_normalizer": image_normalizer,
        "image_noising_scheduler": DDPMScheduler(**_settings(changes, "noising_scheduler", NOISING_SCHEDULER)),
        "tokenizer": loaded,
        "text_encoder": text_encoder,
        "unet": unet,
        "scheduler": DDIMScheduler(**_settings(changes, "scheduler", SCHEDULER)),
        "vae": vae,
    }


def prior_components(seed: int = 0, tokenizer: Path = TOKENIZER, **changes: dict) -> dict:
    """A StableUnCLIPPipeline's prior parts (``prior_tokenizer``, ``prior_text_encoder``,
    ``prior``, ``prior_scheduler``), its zero-initialised parameters randomised."""
    import transformers
    from diffusers import DDPMScheduler, PriorTransformer

    loaded, special = _tokenizer(tokenizer)
    torch.manual_seed(seed)
    text_encoder = transformers.CLIPTextModelWithProjection(
        transformers.CLIPTextConfig(**special, **_settings(changes, "prior_text_encoder", TEXT_ENCODER))
    )
    torch.manual_seed(seed)
    prior = PriorTransformer(**_settings(changes, "prior", PRIOR))
    randomise_prior(prior, seed)
    return {
        "prior_tokenizer": loaded,
        "prior_text_encoder": text_encoder,
        "prior": prior,
        "prior_scheduler": DDPMScheduler(**_settings(changes, "prior_scheduler", PRIOR_SCHEDULER)),
    }


def randomise_prior(prior, seed: int) -> None:
    """The PriorTransformer's zero-initialised position embeddings, query token and embedding
    statistics, drawn at random."""
    generator = torch.Generator().manual_seed(seed + 3)
    with torch.no_grad():
        prior.positional_embedding.normal_(0, 0.5, generator=generator)
        prior.prd_embedding.normal_(0, 0.5, generator=generator)
        prior.clip_mean.normal_(0, 0.5, generator=generator)
        prior.clip_std.uniform_(0.5, 1.5, generator=generator)


def image_encoder_components(seed: int = 0, **changes: dict) -> dict:
    """A StableUnCLIPImg2ImgPipeline's image parts (``feature_extractor``, ``image_encoder``)."""
    import transformers

    vision = _settings(changes, "image_encoder", IMAGE_ENCODER)
    torch.manual_seed(seed)
    image_encoder = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**vision))
    size = vision["image_size"]
    return {"feature_extractor": transformers.CLIPImageProcessor(crop_size=size, size=size), "image_encoder": image_encoder}


def save_text_to_image(folder: Path, seed: int = 0, **changes: dict) -> Path:
    """A StableUnCLIPPipeline folder (with its prior) at ``folder``."""
    from diffusers import StableUnCLIPPipeline

    with torch.random.fork_rng(devices=[]):
        parts = {**prior_components(seed, **changes), **decoder_components(seed, **changes)}
        StableUnCLIPPipeline(**parts).save_pretrained(folder, safe_serialization=True)
    return folder


def save_image_to_image(folder: Path, seed: int = 0, **changes: dict) -> Path:
    """A StableUnCLIPImg2ImgPipeline folder (image encoder, no prior) at ``folder``."""
    from diffusers import StableUnCLIPImg2ImgPipeline

    with torch.random.fork_rng(devices=[]):
        parts = {**image_encoder_components(seed, **changes), **decoder_components(seed, **changes)}
        StableUnCLIPImg2ImgPipeline(**parts).save_pretrained(folder, safe_serialization=True)
    return folder
