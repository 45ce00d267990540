"""How unCLIP's decoder turns CLIP embeddings into UNet conditioning (unCLIP §2.2).

"We modify the architecture described in Nichol et al. (2021) by projecting and adding CLIP
embeddings to the existing timestep embedding, and by projecting CLIP embeddings into four
extra tokens of context that are concatenated to the sequence of outputs from the GLIDE text
encoder."

diffusers implements exactly this as ``UnCLIPTextProjModel``; its parameters are named here
exactly as there, so Karlo's ``text_proj`` weights load with a plain ``load_state_dict``.
We do not use that class itself because (1) it lives in diffusers' *deprecated* pipelines,
whose import path has already moved once; (2) it assumes the caption's token width equals
the embedding size (true for CLIP ViT-L/14, not for e.g. RN50), and (3) its forward ties
classifier-free guidance to a doubled batch, whereas our decoder drops conditioning per
sample. The arithmetic below is diffusers' forward, step for step (the tests check it
against diffusers' class on the same weights).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ClipConditioningProjection(nn.Module):
    """CLIP image embedding (+ caption) → (context tokens, additive time embedding)."""

    def __init__(
        self,
        *,
        embed_dim: int,
        text_width: int,
        time_embed_dim: int,
        cross_attention_dim: int,
        extra_context_tokens: int = 4,
        use_text: bool = True,
    ):
        super().__init__()
        self.clip_extra_context_tokens = extra_context_tokens
        # The null image embedding of classifier-free guidance (Karlo's ``cf_param``).
        self.learned_classifier_free_guidance_embeddings = nn.Parameter(torch.zeros(embed_dim))
        self.clip_image_embeddings_project_to_time_embeddings = nn.Linear(embed_dim, time_embed_dim)
        self.clip_extra_context_tokens_proj = nn.Linear(embed_dim, extra_context_tokens * cross_attention_dim)
        # Caption layers exist only when the decoder reads captions, so an image-only decoder
        # has no parameters that never receive a gradient (which DDP would reject).
        self.embedding_proj: nn.Linear | None = None
        self.encoder_hidden_states_proj: nn.Linear | None = None
        self.text_encoder_hidden_states_norm: nn.LayerNorm | None = None
        if use_text:
            self.embedding_proj = nn.Linear(embed_dim, time_embed_dim)
            self.encoder_hidden_states_proj = nn.Linear(text_width, cross_attention_dim)
            self.text_encoder_hidden_states_norm = nn.LayerNorm(cross_attention_dim)

    def forward(
        self, image_embed: Tensor, text_embed: Tensor | None = None, text_tokens: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(context [B, 4 (+ L), C], time_embedding [B, T])``.

        ``image_embed`` ``[B, D]`` and, when the decoder reads captions, ``text_embed`` ``[B, D]``
        and ``text_tokens`` ``[B, L, W]`` must already hold the null inputs where conditioning
        is dropped.
        """
        batch = image_embed.shape[0]
        time_embedding = self.clip_image_embeddings_project_to_time_embeddings(image_embed)
        # diffusers (and so Karlo's weights) lay the projection out as [C, n] per sample.
        extra = self.clip_extra_context_tokens_proj(image_embed)
        extra = extra.reshape(batch, -1, self.clip_extra_context_tokens).permute(0, 2, 1)
        if self.embedding_proj is None:
            return extra, time_embedding
        if text_embed is None or text_tokens is None:
            raise ValueError("this projection reads captions: give text_embed and text_tokens")
        time_embedding = time_embedding + self.embedding_proj(text_embed)
        tokens = self.text_encoder_hidden_states_norm(self.encoder_hidden_states_proj(text_tokens))
        return torch.cat([extra, tokens], dim=1), time_embedding
