"""Settings of the unCLIP autoregressive prior.

The paper (Ramesh et al. 2022, §2.1) fixes the representation — PCA of 1024-d CLIP image
embeddings down to 319 dimensions, 1024 buckets per dimension, a quantised z_i·z_t token —
and those are the defaults. It does not give the transformer's sizes in enough detail to copy,
so the defaults there are a moderate GPT; recipes set their own.
"""
from __future__ import annotations

from pydantic import Field, model_validator

from unclip_core import ComponentConfig, Declared


class ARPriorConfig(ComponentConfig):
    """A causal transformer predicting the quantised PCA codes of the CLIP image embedding."""

    embed_dim: int = Field(1024, gt=0, description="Size D of the CLIP text and image embeddings.")
    text_width: int = Field(
        1024, gt=0, description="Width W of the per-token caption features; projected to the transformer width."
    )
    context_length: int = Field(77, gt=0, description="Number L of caption tokens the prior reads.")
    pca_dims: int = Field(
        319,
        gt=0,
        description="PCA dimensions kept of the image embedding: the length of the code sequence "
        "(the paper keeps 319 of 1024).",
    )
    min_explained_variance: float | None = Field(
        0.99,
        gt=0,
        le=1,
        description="Fitting fails (naming the pca_dims needed) when the kept dimensions explain less "
        "of the training embeddings' variance than this; null: no check.",
    )
    num_buckets: int = Field(
        1024, ge=2, description="Buckets per kept dimension, edges at equal-count quantiles of the training data."
    )
    dot_buckets: int = Field(
        64, ge=2, description="Buckets of the z_i·z_t token, edges at equal-count quantiles of the training pairs."
    )
    dot_quantile: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="Sampling draws the z_i·z_t token from its training distribution above this quantile "
        "(0.5: the paper's top half; 0: all of it).",
    )
    fit_items: int = Field(
        16384,
        ge=2,
        description="Training pairs (the first ones, so a resumed run sees the same) whose frozen-CLIP "
        "embeddings the PCA, bucket edges and z_i·z_t distribution are fitted on before step 0.",
    )
    num_layers: int = Field(12, gt=0, description="Number of transformer blocks.")
    num_attention_heads: int = Field(16, gt=0, description="Attention heads per block.")
    attention_head_dim: int = Field(
        64, gt=0, description="Channels per head; the transformer width is heads × head dim."
    )
    text_drop_prob: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Probability of replacing the caption (tokens, text embedding and z_i·z_t token) by "
        "learned null ones in training (for classifier-free guidance).",
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature dividing the (guided) logits.")
    top_k: int | None = Field(
        None, ge=1, description="Sample each code among the k most likely buckets only; null: all buckets."
    )

    @property
    def width(self) -> int:
        """The transformer's hidden width."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def prefix_length(self) -> int:
        """Conditioning tokens before the codes: text embedding, caption tokens, z_i·z_t."""
        return self.context_length + 2

    @model_validator(mode="after")
    def _check_sizes(self) -> "ARPriorConfig":
        if self.pca_dims > self.embed_dim:
            raise ValueError(f"pca_dims {self.pca_dims} is more than embed_dim {self.embed_dim}")
        if self.top_k is not None and self.top_k > self.num_buckets:
            raise ValueError(f"top_k {self.top_k} is more than num_buckets {self.num_buckets}")
        return self

    def declares(self) -> Declared:
        return Declared(
            embed_dim=self.embed_dim,
            text_width=self.text_width,
            context_length=self.context_length,
            needs_sampler=False,
        )
