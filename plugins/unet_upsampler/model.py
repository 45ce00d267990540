"""unCLIP's diffusion upsamplers (Ramesh et al. 2022, §2.2 and Appendix).

A diffusers :class:`UNet2DModel` reads the noisy high-resolution image concatenated with the
low-resolution condition upsampled to the same size — exactly how Karlo's ``super_res_*``
UNets are called — and has no text and, by default, no attention: being convolutional it
trains on random crops (a quarter of the image's area) and samples at full size.

Training corrupts the condition first (:mod:`unclip_plugins.unet_upsampler.degrade`), so
the upsampler learns to correct the previous stage's artefacts instead of copying them.
The UNet is kept whole as ``self.unet`` (and Karlo's final-step UNet as ``self.unet_last``)
with diffusers' parameter names, so Karlo's weights load into this component.
"""
from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import Tensor

from unclip_core import InputError, NoiseSchedule, Upsampler, UpsamplerCondition
from unclip_core.diffusion.losses import diffusion_loss

from unclip_plugins.unet_upsampler.conditioning import paired_random_crop, upsample_condition
from unclip_plugins.unet_upsampler.config import UnetUpsamplerConfig
from unclip_plugins.unet_upsampler.degrade import blur_degradation, bsr_degradation, resize

NAME = "unet-upsampler"


def build_unet(config: UnetUpsamplerConfig) -> UNet2DModel:
    """The super-resolution UNet as diffusers builds Karlo's (diffusers' unCLIP conversion script)."""
    levels = len(config.block_out_channels)
    channels = 3 * (2 if config.variance_type == "learned_range" else 1)
    return UNet2DModel(
        sample_size=config.image_size,
        in_channels=6,  # noisy image + upsampled condition
        out_channels=channels,
        down_block_types=("ResnetDownsampleBlock2D",) * levels,
        up_block_types=("ResnetUpsampleBlock2D",) * levels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        add_attention=config.mid_attention,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        resnet_time_scale_shift="scale_shift" if config.scale_shift_norm else "default",
    )


class UnetUpsampler(Upsampler[UnetUpsamplerConfig]):
    """Diffusion super-resolution conditioned on a low-resolution image."""

    def __init__(self, config: UnetUpsamplerConfig):
        super().__init__(config)
        self.prediction_type = config.prediction_type
        self.variance_type = config.variance_type
        self.clip_range = 1.0
        self._schedule = NoiseSchedule.from_name(config.beta_schedule, config.num_train_timesteps)
        self.unet = build_unet(config)
        self.unet_last = build_unet(config) if config.last_step_unet else None

    # ------------------------------------------------------------------ diffusion model
    @property
    def schedule(self) -> NoiseSchedule:
        return self._schedule

    def forward(self, x_t: Tensor, t: Tensor, cond: UpsamplerCondition) -> Tensor:  # type: ignore[override]
        """Prediction for noisy images ``x_t`` ``[B, 3, H, W]`` at integer timesteps ``t``
        ``[B]``. ``cond.low_res`` ``[B, 3, h, w]`` is resized to ``H × W`` unless it already
        has that size (training passes crops of the upsampled condition)."""
        batch = x_t.shape[0]
        if x_t.ndim != 4 or x_t.shape[1] != self.in_channels:
            raise InputError(f"{NAME}: x_t must be [B, {self.in_channels}, H, W], got {list(x_t.shape)}")
        low_res = cond.low_res
        if low_res.ndim != 4 or low_res.shape[:2] != (batch, self.in_channels):
            raise InputError(
                f"{NAME}: the low-resolution condition must be [{batch}, {self.in_channels}, h, w] "
                f"for a batch of {batch}, got {list(low_res.shape)}"
            )
        dtype = self.dtype
        condition = upsample_condition(low_res.to(device=x_t.device, dtype=dtype), tuple(x_t.shape[-2:]))
        inputs = torch.cat([x_t.to(dtype), condition], dim=1)
        t = torch.as_tensor(t, device=x_t.device).long().expand(batch)
        if self.unet_last is None:
            return self.unet(inputs, t, return_dict=False)[0]
        return self._two_unets(inputs, t)

    def _two_unets(self, inputs: Tensor, t: Tensor) -> Tensor:
        """Karlo's split: ``unet_last`` at t = 0, ``unet`` everywhere else."""
        last = t == 0
        if bool(last.all()):
            return self.unet_last(inputs, t, return_dict=False)[0]
        if not bool(last.any()):
            return self.unet(inputs, t, return_dict=False)[0]
        first_out = self.unet(inputs[~last], t[~last], return_dict=False)[0]
        last_out = self.unet_last(inputs[last], t[last], return_dict=False)[0]
        out = first_out.new_empty((inputs.shape[0], *first_out.shape[1:]))
        out[~last] = first_out
        out[last] = last_out
        return out

    # ------------------------------------------------------------------ training
    def degrade(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """The training condition: ``images`` at ``image_size`` corrupted as the config says
        and brought down to ``input_size``."""
        cfg = self.config
        if cfg.degradation == "blur":
            return blur_degradation(images, cfg.input_size, cfg.blur_sigma_range, generator)
        if cfg.degradation == "bsr":
            return bsr_degradation(
                images,
                cfg.input_size,
                generator,
                sigma_range=cfg.blur_sigma_range,
                noise_std_range=cfg.noise_std_range,
                jpeg_quality_range=cfg.jpeg_quality_range,
            )
        return resize(images, cfg.input_size).clamp(-1, 1)

    def training_inputs(self, image: Tensor, generator: torch.Generator) -> tuple[Tensor, UpsamplerCondition]:
        """``(target crop, condition crop)``: degrade and downsample ``image``, upsample it back
        as sampling will, then take the same random crop from both."""
        low_res = self.degrade(image, generator)
        condition = upsample_condition(low_res, self.config.image_size)
        target, condition = paired_random_crop(image, condition, self.config.crop_size, generator)
        return target, UpsamplerCondition(condition)

    def training_loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        """The diffusion loss on random crops. ``batch["image"]`` is ``[B, 3, S, S]`` in
        [-1, 1] at the output size ``S = image_size``."""
        if "image" not in batch:
            raise InputError(f"{NAME}: training batch lacks 'image'")
        image = batch["image"].to(device=self.device, dtype=self.dtype)
        size = self.config.image_size
        if image.ndim != 4 or tuple(image.shape[1:]) != (self.in_channels, size, size):
            raise InputError(f"{NAME}: training images must be [B, 3, {size}, {size}], got {list(image.shape)}")
        target, cond = self.training_inputs(image, generator)
        return diffusion_loss(self, target, cond, generator=generator)
