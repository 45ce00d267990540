"""The unCLIP diffusion prior (Ramesh et al. 2022, §2.1): caption → CLIP image embedding.

A decoder-only causal transformer reads ``[caption tokens, text embedding, timestep,
noised image embedding, query]`` and predicts the *unnoised* image embedding at the query
position (x0 parameterisation). diffusers' :class:`PriorTransformer` is exactly that model,
so it is kept whole as ``self.transformer`` — with its own parameter names and its
``clip_mean``/``clip_std`` embedding statistics — which lets Karlo's published weights load
into this component unchanged. This module adds what diffusers leaves to its pipeline: the
null caption for classifier-free guidance, normalisation of the embeddings, best-of-N
selection and the training loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import PriorTransformer
from torch import Tensor, nn

from unclip_core import InputError, NoiseSchedule, PriorCondition, TextEncoding
from unclip_core.diffusion.losses import diffusion_loss, drop_mask
from unclip_core.priors import DiffusionPrior as DiffusionPriorBase
from unclip_core.priors import training_inputs
from unclip_core.priors import select_best_candidates  # noqa: F401 - re-exported by the plugin package
from unclip_core.text_shapes import check_text_shapes

from unclip_plugins.diffusion_prior.config import DiffusionPriorConfig

NAME = "diffusion-prior"


class DiffusionPrior(DiffusionPriorBase[DiffusionPriorConfig]):
    """unCLIP's diffusion prior on diffusers' ``PriorTransformer``.

    ``forward`` works in the *normalised* embedding space ``(z − clip_mean) / clip_std``,
    the space the diffusion runs in; :meth:`sample` maps back to CLIP's space.
    """

    prediction_type = "x0"

    def __init__(self, config: DiffusionPriorConfig):
        super().__init__(config)
        self.variance_type = config.variance_type
        self.clip_range = config.clip_range
        self._schedule = NoiseSchedule.from_name(config.beta_schedule, config.num_train_timesteps)

        # PriorTransformer projects caption tokens with Linear(embedding_dim, width), so its own
        # projection serves only when W == D (CLIP ViT-L/14, Karlo); otherwise ours does.
        own_projection = config.text_width != config.embed_dim
        self.transformer = PriorTransformer(
            num_attention_heads=config.num_attention_heads,
            attention_head_dim=config.attention_head_dim,
            num_layers=config.num_layers,
            embedding_dim=config.embed_dim,
            num_embeddings=config.context_length,
            additional_embeddings=4,  # text embedding, timestep, noised embedding, query
            encoder_hid_proj_type=None if own_projection else "linear",
        )
        self.text_proj = nn.Linear(config.text_width, config.width) if own_projection else None
        self._init_fresh_weights()

        # The null caption of classifier-free guidance. Learned; a Karlo importer sets them
        # (and the mask) to CLIP's encoding of "".
        self.null_text_embed = nn.Parameter(torch.zeros(config.embed_dim))
        self.null_text_tokens = nn.Parameter(torch.zeros(config.context_length, config.text_width))
        self.register_buffer("null_text_mask", torch.ones(config.context_length, dtype=torch.bool))

    def _init_fresh_weights(self) -> None:
        """diffusers starts the position codes and the query token at zero (it expects loaded
        weights), and the embedding std at zero; a prior trained from scratch needs distinct
        positions, and identity statistics until :meth:`fit_normalization` runs. Karlo
        initialises both with std 0.01."""
        transformer = self.transformer
        with torch.no_grad():
            nn.init.normal_(transformer.positional_embedding, std=0.01)
            if transformer.prd_embedding is not None:
                nn.init.normal_(transformer.prd_embedding, std=0.01)
            transformer.clip_mean.zero_()
            transformer.clip_std.fill_(1.0)
        # Statistics of the data, not weights to learn.
        transformer.clip_mean.requires_grad_(False)
        transformer.clip_std.requires_grad_(False)

    # ------------------------------------------------------------------ diffusion model
    @property
    def schedule(self) -> NoiseSchedule:
        return self._schedule

    def forward(self, x_t: Tensor, t: Tensor, cond: PriorCondition) -> Tensor:  # type: ignore[override]
        """Predicted unnoised embedding ``[B, D]`` (normalised space) for noised ``x_t``
        at integer timesteps ``t`` ``[B]``; rows with ``cond.drop_text`` use the null caption."""
        self._check_text(cond.text_embed, cond.text_tokens, cond.text_mask, "prior condition")
        dtype = self.dtype
        drop = cond.drop_text.to(device=x_t.device, dtype=torch.bool)
        text_embed = torch.where(drop[:, None], self.null_text_embed[None], cond.text_embed.to(dtype))
        tokens = torch.where(drop[:, None, None], self.null_text_tokens[None], cond.text_tokens.to(dtype))
        mask = torch.where(drop[:, None], self.null_text_mask[None], cond.text_mask.to(torch.bool))
        if self.text_proj is not None:
            tokens = self.text_proj(tokens)
        (prediction,) = self.transformer(
            x_t.to(dtype),
            timestep=t,
            proj_embedding=text_embed,
            encoder_hidden_states=tokens,
            attention_mask=mask,
            return_dict=False,
        )
        return prediction

    # ------------------------------------------------------------------ embedding statistics
    def normalize(self, image_embed: Tensor) -> Tensor:
        """CLIP space → the normalised space the diffusion runs in."""
        return (image_embed - self.transformer.clip_mean) / self.transformer.clip_std

    def unnormalize(self, x: Tensor) -> Tensor:
        """Normalised space → CLIP space (diffusers' ``post_process_latents``)."""
        return x * self.transformer.clip_std + self.transformer.clip_mean

    @torch.no_grad()
    def fit_normalization(self, image_embeds: Tensor) -> None:
        """Set ``clip_mean``/``clip_std`` to the per-dimension statistics of training
        embeddings ``[N, D]``, so the diffused variable has unit scale in every dimension."""
        if image_embeds.ndim != 2 or image_embeds.shape[1] != self.config.embed_dim or image_embeds.shape[0] < 2:
            raise InputError(
                f"{NAME}: fit_normalization needs [N, {self.config.embed_dim}] image embeddings "
                f"with N >= 2, got {list(image_embeds.shape)}"
            )
        embeds = image_embeds.to(device=self.device, dtype=torch.float64)
        self.transformer.clip_mean.copy_(embeds.mean(dim=0, keepdim=True))
        self.transformer.clip_std.copy_(embeds.std(dim=0, keepdim=True).clamp_min(1e-6))

    def fit_from_embeddings(self, image_embeds: Tensor, text_embeds: Tensor) -> dict[str, float]:
        """The training loop's data-fitting hook (called once before step 0 of a fresh run):
        the prior's statistics come from the image embeddings alone."""
        self.fit_normalization(image_embeds)
        return {}

    # ------------------------------------------------------------------ prior
    def check_text(self, text: TextEncoding) -> None:
        self._check_text(text.embed, text.tokens, text.mask, "text encoding")

    def to_embedding(self, x: Tensor) -> Tensor:
        """Sampled (normalised) variable → CLIP image embeddings, unit-norm if configured.
        Sampling itself is :class:`unclip_core.priors.DiffusionPrior`'s: a Stage run, best of N."""
        embeds = self.unnormalize(x.to(self.dtype))
        return F.normalize(embeds, dim=-1) if self.config.normalize_output else embeds

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        """The paper's prior loss: MSE between the predicted and the true unnoised embedding.

        ``batch`` holds ``"image_embed"`` ``[B, D]`` (CLIP image embeddings) and ``"text"``
        (a :class:`TextEncoding`); captions are dropped with ``text_drop_prob``.
        """
        text, image_embed = training_inputs(self, batch, NAME, self.config.embed_dim, self.dtype)
        x0 = self.normalize(image_embed)
        drop = drop_mask(len(text), self.config.text_drop_prob, generator, device=self.device)
        cond = PriorCondition(text.embed, text.tokens, text.mask, drop)
        return diffusion_loss(self, x0, cond, generator=generator)

    # ------------------------------------------------------------------ checks
    def _check_text(self, embed: Tensor, tokens: Tensor, mask: Tensor, what: str) -> None:
        cfg = self.config
        check_text_shapes(NAME, embed, tokens, mask, what, embed_dim=cfg.embed_dim,
                          context_length=cfg.context_length, text_width=cfg.text_width)
