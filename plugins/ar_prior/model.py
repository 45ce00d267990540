"""unCLIP's autoregressive prior (Ramesh et al. 2022, §2.1): caption → CLIP image embedding
as a sequence of discrete codes.

The image embedding is reduced by PCA and each kept coordinate quantised
(:mod:`~unclip_plugins.ar_prior.codebook`); a causal transformer
(:mod:`~unclip_plugins.ar_prior.transformer`) reads the conditioning as a prefix and predicts
the codes one by one, dimension 0 (most variance) first::

    [text embedding, caption token 1 … L, z_i·z_t token, code 1 … code K−1]
      → predicts code 1 at the z_i·z_t token, code k+1 at code k

The text embedding comes first so every position has a real (unpadded) key to attend to.
Each code position has its own learned position embedding, so the model knows which PCA
dimension a code belongs to; code values share one embedding table (bucket b is "the b-th
quantile" in every dimension).

Classifier-free guidance: in training the caption is dropped with ``text_drop_prob`` — the
caption tokens, the text embedding *and* the z_i·z_t token become learned null ones, so the
unconditional branch is p(codes) — and at sampling the next code's logits are
``uncond + s · (cond − uncond)``, then divided by the temperature and cut to the top k.
Guidance on logits equals guidance on log-probabilities: the two differ by a per-row constant
that softmax ignores.

Sampling recomputes the whole sequence for each of the K codes (no KV cache): O(K · S²)
attention for a sequence of S = L + 2 + K tokens instead of O(S²). For the shapes model
(S ≈ 38) that is milliseconds; a cache would matter at the paper's 77 + 319 tokens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unclip_core import InputError, Prior, PriorCondition, TextEncoding, UnclipError
from unclip_core.priors import best_of, training_inputs
from unclip_core.diffusion.losses import drop_mask
from unclip_core.text_shapes import check_text_shapes
from unclip_core.interfaces import Sampler, StepCallback, StepInfo, concat_conditions

from unclip_plugins.ar_prior.codebook import PCACodebook
from unclip_plugins.ar_prior.config import ARPriorConfig
from unclip_plugins.ar_prior.transformer import CausalTransformer

NAME = "ar-prior"


class ARPrior(Prior[ARPriorConfig]):
    """The autoregressive prior: a causal transformer over quantised PCA codes."""

    def __init__(self, config: ARPriorConfig):
        super().__init__(config)
        self.fit_items = config.fit_items  # read by the training loop before it calls fit_from_embeddings
        width = config.width
        self.codebook = PCACodebook(config.embed_dim, config.pca_dims, config.num_buckets, config.dot_buckets)
        self.embed_proj = nn.Linear(config.embed_dim, width)
        self.text_proj = nn.Linear(config.text_width, width)
        self.dot_embedding = nn.Embedding(config.dot_buckets + 1, width)  # last row: the null token
        self.code_embedding = nn.Embedding(config.num_buckets, width)
        # One position per prefix token and per code fed back in (the last code is never an input).
        self.position = nn.Parameter(torch.zeros(config.prefix_length + config.pca_dims - 1, width))
        self.transformer = CausalTransformer(width, config.num_layers, config.num_attention_heads)
        self.head = nn.Linear(width, config.num_buckets)
        # The null caption of classifier-free guidance, learned, in the encoder's space.
        self.null_text_embed = nn.Parameter(torch.zeros(config.embed_dim))
        self.null_text_tokens = nn.Parameter(torch.zeros(config.context_length, config.text_width))
        for table in (self.dot_embedding.weight, self.code_embedding.weight, self.position):
            nn.init.normal_(table, std=0.02)

    @property
    def null_dot_token(self) -> int:
        return self.config.dot_buckets

    # ------------------------------------------------------------------ the network
    def prefix(self, cond: PriorCondition, dot_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``([B, P, width], [B, P] bool)``: the conditioning tokens and their key mask. Rows
        with ``cond.drop_text`` read the learned null caption and the null z_i·z_t token."""
        self._check_text(cond.text_embed, cond.text_tokens, cond.text_mask, "prior condition")
        dtype = self.head.weight.dtype
        drop = cond.drop_text.to(device=self.device, dtype=torch.bool)
        embed = torch.where(drop[:, None], self.null_text_embed[None], cond.text_embed.to(dtype))
        tokens = torch.where(drop[:, None, None], self.null_text_tokens[None], cond.text_tokens.to(dtype))
        mask = torch.where(drop[:, None], torch.ones_like(cond.text_mask, dtype=torch.bool), cond.text_mask.bool())
        dots = torch.where(drop, torch.full_like(dot_tokens, self.null_dot_token), dot_tokens.to(self.device))
        states = torch.cat(
            [self.embed_proj(embed)[:, None], self.text_proj(tokens), self.dot_embedding(dots)[:, None]], dim=1
        )
        real = torch.ones(len(drop), 1, dtype=torch.bool, device=self.device)
        return states, torch.cat([real, mask, real], dim=1)

    def logits(self, prefix: tuple[Tensor, Tensor], codes: Tensor) -> Tensor:
        """``[B, j+1, num_buckets]``: the prediction of codes ``0 … j`` given the prefix and the
        first ``j`` codes ``[B, j]`` (``j`` from 0 to K−1)."""
        states, mask = prefix
        inputs = torch.cat([states, self.code_embedding(codes)], dim=1)
        length = inputs.shape[1]
        real = torch.cat([mask, torch.ones(codes.shape, dtype=torch.bool, device=mask.device)], dim=1)
        hidden = self.transformer(inputs + self.position[:length], real)
        return self.head(hidden[:, states.shape[1] - 1 :])

    def forward(self, codes: Tensor, cond: PriorCondition, dot_tokens: Tensor) -> Tensor:  # type: ignore[override]
        """Teacher-forced logits ``[B, K, num_buckets]`` for all K codes ``[B, K]``."""
        return self.logits(self.prefix(cond, dot_tokens), codes[:, :-1])

    # ------------------------------------------------------------------ fitting
    def fit_from_embeddings(self, image_embeds: Tensor, text_embeds: Tensor) -> dict[str, float]:
        """The training loop's data-fitting hook, run once before step 0 of a fresh run on the
        frozen CLIP's embeddings of the first ``fit_items`` training pairs ``[N, D]``:
        fits the PCA basis, the bucket edges and centres and the z_i·z_t distribution
        (:meth:`PCACodebook.fit`). Returns the figures the loop logs (explained variance,
        round-trip cosine). Fails when the kept dimensions explain less than
        ``min_explained_variance``, naming the ``pca_dims`` that would do."""
        cfg = self.config
        for name, embeds in (("image", image_embeds), ("text", text_embeds)):
            if embeds.ndim != 2 or embeds.shape[1] != cfg.embed_dim:
                raise InputError(f"{NAME}: fit_from_embeddings needs [N, {cfg.embed_dim}] {name} embeddings, got {list(embeds.shape)}")
        if image_embeds.shape[0] != text_embeds.shape[0]:
            raise InputError(f"{NAME}: fit_from_embeddings got {image_embeds.shape[0]} image but {text_embeds.shape[0]} text embeddings")
        if image_embeds.shape[0] < max(cfg.pca_dims + 1, cfg.num_buckets, cfg.dot_buckets):
            raise InputError(
                f"{NAME}: fitting {cfg.pca_dims} PCA dims and {cfg.num_buckets} buckets needs at least "
                f"{max(cfg.pca_dims + 1, cfg.num_buckets, cfg.dot_buckets)} training embeddings, got {image_embeds.shape[0]} "
                "(raise fit_items or use a larger dataset)"
            )
        figures = self.codebook.fit(image_embeds, text_embeds, cfg.min_explained_variance)
        kept = figures["pca_explained_variance"]
        if cfg.min_explained_variance is not None and kept < cfg.min_explained_variance:
            raise UnclipError(
                f"{NAME}: pca_dims {cfg.pca_dims} keeps {kept:.2%} of the variance of {int(figures['fit_items'])} training "
                f"embeddings, below min_explained_variance {cfg.min_explained_variance:g}; set pca_dims to at least "
                f"{int(figures['pca_dims_needed'])}"
            )
        return figures

    # ------------------------------------------------------------------ prior
    @torch.no_grad()
    def sample(
        self,
        text: TextEncoding,
        *,
        sampler: Sampler | None,
        generator: torch.Generator,
        guidance_scale: float = 1.0,
        candidates: int = 1,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """``[B, D]`` unit-norm image embeddings: ``candidates`` code sequences per caption,
        each with its own z_i·z_t token from the top of the training distribution, decoded,
        and the one closest to the caption's embedding kept. ``callback`` gets one
        :class:`StepInfo` per code, with the codes so far as ``x``."""
        if sampler is not None:
            raise UnclipError(
                f"{NAME}: the autoregressive prior samples its codes itself and takes no sampler "
                f"(got {type(sampler).__name__}); remove the prior stage's sampler"
            )
        self._check_text(text.embed, text.tokens, text.mask, "text encoding")

        def draw(cond: PriorCondition) -> Tensor:
            dots = self.codebook.sample_dot_tokens(len(cond.drop_text), self.config.dot_quantile, generator)
            return self.codebook.decode(self.sample_codes(cond, dots, generator, guidance_scale, callback))

        return best_of(self, text, candidates, draw)

    def sample_codes(
        self,
        cond: PriorCondition,
        dot_tokens: Tensor,
        generator: torch.Generator,
        guidance_scale: float = 1.0,
        callback: StepCallback | None = None,
    ) -> Tensor:
        """``[B, K]`` codes drawn one at a time from :meth:`next_logits`."""
        guided = guidance_scale != 1.0
        if guided:  # one batch: conditional rows, then unconditional ones
            both = concat_conditions(cond, cond.unconditional())
            dot_tokens = torch.cat([dot_tokens, torch.full_like(dot_tokens, self.null_dot_token)])
            prefix = self.prefix(both, dot_tokens)
        else:
            prefix = self.prefix(cond, dot_tokens)
        count, total = len(cond.drop_text), self.config.pca_dims
        codes = torch.zeros(count, 0, dtype=torch.long, device=self.device)
        for index in range(total):
            logits = self.next_logits(prefix, codes, guidance_scale)
            codes = torch.cat([codes, self._draw(logits, generator)[:, None]], dim=1)
            if callback is not None:
                callback(StepInfo(index=index, total=total, t=total - 1 - index, x=codes))
        return codes

    def next_logits(self, prefix: tuple[Tensor, Tensor], codes: Tensor, guidance_scale: float = 1.0) -> Tensor:
        """``[B, num_buckets]`` guided logits of the next code. With guidance the prefix holds
        the conditional rows then the unconditional ones (2B), and the result is
        ``uncond + s · (cond − uncond)``."""
        if guidance_scale == 1.0:
            return self.logits(prefix, codes)[:, -1]
        last = self.logits(prefix, codes.repeat(2, 1))[:, -1]
        conditional, unconditional = last.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def _draw(self, logits: Tensor, generator: torch.Generator) -> Tensor:
        """One bucket per row from ``softmax(logits / temperature)``, cut to the top k."""
        logits = logits.float() / self.config.temperature
        if self.config.top_k is not None and self.config.top_k < logits.shape[-1]:
            kth = logits.topk(self.config.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=generator)[:, 0].to(self.device)

    # ------------------------------------------------------------------ training
    def training_loss(self, batch: dict, generator: torch.Generator) -> Tensor:
        """Cross-entropy of the K codes of the true image embedding, teacher-forced, with the
        true pair's z_i·z_t token; the caption is dropped with ``text_drop_prob``.

        ``batch`` holds ``"image_embed"`` ``[B, D]`` and ``"text"`` (a :class:`TextEncoding`).
        """
        text, image_embed = training_inputs(self, batch, NAME, self.config.embed_dim, torch.float32)
        with torch.no_grad():
            codes = self.codebook.encode(image_embed)
            dots = self.codebook.dot_tokens((image_embed * text.embed.float()).sum(-1))
        drop = drop_mask(len(text), self.config.text_drop_prob, generator, device=self.device)
        logits = self(codes, PriorCondition(text.embed, text.tokens, text.mask, drop), dots)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), codes.reshape(-1))

    # ------------------------------------------------------------------ checks
    def _check_text(self, embed: Tensor, tokens: Tensor, mask: Tensor, what: str) -> None:
        cfg = self.config
        check_text_shapes(NAME, embed, tokens, mask, what, embed_dim=cfg.embed_dim,
                          context_length=cfg.context_length, text_width=cfg.text_width)
