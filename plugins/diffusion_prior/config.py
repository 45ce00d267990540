"""Settings of the unCLIP diffusion prior.

The defaults are the sizes of Karlo's published prior (CLIP ViT-L/14: D = W = 768, 77
caption tokens, 20 layers of 32 × 64-wide heads), so a recipe that loads those weights
only has to set what Karlo does differently from a freshly trained prior
(``normalize_output: false``, ``clip_range: 5``).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from unclip_core import ComponentConfig, Declared
from unclip_core.diffusion.schedule import BetaScheduleName


class DiffusionPriorConfig(ComponentConfig):
    """A decoder-only causal transformer predicting the unnoised CLIP image embedding."""

    embed_dim: int = Field(768, gt=0, description="Size D of the CLIP text and image embeddings.")
    text_width: int = Field(
        768,
        gt=0,
        description="Width W of the per-token caption features; projected to the transformer width.",
    )
    context_length: int = Field(77, gt=0, description="Number L of caption tokens the prior reads.")
    num_layers: int = Field(20, gt=0, description="Number of transformer blocks.")
    num_attention_heads: int = Field(32, gt=0, description="Attention heads per block.")
    attention_head_dim: int = Field(
        64, gt=0, description="Channels per head; the transformer width is heads × head dim."
    )
    beta_schedule: BetaScheduleName = Field(
        "cosine", description="Noise schedule the prior is trained with (cosine, as unCLIP's prior)."
    )
    num_train_timesteps: int = Field(1000, gt=0, description="Number of diffusion timesteps in training.")
    variance_type: Literal["fixed_small", "fixed_large"] = Field(
        "fixed_small",
        description="Reverse-process variance; the transformer predicts no variance, so only fixed ones apply.",
    )
    clip_range: float | None = Field(
        None,
        gt=0,
        description="Samplers clamp the predicted (normalised) x0 to ±clip_range; None: no clamping, "
        "since embeddings are not images (Karlo uses 5).",
    )
    normalize_output: bool = Field(
        True,
        description="Rescale sampled embeddings to unit norm, as CLIP's image embeddings are "
        "(Karlo's weights expect false).",
    )
    text_drop_prob: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Probability of replacing the caption by the null caption in training "
        "(for classifier-free guidance).",
    )

    embedding_space: str | None = Field(
        None, description="Name of the CLIP embedding space the prior samples in (e.g. 'openai/clip-vit-large-patch14'); "
        "`recipe validate` refuses a decoder that names another. None: not stated.",
    )

    @property
    def width(self) -> int:
        """The transformer's hidden width."""
        return self.num_attention_heads * self.attention_head_dim

    def declares(self) -> Declared:
        return Declared(
            embed_dim=self.embed_dim,
            embedding_space=self.embedding_space,
            text_width=self.text_width,
            context_length=self.context_length,
            needs_sampler=True,
        )
