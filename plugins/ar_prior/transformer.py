"""A tiny decoder-only transformer (after minGPT/nanoGPT): pre-norm blocks of causal
self-attention and an MLP, with a key mask for padded caption tokens.

Written out rather than built from ``nn.TransformerEncoder`` so that the one mask that matters
— causal, and padding keys excluded — is visible in one line, and no fast path with its own
masking rules (nested tensors) applies in eval mode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=-1)
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


class CausalTransformer(nn.Module):
    """``forward(x [B, S, W], key_mask [B, S] bool, True = real)`` → ``[B, S, W]`` (normed).

    Position ``i`` attends to positions ``j ≤ i`` whose key is real. Callers keep position 0
    real in every row, so no query is left with nothing to attend to."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        length = x.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        allowed = (causal[None] & key_mask[:, None, :].bool())[:, None]  # [B, 1, S, S]
        for block in self.blocks:
            x = block(x, allowed)
        return self.norm(x)
