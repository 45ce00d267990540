"""Small random diffusers Kandinsky 2.2 folders, built the way diffusers' own tests build their
dummy components (``tests/pipelines/kandinsky2_2/``: a 32-wide CLIPTextModelWithProjection and
CLIPVisionModelWithProjection, a one-layer PriorTransformer, UnCLIPScheduler for the prior; a
two-level UNet2DConditionModel with ``addition_embed_type="image"``, a spatial-norm VQModel and
a DDIMScheduler for the decoder), with three changes: a tiny local tokenizer (no hub), a
smaller image tower (32 px, for speed), and every parameter diffusers initialises to zero or a
constant — the prior's position embeddings, query token and embedding statistics, every norm's
scale and shift — randomised, so each stage's input truly shapes the output.

Shared by the parity tests and bench/kandinsky22_vs_diffusers.py.
"""
from __future__ import annotations

from pathlib import Path

import torch

TOKENIZER = Path(__file__).parent / "data" / "tiny-clip-tokenizer"

TEXT_ENCODER = dict(hidden_size=32, projection_dim=32, intermediate_size=37, layer_norm_eps=1e-05,
                    num_attention_heads=4, num_hidden_layers=5, vocab_size=1000)
IMAGE_ENCODER = dict(hidden_size=32, image_size=32, projection_dim=32, intermediate_size=37, num_attention_heads=4,
                     num_channels=3, num_hidden_layers=5, patch_size=8)
PRIOR = dict(num_attention_heads=2, attention_head_dim=12, embedding_dim=32, num_layers=1)
UNET = dict(in_channels=4, out_channels=8, addition_embed_type="image",
            down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
            up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
            mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
            encoder_hid_dim=32, encoder_hid_dim_type="image_proj", cross_attention_dim=100, attention_head_dim=4,
            resnet_time_scale_shift="scale_shift", class_embed_type=None)
MOVQ = dict(block_out_channels=[32, 64], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
            in_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial",
            num_vq_embeddings=12, out_channels=3, up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
            vq_embed_dim=4)
PRIOR_SCHEDULER = dict(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                       clip_sample=True, clip_sample_range=10.0)
DECODER_SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
                         thresholding=False)
IMAGE_SIZE = 64
"""Pixels drawn (diffusers' test passes height=width=64); the latents are 32 px."""


def _randomise_constants(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Norm scales and shifts (initialised to 1 and 0) drawn at random."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and module.weight is not None:
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.2, generator=generator)


def prior_pipeline(seed: int = 0, **changes: dict):
    """diffusers' dummy KandinskyV22PriorPipeline (its test's sizes, ``changes[part]`` applied)."""
    import transformers
    from diffusers import KandinskyV22PriorPipeline, PriorTransformer, UnCLIPScheduler

    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(TOKENIZER), local_files_only=True)
    vocab = tokenizer.get_vocab()
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"], "pad_token_id": vocab["<|endoftext|>"]}
    torch.manual_seed(seed)
    text_encoder = transformers.CLIPTextModelWithProjection(
        transformers.CLIPTextConfig(**special, **{**TEXT_ENCODER, **changes.get("text_encoder", {})}))
    torch.manual_seed(seed)
    image_encoder = transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(**{**IMAGE_ENCODER, **changes.get("image_encoder", {})}))
    torch.manual_seed(seed)
    prior = PriorTransformer(**{**PRIOR, **changes.get("prior", {})})
    side = image_encoder.config.image_size
    processor = transformers.CLIPImageProcessor(
        crop_size=side, do_center_crop=True, do_normalize=True, do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3, size=side)
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        prior.positional_embedding.normal_(0, 0.5, generator=generator)
        prior.prd_embedding.normal_(0, 0.5, generator=generator)
        prior.clip_mean.normal_(0, 0.5, generator=generator)
        prior.clip_std.uniform_(0.5, 1.5, generator=generator)
    for model in (text_encoder, image_encoder, prior):
        _randomise_constants(model, generator)
    return KandinskyV22PriorPipeline(
        prior=prior, image_encoder=image_encoder, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=UnCLIPScheduler(**{**PRIOR_SCHEDULER, **changes.get("scheduler", {})}), image_processor=processor)


def decoder_pipeline(seed: int = 0, **changes: dict):
    """diffusers' dummy KandinskyV22Pipeline (its test's sizes, ``changes[part]`` applied)."""
    from diffusers import DDIMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**{**UNET, **changes.get("unet", {})})
    torch.manual_seed(seed)
    movq = VQModel(**{**MOVQ, **changes.get("movq", {})})
    generator = torch.Generator().manual_seed(seed + 3)
    for model in (unet, movq):
        _randomise_constants(model, generator)
    with torch.no_grad():  # the output convolution starts at zero in some diffusers versions
        unet.conv_out.weight.normal_(0, 0.005, generator=generator)
        movq.decoder.conv_out.weight.mul_(0.1)  # images mostly inside [-1, 1], not pinned at the clamp
    scheduler = DDIMScheduler(**{**DECODER_SCHEDULER, **changes.get("scheduler", {})})
    return KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)


def save_folders(root: Path, seed: int = 0, **changes: dict) -> tuple[Path, Path]:
    """Both dummy pipelines saved with ``save_pretrained`` under ``root``: ``(prior, decoder)``."""
    prior, decoder = root / "kandinsky-2-2-prior", root / "kandinsky-2-2-decoder"
    prior_pipeline(seed, **changes).save_pretrained(prior, safe_serialization=True)
    decoder_pipeline(seed, **changes).save_pretrained(decoder, safe_serialization=True)
    return prior, decoder


def load_reference(prior: Path, decoder: Path):
    """The combined diffusers pipeline loaded back from the folders (eval mode, as a user gets it)."""
    from diffusers import KandinskyV22CombinedPipeline, KandinskyV22Pipeline, KandinskyV22PriorPipeline

    prior_pipe = KandinskyV22PriorPipeline.from_pretrained(prior, local_files_only=True)
    decoder_pipe = KandinskyV22Pipeline.from_pretrained(decoder, local_files_only=True)
    for pipe in (prior_pipe, decoder_pipe):
        pipe.set_progress_bar_config(disable=True)
    combined = KandinskyV22CombinedPipeline(
        unet=decoder_pipe.unet, scheduler=decoder_pipe.scheduler, movq=decoder_pipe.movq,
        prior_prior=prior_pipe.prior, prior_image_encoder=prior_pipe.image_encoder,
        prior_text_encoder=prior_pipe.text_encoder, prior_tokenizer=prior_pipe.tokenizer,
        prior_scheduler=prior_pipe.scheduler, prior_image_processor=prior_pipe.image_processor)
    combined.set_progress_bar_config(disable=True)
    return combined, prior_pipe, decoder_pipe
