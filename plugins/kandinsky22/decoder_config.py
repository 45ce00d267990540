"""Settings of ``kandinsky22-decoder``: the diffusers UNet's own config (as its folder's
config.json has it), the pixel size drawn, and the noise schedule it was trained with."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from unclip_core import ComponentConfig, Declared

UNET_FIXED = {"addition_embed_type": "image", "encoder_hid_dim_type": "image_proj"}
"""What makes a UNet2DConditionModel Kandinsky 2.2's decoder: the image embedding is both
added to the timestep embedding and projected into the context tokens."""


class Kandinsky22DecoderConfig(ComponentConfig):
    """Kandinsky 2.2's decoder: a UNet in MoVQ latent space conditioned on the image embedding alone."""

    image_size: int = Field(512, gt=0, description="Side of the images drawn, in pixels (latents are this over the autoencoder's downscale).")
    unet: dict[str, Any] = Field(
        description="diffusers UNet2DConditionModel settings (its config.json without the _-prefixed keys); "
        "addition_embed_type must be 'image' and encoder_hid_dim_type 'image_proj'.",
    )
    variance_type: Literal["fixed_small", "learned_range"] = Field(
        "fixed_small",
        description="fixed_small: the UNet's variance channels are dropped (Kandinsky's pipelines do, unless their "
        "scheduler samples with a learned variance); learned_range: they are used.",
    )
    beta_schedule: Literal["linear", "scaled_linear", "cosine", "squaredcos_cap_v2"] = Field("linear", description="Training noise schedule.")
    beta_start: float = Field(0.00085, gt=0, description="First beta (linear schedules).")
    beta_end: float = Field(0.012, gt=0, description="Last beta (linear schedules).")
    num_train_timesteps: int = Field(1000, gt=0, description="Training timesteps.")

    @model_validator(mode="after")
    def _a_kandinsky_unet(self) -> "Kandinsky22DecoderConfig":
        for key, value in UNET_FIXED.items():
            if self.unet.get(key) != value:
                raise ValueError(f"unet.{key} must be {value!r} (Kandinsky 2.2's decoder), got {self.unet.get(key)!r}")
        for key in ("in_channels", "out_channels", "encoder_hid_dim"):
            if not isinstance(self.unet.get(key), int) or isinstance(self.unet.get(key), bool):
                raise ValueError(f"unet.{key} must be given as an integer")
        channels, out = self.unet["in_channels"], self.unet["out_channels"]
        if out not in (channels, 2 * channels):
            raise ValueError(f"unet.out_channels {out} must be in_channels {channels} or twice it (a learned variance)")
        if self.variance_type == "learned_range" and out != 2 * channels:
            raise ValueError("variance_type learned_range needs a UNet that predicts a variance (out_channels twice in_channels)")
        return self

    @property
    def embed_dim(self) -> int:
        return int(self.unet["encoder_hid_dim"])

    def declares(self) -> Declared:
        return Declared(embed_dim=self.embed_dim, image_size=self.image_size, latent=True,
                        latent_channels=int(self.unet["in_channels"]), negative_image=True)
