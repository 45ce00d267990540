"""The Stable unCLIP decoder (``stable-unclip-decoder``): Stable Diffusion 2.1's UNet, in an
autoencoder's latent space, conditioned on a noise-augmented CLIP image embedding and a caption.

* The image embedding is noised to the configured ``noise_level`` (:mod:`.noising`, drawn in
  :meth:`prepare_condition` from the call's generator) and becomes the UNet's class label
  (``class_embed_type="projection"``: projected and added to the timestep embedding).
* The caption goes through SD's own CLIP text tower (:mod:`.captions`), whose last hidden
  states are the cross-attention context.
* Classifier-free guidance as diffusers' ``StableUnCLIPPipeline``: the unconditional branch
  reads a class label of zeros and the negative prompt's (or ``""``'s) encoding.

The UNet, the image normaliser and the text tower are kept whole under diffusers' and
transformers' names (``unet.*``, ``image_normalizer.*``, ``captions.model.*``), so a Stable
unCLIP folder's weights load as saved.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unclip_core import DecoderCondition, InputError, NoiseSchedule, TextEncoding
from unclip_core.interfaces import LatentDecoder

from .captions import CaptionEncoder
from .config import StableUnclipDecoderConfig
from .noising import noise_image_embeddings, noising_scheduler

NAME = "stable-unclip-decoder"


class StableUnclipDecoder(LatentDecoder[StableUnclipDecoderConfig]):
    """SD's UNet on noise-augmented CLIP image embeddings, with SD's caption encoder."""

    variance_type = "fixed_small"

    def __init__(self, config: StableUnclipDecoderConfig):
        super().__init__(config)
        from diffusers import UNet2DConditionModel
        from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

        self.prediction_type = config.prediction_type
        self._schedule = NoiseSchedule.from_name(
            config.beta_schedule, config.num_train_timesteps, config.beta_start, config.beta_end
        )
        self.unet = UNet2DConditionModel.from_config(config.unet)
        self.image_normalizer = StableUnCLIPImageNormalizer(embedding_dim=config.embed_dim)
        self.captions = CaptionEncoder(config.text_encoder, config.tokenizer, config.context_length)
        self.noising = noising_scheduler(config.noising_scheduler)

    @property
    def schedule(self) -> NoiseSchedule:
        return self._schedule

    # ------------------------------------------------------------------ conditioning
    def encode_captions(self, prompts: Sequence[str]) -> TextEncoding:
        return self.captions(prompts)

    def prepare_condition(self, cond: DecoderCondition, generator: torch.Generator) -> DecoderCondition:
        embed = cond.image_embed.to(device=self.device, dtype=self.dtype)
        batch, dim = embed.shape[0], self.config.embed_dim
        if embed.ndim != 2 or embed.shape[1] != dim:
            raise InputError(f"{NAME}: image_embed must be [{batch}, {dim}], got {list(embed.shape)}")
        noised = noise_image_embeddings(embed, self.config.noise_level, self.image_normalizer, self.noising, generator)
        cond.noised_image_embed = noised
        return cond

    def forward(self, x_t: Tensor, t: Tensor, cond: DecoderCondition) -> Tensor:  # type: ignore[override]
        batch = x_t.shape[0]
        if x_t.ndim != 4 or x_t.shape[1] != self.in_channels:
            raise InputError(f"{NAME}: x_t must be [B, {self.in_channels}, h, w] latents, got {list(x_t.shape)}")
        if cond.noised_image_embed is None:
            raise InputError(f"{NAME}: the condition has no noised image embedding; prepare_condition draws it")
        label = cond.noised_image_embed.to(device=x_t.device, dtype=self.dtype)
        drop_image = torch.as_tensor(cond.drop_image, device=x_t.device).bool()
        if label.shape != (batch, 2 * self.config.embed_dim) or drop_image.shape != (batch,):
            raise InputError(f"{NAME}: condition batch {list(label.shape)} / {list(drop_image.shape)} for {batch} latents")
        label = torch.where(drop_image[:, None], torch.zeros_like(label), label)
        context = self._context(cond, batch)
        t = torch.as_tensor(t, device=x_t.device).long().expand(batch)
        return self.unet(x_t.to(self.dtype), t, encoder_hidden_states=context, class_labels=label, return_dict=False)[0]

    def _context(self, cond: DecoderCondition, batch: int) -> Tensor:
        """SD's caption tokens, ``""``'s encoding in the rows ``drop_text`` selects (and in
        every row when the condition carries no caption of this decoder's width)."""
        tokens = cond.text_tokens
        width = self.config.unet["cross_attention_dim"]
        drop = torch.as_tensor(cond.drop_text, device=self.device).bool()
        if tokens is None or bool(drop.all()):
            return self.captions.empty(batch).tokens.to(self.dtype)
        if tokens.ndim != 3 or tokens.shape[0] != batch or tokens.shape[2] != width:
            raise InputError(
                f"{NAME}: text_tokens must be [{batch}, L, {width}] (SD's caption encoding, encode_captions), "
                f"got {list(tokens.shape)}"
            )
        tokens = tokens.to(device=self.device, dtype=self.dtype)
        if bool(drop.any()):
            tokens = torch.where(drop[:, None, None], self.captions.empty(batch).tokens.to(self.dtype), tokens)
        return tokens
