"""Settings of the diffusion upsampler.

The defaults are the sizes of Karlo's published 64 → 256 super-resolution UNets
(widths 320-640-960-1280, three resnets per level, no attention, the timestep embedding
added rather than used as a norm scale/shift), so a recipe loading those weights only sets
``last_step_unet: true``. A second stage (e.g. 256 → 1024) sets ``degradation: bsr``.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from unclip_core import ComponentConfig, Declared
from unclip_core.diffusion.schedule import BetaScheduleName


class UnetUpsamplerConfig(ComponentConfig):
    """A convolutional UNet reading the noisy image next to the upsampled low-resolution one."""

    input_size: int = Field(64, gt=0, description="Side of the low-resolution image it conditions on.")
    image_size: int = Field(256, gt=0, description="Side of the image it produces.")
    block_out_channels: list[int] = Field(
        [320, 640, 960, 1280],
        min_length=1,
        description="UNet channels per resolution level, highest resolution first; each level "
        "after the first halves the resolution.",
    )
    layers_per_block: int = Field(3, gt=0, description="Resnet blocks per UNet level.")
    mid_attention: bool = Field(
        False,
        description="Self-attention in the UNet's middle block. Off by default (unCLIP, Karlo): a "
        "purely convolutional UNet trains on crops and runs at full size.",
    )
    attention_head_dim: int = Field(64, gt=0, description="Channels per head of the middle block's attention.")
    norm_num_groups: int = Field(32, gt=0, description="Groups of the UNet's group normalisations.")
    scale_shift_norm: bool = Field(
        False,
        description="Resnets apply the timestep embedding as a scale and shift of their group norm "
        "rather than adding it (Karlo's upsamplers add it).",
    )
    last_step_unet: bool = Field(
        False,
        description="Hold a second UNet used only at the final timestep t = 0, as Karlo's "
        "super_res_last (its super_res_first serves every other step).",
    )
    prediction_type: Literal["eps", "v"] = Field("eps", description="What the UNet predicts: the noise or v.")
    variance_type: Literal["fixed_small", "learned_range"] = Field(
        "fixed_small", description="Reverse-process variance; learned_range doubles the output channels to predict it."
    )
    beta_schedule: BetaScheduleName = Field("cosine", description="Noise schedule the upsampler is trained with.")
    num_train_timesteps: int = Field(1000, gt=0, description="Number of diffusion timesteps in training.")
    degradation: Literal["blur", "bsr", "none"] = Field(
        "blur",
        description="How training corrupts the conditioning image before downsampling it: 'blur' "
        "(Gaussian blur; unCLIP's first upsampler), 'bsr' (a random mix of blur, resizing, noise and "
        "JPEG; unCLIP's second upsampler) or 'none' (plain antialiased downsampling).",
    )
    blur_sigma_range: tuple[float, float] = Field(
        (0.4, 1.0),
        description="Range of the Gaussian blur's standard deviation, in low-resolution pixels, "
        "drawn uniformly per image.",
    )
    noise_std_range: tuple[float, float] = Field(
        (0.01, 0.1),
        description="'bsr': range of the added Gaussian noise's standard deviation, as a fraction "
        "of the [0, 1] pixel range.",
    )
    jpeg_quality_range: tuple[int, int] = Field(
        (30, 95), description="'bsr': range of the JPEG quality (1-100) of the compression round trip."
    )
    crop_fraction: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="Training crops cover this fraction of the target's area (unCLIP: a quarter, "
        "i.e. half the side); 1 trains on whole images.",
    )

    @property
    def crop_size(self) -> int:
        """Side of the square training crops."""
        return round(self.image_size * math.sqrt(self.crop_fraction))

    @model_validator(mode="after")
    def _check_sizes(self) -> "UnetUpsamplerConfig":
        if self.input_size >= self.image_size:
            raise ValueError(f"input_size {self.input_size} must be smaller than image_size {self.image_size}")
        factor = 2 ** (len(self.block_out_channels) - 1)
        for name, size in (("image_size", self.image_size), ("crop size", self.crop_size)):
            if size % factor:
                raise ValueError(
                    f"{name} {size} must be divisible by {factor} ({len(self.block_out_channels)} UNet levels)"
                )
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise ValueError(f"block_out_channels {channels} is not divisible by norm_num_groups {self.norm_num_groups}")
        if self.mid_attention and self.block_out_channels[-1] % self.attention_head_dim:
            raise ValueError(
                f"block_out_channels {self.block_out_channels[-1]} (the attending middle block) is not "
                f"divisible by attention_head_dim {self.attention_head_dim}"
            )
        for name in ("blur_sigma_range", "noise_std_range", "jpeg_quality_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got ({low}, {high})")
        if not (1 <= self.jpeg_quality_range[0] and self.jpeg_quality_range[1] <= 100):
            raise ValueError(f"jpeg_quality_range must lie within 1-100, got {self.jpeg_quality_range}")
        return self

    def declares(self) -> Declared:
        return Declared(image_size=self.image_size, input_size=self.input_size)
