"""``kandinsky22-decoder``: Kandinsky 2.2's decoder, diffusers' ``UNet2DConditionModel`` with
``addition_embed_type="image"``, denoising MoVQ latents conditioned on a CLIP image embedding
alone (no caption).

Classifier-free guidance as Kandinsky's pipelines do it: the unconditional branch reads a
*negative image embedding* — the prior's sample for the negative prompt when there is one
(:attr:`DecoderCondition.negative_image_embed`), otherwise the image encoder's embedding of an
all-zero image, which ``unclip import kandinsky22`` computes once and stores here as
``null_image_embed`` (read where ``drop_image`` is set).
"""
from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from unclip_core import DecoderCondition, NoiseSchedule
from unclip_core.errors import InputError
from unclip_core.interfaces import LatentDecoder

from .decoder_config import Kandinsky22DecoderConfig

NAME = "kandinsky22-decoder"


def noise_schedule(config: Kandinsky22DecoderConfig) -> NoiseSchedule:
    return NoiseSchedule.from_name(config.beta_schedule, config.num_train_timesteps, config.beta_start, config.beta_end)


class Kandinsky22Decoder(LatentDecoder[Kandinsky22DecoderConfig]):
    """The UNet kept whole as ``self.unet`` (diffusers' parameter names), predicting eps."""

    prediction_type = "eps"

    def __init__(self, config: Kandinsky22DecoderConfig):
        super().__init__(config)
        self.variance_type = config.variance_type
        self._schedule = noise_schedule(config)
        try:
            self.unet = UNet2DConditionModel(**config.unet)
        except TypeError as exc:
            raise InputError(f"{NAME}: unet settings are not UNet2DConditionModel's: {' '.join(str(exc).split())}") from None
        self.null_image_embed = nn.Parameter(torch.zeros(config.embed_dim))

    @property
    def schedule(self) -> NoiseSchedule:
        return self._schedule

    def forward(self, x_t: Tensor, t: Tensor, cond: DecoderCondition) -> Tensor:  # type: ignore[override]
        embed = cond.image_embed.to(device=x_t.device, dtype=self.dtype)
        if embed.ndim != 2 or embed.shape[-1] != self.config.embed_dim:
            raise InputError(f"{NAME}: image embeddings must be [B, {self.config.embed_dim}], got {list(embed.shape)}")
        drop = cond.drop_image.to(device=x_t.device, dtype=torch.bool)
        embed = torch.where(drop[:, None], self.null_image_embed[None].to(embed.dtype), embed)
        out = self.unet(x_t.to(self.dtype), t, encoder_hidden_states=None,
                        added_cond_kwargs={"image_embeds": embed}, return_dict=False)[0]
        if self.variance_type == "learned_range":
            return out
        return out[:, : x_t.shape[1]]
