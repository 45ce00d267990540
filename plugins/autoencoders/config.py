"""Settings of the built-in autoencoders: the constructor arguments of diffusers' ``VQModel``
and ``AutoencoderKL`` under their own names, so a model folder's ``config.json`` maps onto
them key for key (``unclip import`` copies them) and a typo is a one-line recipe error."""
from __future__ import annotations

from pydantic import Field, model_validator

from unclip_core import ComponentConfig, Declared

BLOCKS_HELP = "diffusers block class names, one per resolution level (as in the model's config.json)."


class _DiffusersAutoencoderConfig(ComponentConfig):
    """What ``VQModel`` and ``AutoencoderKL`` share."""

    in_channels: int = Field(3, gt=0, description="Image channels read by the encoder.")
    out_channels: int = Field(3, gt=0, description="Image channels written by the decoder.")
    down_block_types: list[str] = Field(default_factory=lambda: ["DownEncoderBlock2D"], min_length=1, description=BLOCKS_HELP)
    up_block_types: list[str] = Field(default_factory=lambda: ["UpDecoderBlock2D"], min_length=1, description=BLOCKS_HELP)
    block_out_channels: list[int] = Field(default_factory=lambda: [64], min_length=1, description="Channels per level.")
    layers_per_block: int = Field(1, gt=0, description="ResNet layers per level.")
    act_fn: str = Field("silu", description="Activation function (diffusers' name).")
    latent_channels: int = Field(4, gt=0, description="Channels of the latents.")
    norm_num_groups: int = Field(32, gt=0, description="GroupNorm groups.")
    sample_size: int = Field(32, gt=0, description="Nominal image side (diffusers' bookkeeping; any multiple of the downscale works).")
    mid_block_add_attention: bool = Field(True, description="Attention in the middle block.")
    force_upcast: bool = Field(False, description="diffusers' hint that the model needs fp32 (kept for the config's sake).")

    @model_validator(mode="after")
    def _levels_agree(self):
        levels = len(self.block_out_channels)
        for name in ("down_block_types", "up_block_types"):
            if len(getattr(self, name)) != levels:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries but block_out_channels has {levels}")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"block_out_channels {bad} are not multiples of norm_num_groups {self.norm_num_groups}")
        return self

    @property
    def downscale(self) -> int:
        """Pixels per latent cell: every level but the last halves the image."""
        return 2 ** (len(self.block_out_channels) - 1)

    def declares(self) -> Declared:
        return Declared(latent_channels=self.latent_channels, downscale=self.downscale)

    def diffusers_kwargs(self) -> dict:
        """The diffusers model's constructor arguments."""
        return self.model_dump()


class VQConfig(_DiffusersAutoencoderConfig):
    """diffusers ``VQModel`` (MoVQ, Kandinsky 2.2's autoencoder: ``norm_type: spatial``)."""

    num_vq_embeddings: int = Field(256, gt=0, description="Codebook size.")
    vq_embed_dim: int | None = Field(None, gt=0, description="Codebook vector size; None: latent_channels.")
    norm_type: str = Field("group", pattern="^(group|spatial)$", description="'spatial' (MoVQ) conditions the decoder's norms on the latents.")
    lookup_from_codebook: bool = Field(False, description="Decode by codebook index lookup (diffusers' option).")
    scaling_factor: float = Field(0.18215, gt=0, description="The model's config.json value, kept as diffusers keeps it; "
                                  "Kandinsky 2.2's pipelines do not use it (see latent_scale).")
    latent_scale: float = Field(
        1.0, gt=0,
        description="Latents are multiplied by this after encoding and divided by it before decoding; Kandinsky 2.2's "
        "pipelines scale by nothing (1.0).",
    )
    quantize: bool = Field(
        False, description="Snap latents to the codebook before decoding; Kandinsky 2.2 decodes without (force_not_quantize).",
    )

    @model_validator(mode="after")
    def _spatial_norm_groups(self) -> "VQConfig":
        bad = [c for c in self.block_out_channels if c % 32]
        if self.norm_type == "spatial" and bad:
            raise ValueError(f"norm_type spatial normalises in 32 groups, so block_out_channels {bad} must be multiples of 32")
        return self

    def diffusers_kwargs(self) -> dict:
        return self.model_dump(exclude={"quantize", "latent_scale"})


class KLConfig(_DiffusersAutoencoderConfig):
    """diffusers ``AutoencoderKL`` (Stable Diffusion's VAE)."""

    scaling_factor: float = Field(0.18215, gt=0, description="Latents are multiplied by this after encoding and divided by it before decoding (the model's config.json value).")
    shift_factor: float | None = Field(None, description="Subtracted before scaling, added back after (SD3-style VAEs); None: no shift.")
    use_quant_conv: bool = Field(True, description="The 1x1 convolution after the encoder.")
    use_post_quant_conv: bool = Field(True, description="The 1x1 convolution before the decoder.")
    force_upcast: bool = Field(True, description="diffusers' hint that the model needs fp32 (kept for the config's sake).")
    kl_weight: float = Field(
        1e-6, ge=0,
        description="Training only (unclip train's autoencoder stage): weight of the posterior's KL divergence from "
        "N(0, I) beside the L1 reconstruction loss (Stable Diffusion's VAE: 1e-6). Small, so latents keep detail; "
        "scaling_factor then brings them to unit spread.",
    )

    def diffusers_kwargs(self) -> dict:
        return self.model_dump(exclude={"kl_weight"})
