"""Settings of the GLIDE-style unCLIP decoder.

The defaults are the sizes of Karlo's published decoder (CLIP ViT-L/14: D = W = 768, 77
caption tokens; a 64 × 64 UNet of widths 320-640-960-1280 with three resnets per level and
attention on every level but the first), so a recipe that loads those weights only has to
set what Karlo does differently from a freshly trained decoder (``variance_type:
learned_range``). A small decoder trained from scratch sets its own sizes.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from unclip_core import ComponentConfig, Declared
from unclip_core.diffusion.schedule import BetaScheduleName


class UnclipDecoderConfig(ComponentConfig):
    """A text- and CLIP-image-embedding-conditioned UNet (unCLIP §2.2)."""

    image_size: int = Field(64, gt=0, description="Side of the images the decoder draws (its base resolution).")
    embed_dim: int = Field(768, gt=0, description="Size D of the CLIP image (and pooled text) embedding it reads.")
    text_width: int = Field(768, gt=0, description="Width W of the caption's per-token features.")
    context_length: int = Field(77, gt=0, description="Number L of caption tokens it reads.")
    block_out_channels: list[int] = Field(
        [320, 640, 960, 1280],
        min_length=1,
        description="UNet channels per resolution level, highest resolution first; each level "
        "after the first halves the resolution.",
    )
    layers_per_block: int = Field(3, gt=0, description="Resnet blocks per UNet level.")
    attention_levels: list[bool] | None = Field(
        None,
        description="Per level, whether it attends to the context tokens (GLIDE-style attention "
        "over image and context tokens together); None: every level except the first (highest "
        "resolution), as GLIDE and Karlo. The middle block always attends.",
    )
    attention_head_dim: int = Field(64, gt=0, description="Channels per attention head.")
    cross_attention_dim: int = Field(
        1536, gt=0, description="Width of the context tokens (4 image tokens + caption tokens) the UNet attends to."
    )
    extra_context_tokens: int = Field(
        4, gt=0, description="Number of context tokens the CLIP image embedding is projected into (unCLIP: 4)."
    )
    norm_num_groups: int = Field(32, gt=0, description="Groups of the UNet's group normalisations.")
    scale_shift_norm: bool = Field(
        True,
        description="Resnets apply the time (+ CLIP) embedding as a scale and shift of their group "
        "norm (GLIDE, Karlo) rather than adding it.",
    )
    prediction_type: Literal["eps", "v"] = Field("eps", description="What the UNet predicts: the noise or v.")
    variance_type: Literal["fixed_small", "learned_range"] = Field(
        "fixed_small",
        description="Reverse-process variance; learned_range doubles the output channels to predict it "
        "(iDDPM, as Karlo's decoder).",
    )
    beta_schedule: BetaScheduleName = Field("cosine", description="Noise schedule the decoder is trained with.")
    num_train_timesteps: int = Field(1000, gt=0, description="Number of diffusion timesteps in training.")
    image_drop_prob: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Probability of replacing the CLIP image embedding by the learned null embedding "
        "in training (unCLIP: 10%).",
    )
    text_drop_prob: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Probability of replacing the caption by the null caption in training (unCLIP: 50%).",
    )
    use_text: bool = Field(
        True,
        description="Condition on the caption as well as the image embedding; false: the image "
        "embedding alone (the caption layers are not built).",
    )
    latent_channels: int | None = Field(
        None, gt=0,
        description="None: the decoder draws pixels. N: it denoises N-channel latents of the recipe's "
        "decoder.autoencoder (a latent decoder, as Kandinsky 2.2's; image_size stays the pixel side drawn, the UNet "
        "runs at image_size / the autoencoder's downscale).",
    )
    inpainting: bool = Field(
        False,
        description="A trained inpainting decoder (GLIDE): the UNet also reads the known image "
        "(zeros where repainted) and the repaint mask as 3 + 1 extra input channels. Fine-tuned "
        "from an ordinary decoder, whose input convolution gets zero-initialised extra channels.",
    )

    @property
    def levels(self) -> list[bool]:
        """``attention_levels`` with its default filled in."""
        if self.attention_levels is not None:
            return list(self.attention_levels)
        return [False] + [True] * (len(self.block_out_channels) - 1)

    @property
    def time_embed_dim(self) -> int:
        """Width of the UNet's timestep embedding, to which the CLIP embedding is added."""
        return self.block_out_channels[0] * 4

    @model_validator(mode="after")
    def _check_sizes(self) -> "UnclipDecoderConfig":
        levels = len(self.block_out_channels)
        if self.attention_levels is not None and len(self.attention_levels) != levels:
            raise ValueError(
                f"attention_levels has {len(self.attention_levels)} entries but block_out_channels has {levels}"
            )
        if self.latent_channels is not None and self.inpainting:
            raise ValueError("a latent decoder (latent_channels) cannot be a trained inpainting decoder (inpainting: true)")
        factor = 2 ** (levels - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size {self.image_size} must be divisible by {factor} ({levels} UNet levels)")
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise ValueError(f"block_out_channels {channels} is not divisible by norm_num_groups {self.norm_num_groups}")
        attending = [c for c, on in zip(self.block_out_channels, self.levels) if on] + [self.block_out_channels[-1]]
        for channels in attending:
            if channels % self.attention_head_dim:
                raise ValueError(
                    f"block_out_channels {channels} (a level with attention) is not divisible by "
                    f"attention_head_dim {self.attention_head_dim}"
                )
        return self

    def declares(self) -> Declared:
        return Declared(
            embed_dim=self.embed_dim,
            text_width=self.text_width if self.use_text else None,
            context_length=self.context_length if self.use_text else None,
            image_size=self.image_size,
            inpainting=self.inpainting,
            latent=self.latent_channels is not None,
            latent_channels=self.latent_channels,
        )
