"""unCLIP's decoder (Ramesh et al. 2022, §2.2): CLIP image embedding (+ caption) → image.

A GLIDE UNet (diffusers' :class:`UNet2DConditionModel` with GLIDE-style attention blocks,
which attend over the image's own tokens and the context tokens together) conditioned two
ways on the CLIP image embedding: projected and *added to the timestep embedding* (passed
as the UNet's ``class_labels`` with ``class_embed_type="identity"``), and projected into
four extra *context tokens* placed before the caption's token features. The UNet is kept
whole as ``self.unet`` and the projection as ``self.text_proj``, both with diffusers'
parameter names, so Karlo's ``decoder`` and ``text_proj`` weights load into this component.

Classifier-free guidance: per sample, ``drop_image`` swaps the image embedding for a learned
null embedding (as Karlo), and ``drop_text`` swaps the caption for a learned null caption
(``null_text_*``; a Karlo importer sets them to CLIP's encoding of "").

Latent (``latent_channels: N``): the same UNet denoises an autoencoder's N-channel latents
instead of pixels (the pipeline samples them at ``image_size / downscale`` and decodes them with
the recipe's ``decoder.autoencoder``); it trains on ``"latents"`` the training stage encodes.
Kandinsky 2.2 decodes this way from the image embedding alone (``use_text: false``); with
captions it is unCLIP's decoder moved into latent space.

Inpainting (``inpainting: true``, GLIDE §4): the UNet's input is the noisy sample followed by
the known image with the repainted part zeroed and the repaint mask (3 + 3 + 1 channels).
Such a decoder is fine-tuned from an ordinary one: :meth:`UnclipDecoder.adapt_initial_weights`
widens the ordinary decoder's input convolution with zero weights for the new channels, so
at step 0 it computes exactly what the ordinary decoder does. With nothing known (no
``inpaint_*`` in the condition) it reads an all-repaint mask, which training also shows it,
so it still generates from scratch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from unclip_core import CheckpointError, Decoder, DecoderCondition, InputError, NoiseSchedule, TextEncoding
from unclip_core.diffusion.losses import diffusion_loss, drop_mask

from unclip_plugins.unclip_decoder.config import UnclipDecoderConfig
from unclip_plugins.unclip_decoder.text_projection import ClipConditioningProjection

NAME = "unclip-decoder"
SAMPLE_CHANNELS = 3
INPAINT_CHANNELS = 3 + 1
"""What an inpainting decoder reads after the noisy sample: the known image (zeros where
repainted) and the repaint mask (1 = repaint)."""
CONV_IN = "unet.conv_in.weight"


def build_unet(config: UnclipDecoderConfig) -> UNet2DConditionModel:
    """The GLIDE UNet as diffusers builds Karlo's decoder (diffusers' unCLIP conversion script)."""
    levels = config.levels
    down = tuple("SimpleCrossAttnDownBlock2D" if on else "ResnetDownsampleBlock2D" for on in levels)
    up = tuple("SimpleCrossAttnUpBlock2D" if on else "ResnetUpsampleBlock2D" for on in reversed(levels))
    sample = config.latent_channels or SAMPLE_CHANNELS
    channels = sample * (2 if config.variance_type == "learned_range" else 1)
    return UNet2DConditionModel(
        sample_size=config.image_size,
        in_channels=sample + (INPAINT_CHANNELS if config.inpainting else 0),
        out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        resnet_time_scale_shift="scale_shift" if config.scale_shift_norm else "default",
        class_embed_type="identity",
    )


class UnclipDecoder(Decoder[UnclipDecoderConfig]):
    """GLIDE-style decoder conditioned on a CLIP image embedding and (optionally) a caption."""

    def __init__(self, config: UnclipDecoderConfig):
        super().__init__(config)
        self.prediction_type = config.prediction_type
        self.variance_type = config.variance_type
        self.clip_range = None if config.latent_channels else 1.0  # latents are not bounded like pixels
        self.in_channels = config.latent_channels or SAMPLE_CHANNELS
        self._schedule = NoiseSchedule.from_name(config.beta_schedule, config.num_train_timesteps)
        self.text_proj = ClipConditioningProjection(
            embed_dim=config.embed_dim,
            text_width=config.text_width,
            time_embed_dim=config.time_embed_dim,
            cross_attention_dim=config.cross_attention_dim,
            extra_context_tokens=config.extra_context_tokens,
            use_text=config.use_text,
        )
        self.unet = build_unet(config)
        if config.use_text:
            # The null caption. Learned; a Karlo importer sets all three to CLIP's encoding of "".
            self.null_text_embed = nn.Parameter(torch.zeros(config.embed_dim))
            self.null_text_tokens = nn.Parameter(torch.zeros(config.context_length, config.text_width))
            self.register_buffer("null_text_mask", torch.ones(config.context_length, dtype=torch.bool))

    # ------------------------------------------------------------------ diffusion model
    @property
    def schedule(self) -> NoiseSchedule:
        return self._schedule

    def forward(self, x_t: Tensor, t: Tensor, cond: DecoderCondition) -> Tensor:  # type: ignore[override]
        """``[B, 3, H, W]`` prediction (``[B, 6, H, W]`` with a learned variance) for noised
        images ``x_t`` at integer timesteps ``t`` ``[B]``."""
        batch = x_t.shape[0]
        if x_t.ndim != 4 or x_t.shape[1] != self.in_channels:
            raise InputError(f"{NAME}: x_t must be [B, {self.in_channels}, H, W], got {list(x_t.shape)}")
        context, context_mask, time_embedding = self.conditioning(cond, batch)
        t = torch.as_tensor(t, device=x_t.device).long().expand(batch)
        sample = x_t.to(self.dtype)
        if self.config.inpainting:
            sample = torch.cat([sample, *self.inpaint_channels(cond, x_t)], dim=1)
        elif cond.inpaint_image is not None or cond.inpaint_mask is not None:
            raise InputError(f"{NAME}: the condition carries inpaint_image/inpaint_mask but this decoder has inpainting: false")
        return self.unet(
            sample,
            t,
            encoder_hidden_states=context,
            class_labels=time_embedding,
            encoder_attention_mask=context_mask,
            return_dict=False,
        )[0]

    def inpaint_channels(self, cond: DecoderCondition, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """``(known image × (1 − mask) [B, 3, H, W], mask [B, 1, H, W])`` in the UNet's dtype.
        Without ``inpaint_*`` nothing is known: zeros and an all-ones mask."""
        batch, _, height, width = x_t.shape
        dtype, device = self.dtype, x_t.device
        image, mask = cond.inpaint_image, cond.inpaint_mask
        if image is None and mask is None:
            return (
                torch.zeros(batch, SAMPLE_CHANNELS, height, width, dtype=dtype, device=device),
                torch.ones(batch, 1, height, width, dtype=dtype, device=device),
            )
        if image is None or mask is None:
            given, absent = ("inpaint_image", "inpaint_mask") if mask is None else ("inpaint_mask", "inpaint_image")
            raise InputError(f"{NAME}: the condition has {given} but no {absent}; give both or neither")
        for name, value, channels in (("inpaint_image", image, SAMPLE_CHANNELS), ("inpaint_mask", mask, 1)):
            if tuple(value.shape) != (batch, channels, height, width):
                raise InputError(f"{NAME}: {name} must be [{batch}, {channels}, {height}, {width}], got {list(value.shape)}")
        mask = mask.to(device=device, dtype=dtype)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise InputError(f"{NAME}: inpaint_mask must hold only 0 (known) and 1 (repaint)")
        return image.to(device=device, dtype=dtype) * (1 - mask), mask

    def adapt_initial_weights(self, state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
        """An ordinary decoder's weights as this inpainting decoder's starting point: its
        input convolution widened with zero weights for the 4 new input channels, so the
        fine-tune starts out computing exactly what the ordinary decoder did. An inpainting
        decoder's own weights pass unchanged; any other input convolution is refused here,
        and every other tensor must fit as for any load."""
        if not self.config.inpainting or CONV_IN not in state:
            return state
        weight, target = state[CONV_IN], self.unet.conv_in.weight
        if tuple(weight.shape) == tuple(target.shape):
            return state
        plain = (target.shape[0], SAMPLE_CHANNELS, *target.shape[2:])
        if tuple(weight.shape) != plain:
            raise CheckpointError(
                f"{source}: {CONV_IN} is {tuple(weight.shape)}; an inpainting decoder starts from an ordinary "
                f"decoder's {plain} (widened with zeros) or an inpainting decoder's {tuple(target.shape)}"
            )
        widened = torch.zeros(tuple(target.shape), dtype=weight.dtype)
        widened[:, :SAMPLE_CHANNELS] = weight
        return {**state, CONV_IN: widened}

    def conditioning(self, cond: DecoderCondition, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(context [B, n + L, C], context_mask [B, n + L] bool, clip_time_embedding [B, T])``
        with the null inputs swapped in where ``cond`` drops them. The ``n`` image tokens are
        always attended; caption tokens follow the caption's mask, as diffusers' pipeline does."""
        cfg = self.config
        device, dtype = self.device, self.dtype
        image_embed = cond.image_embed.to(device=device, dtype=dtype)
        if image_embed.shape != (batch, cfg.embed_dim):
            raise InputError(
                f"{NAME}: image_embed must be [{batch}, {cfg.embed_dim}] for a batch of {batch}, "
                f"got {list(image_embed.shape)}"
            )
        drop_image = self._flags(cond.drop_image, batch, "drop_image")
        null_image = self.text_proj.learned_classifier_free_guidance_embeddings.to(dtype)
        image_embed = torch.where(drop_image[:, None], null_image[None], image_embed)
        if not cfg.use_text:
            context, time_embedding = self.text_proj(image_embed)
            mask = torch.ones(context.shape[:2], dtype=torch.bool, device=device)
            return context, mask, time_embedding

        text_embed, tokens, text_mask = self._caption(cond, batch)
        context, time_embedding = self.text_proj(image_embed, text_embed, tokens)
        mask = F.pad(text_mask, (cfg.extra_context_tokens, 0), value=True)
        return context, mask, time_embedding

    def _caption(self, cond: DecoderCondition, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """The caption with the null caption in the rows ``drop_text`` selects (all rows when
        the condition carries no caption)."""
        cfg = self.config
        device, dtype = self.device, self.dtype
        null = (self.null_text_embed.to(dtype), self.null_text_tokens.to(dtype), self.null_text_mask)
        if cond.text_embed is None or cond.text_tokens is None or cond.text_mask is None:
            return tuple(value[None].expand(batch, *value.shape) for value in null)  # type: ignore[return-value]
        embed = cond.text_embed.to(device=device, dtype=dtype)
        tokens = cond.text_tokens.to(device=device, dtype=dtype)
        mask = cond.text_mask.to(device=device, dtype=torch.bool)
        expected = {
            "text_embed": (embed.shape, (batch, cfg.embed_dim)),
            "text_tokens": (tokens.shape, (batch, cfg.context_length, cfg.text_width)),
            "text_mask": (mask.shape, (batch, cfg.context_length)),
        }
        for name, (got, want) in expected.items():
            if tuple(got) != want:
                raise InputError(f"{NAME}: {name} must be {list(want)}, got {list(got)}")
        drop = self._flags(cond.drop_text, batch, "drop_text")
        embed = torch.where(drop[:, None], null[0][None], embed)
        tokens = torch.where(drop[:, None, None], null[1][None], tokens)
        mask = torch.where(drop[:, None], null[2][None], mask)
        return embed, tokens, mask

    def _flags(self, flags: Tensor, batch: int, name: str) -> Tensor:
        flags = torch.as_tensor(flags, device=self.device).to(torch.bool)
        if flags.shape != (batch,):
            raise InputError(f"{NAME}: {name} must be [{batch}] booleans, got shape {list(flags.shape)}")
        return flags

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        """The decoder's diffusion loss with unCLIP's conditioning dropout.

        ``batch`` holds ``"image"`` ``[B, 3, H, W]`` in [-1, 1] at ``image_size``,
        ``"image_embed"`` ``[B, D]`` (CLIP's embedding of those images; a latent decoder reads
        ``"latents"`` ``[B, N, h, w]``, the autoencoder's encoding of them) and, for a decoder
        that reads captions, ``"text"`` (a :class:`TextEncoding`; absent: all captions null).
        Per sample the image embedding is dropped with ``image_drop_prob`` and the caption,
        independently, with ``text_drop_prob``.

        An inpainting decoder also reads ``"inpaint_mask"`` ``[B, 1, H, W]`` (1 = repaint), which
        the decoder training stage draws (:mod:`unclip_core.training.masks`); the known image is
        the training image itself, zeroed under the mask by :meth:`inpaint_channels`. Absent:
        all ones, nothing known. The loss covers the whole image, as GLIDE's.
        """
        cfg = self.config
        sample = "latents" if cfg.latent_channels else "image"
        missing = [key for key in (sample, "image_embed") if key not in batch]
        if missing:
            raise InputError(f"{NAME}: training batch lacks {', '.join(repr(k) for k in missing)}")
        image = batch[sample].to(device=self.device, dtype=self.dtype)
        size = image.shape[-1] if cfg.latent_channels else cfg.image_size
        if image.ndim != 4 or tuple(image.shape[1:]) != (self.in_channels, size, size):
            raise InputError(f"{NAME}: training {sample} must be [B, {self.in_channels}, {size}, {size}], got {list(image.shape)}")
        count = image.shape[0]
        text: TextEncoding | None = batch.get("text") if cfg.use_text else None
        if text is not None and len(text) != count:
            raise InputError(f"{NAME}: training batch has {count} images but {len(text)} captions")
        cond = DecoderCondition.build(batch["image_embed"].to(self.device), text)
        if cfg.inpainting:
            mask = batch.get("inpaint_mask")
            if mask is None:
                mask = torch.ones(count, 1, size, size)
            if tuple(mask.shape) != (count, 1, size, size):
                raise InputError(f"{NAME}: training inpaint_mask must be [{count}, 1, {size}, {size}], got {list(mask.shape)}")
            cond.inpaint_image, cond.inpaint_mask = image, mask.to(device=self.device, dtype=image.dtype)
        cond.drop_image = drop_mask(count, cfg.image_drop_prob, generator, device=self.device)
        if text is not None:
            cond.drop_text = drop_mask(count, cfg.text_drop_prob, generator, device=self.device)
        return diffusion_loss(self, image, cond, generator=generator)
