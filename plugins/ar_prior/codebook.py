"""The AR prior's discrete representation of a CLIP image embedding (unCLIP §2.1).

An image embedding z_i ``[D]`` becomes ``K`` integer codes: project onto the top ``K``
principal components of training embeddings, then put each coordinate in one of ``B``
buckets whose edges are that coordinate's equal-count quantiles on the training data. Codes
decode back through bucket centres → inverse PCA → unit norm. A second, one-dimensional
quantiser does the same for the dot product z_i·z_t, the token the prior is conditioned on.

Everything fitted lives in registered buffers, so it is in the state dict: a weights file is
self-contained (no side file of statistics), EMA copies it, checkpoints restore it and exact
resume never refits. Fitting is deterministic (float64 SVD and sorting of fixed data).

Why quantiles: equal-count buckets spend resolution where the data is, so 1024 (or far fewer)
buckets lose almost nothing, and every bucket of the z_i·z_t token has the same training
mass — "the top half of the distribution" is then simply the upper half of the tokens.
Bucket centres are the mean of the training values in each bucket (the value that minimises
the squared reconstruction error for that bucket), not the midpoint of its edges, which the
two open-ended outer buckets do not have.

Before fitting, the buffers describe a random unit vector (identity basis, zero mean, the
quantiles of N(0, 1/D)), so an unfitted prior still trains and samples — the contract suite
and smoke tests rely on that.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

def quantiles(values: Tensor, count: int) -> Tensor:
    """Edges between ``count`` equal-count buckets of each column of ``values`` ``[N, K]``:
    ``[K, count − 1]`` at quantiles ``1/count … (count−1)/count``, interpolated linearly between
    order statistics (numpy's default ``method="linear"``). Written out rather than
    ``torch.quantile``, which refuses inputs over 2**24 elements."""
    ordered = values.sort(dim=0).values  # [N, K]
    n = ordered.shape[0]
    q = torch.arange(1, count, dtype=torch.float64, device=values.device) / count
    position = q * (n - 1)
    lower = position.floor().long()
    upper = position.ceil().long()
    fraction = (position - lower).to(values.dtype)[:, None]
    edges = ordered[lower] + (ordered[upper] - ordered[lower]) * fraction  # [count-1, K]
    return edges.T.contiguous()


def assign(values: Tensor, edges: Tensor) -> Tensor:
    """Bucket index of each value: the number of edges at or below it. ``values`` ``[N, K]``,
    ``edges`` ``[K, B − 1]`` sorted → ``[N, K]`` in ``0 … B−1``."""
    return torch.searchsorted(edges, values.T.contiguous(), right=True).T


def bucket_means(values: Tensor, codes: Tensor, edges: Tensor) -> Tensor:
    """``[K, B]`` mean of the training values in each bucket; an empty bucket (only possible
    with tied values) falls back to the middle of its edges, or its one edge at the ends."""
    k, b = edges.shape[0], edges.shape[1] + 1
    sums = torch.zeros(k, b, dtype=values.dtype, device=values.device)
    counts = torch.zeros(k, b, dtype=values.dtype, device=values.device)
    sums.scatter_add_(1, codes.T, values.T)
    counts.scatter_add_(1, codes.T, torch.ones_like(values.T))
    lower = torch.cat([edges[:, :1], edges], dim=1)
    upper = torch.cat([edges, edges[:, -1:]], dim=1)
    fallback = (lower + upper) / 2
    return torch.where(counts > 0, sums / counts.clamp_min(1), fallback)


def _normal_quantiles(count: int, scale: float) -> tuple[Tensor, Tensor]:
    """Edges and centres of ``count`` equal-mass buckets of N(0, scale²) (the unfitted state)."""
    edges = torch.special.ndtri(torch.arange(1, count, dtype=torch.float64) / count) * scale
    centres = torch.special.ndtri((torch.arange(count, dtype=torch.float64) + 0.5) / count) * scale
    return edges.float(), centres.float()


class PCACodebook(nn.Module):
    """PCA basis, bucket edges and centres of the codes and of the z_i·z_t token, as buffers.

    Buffers (all in the state dict): ``mean`` ``[D]``, ``components`` ``[K, D]`` (orthonormal
    rows, largest variance first), ``explained_variance`` ``[]`` (fraction of the training
    variance the K components keep), ``edges`` ``[K, B−1]``, ``centres`` ``[K, B]``,
    ``dot_edges`` ``[T−1]``, ``dot_centres`` ``[T]``, ``dot_probs`` ``[T]`` (each token's share
    of the training pairs).
    """

    def __init__(self, embed_dim: int, dims: int, buckets: int, dot_buckets: int):
        super().__init__()
        self.embed_dim, self.dims, self.buckets, self.dot_buckets = embed_dim, dims, buckets, dot_buckets
        scale = 1.0 / math.sqrt(embed_dim)  # a coordinate of a random unit vector, and z_i·z_t of two
        edges, centres = _normal_quantiles(buckets, scale)
        dot_edges, dot_centres = _normal_quantiles(dot_buckets, scale)
        self.register_buffer("mean", torch.zeros(embed_dim))
        self.register_buffer("components", torch.eye(dims, embed_dim))
        self.register_buffer("explained_variance", torch.tensor(float(dims) / embed_dim))
        self.register_buffer("edges", edges.repeat(dims, 1))
        self.register_buffer("centres", centres.repeat(dims, 1))
        self.register_buffer("dot_edges", dot_edges)
        self.register_buffer("dot_centres", dot_centres)
        self.register_buffer("dot_probs", torch.full((dot_buckets,), 1.0 / dot_buckets))

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit(self, image_embeds: Tensor, text_embeds: Tensor, target_variance: float | None = None) -> dict[str, float]:
        """Fit every buffer to training pairs ``[N, D]``; returns figures for the training log:
        the explained variance of the K kept dimensions, the fewest dimensions that would keep
        ``target_variance`` (``pca_dims_needed``), and the round trip's cosine on these
        embeddings."""
        x = image_embeds.detach().to(dtype=torch.float64, device=self.mean.device)
        t = text_embeds.detach().to(dtype=torch.float64, device=self.mean.device)
        mean = x.mean(dim=0)
        centred = x - mean
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        components = vh[: self.dims]
        # SVD's signs are arbitrary; fix them (largest entry positive) so a fit is reproducible
        # across LAPACK builds and the basis can be compared with another SVD's.
        biggest = components.abs().argmax(dim=1)
        signs = torch.sign(components[torch.arange(self.dims), biggest])
        components = components * signs[:, None]
        power = singular.square()
        cumulative = power.cumsum(0) / power.sum().clamp_min(1e-300)

        coords = centred @ components.T  # [N, K]
        edges = quantiles(coords, self.buckets)
        codes = assign(coords, edges)
        centres = bucket_means(coords, codes, edges)

        dots = (x * t).sum(dim=1, keepdim=True)  # [N, 1]
        dot_edges = quantiles(dots, self.dot_buckets)
        dot_codes = assign(dots, dot_edges)
        dot_centres = bucket_means(dots, dot_codes, dot_edges)
        dot_probs = torch.bincount(dot_codes[:, 0], minlength=self.dot_buckets).double() / len(dots)

        self.mean.copy_(mean)
        self.components.copy_(components)
        self.explained_variance.copy_(cumulative[self.dims - 1])
        self.edges.copy_(edges)
        self.centres.copy_(centres)
        self.dot_edges.copy_(dot_edges[0])
        self.dot_centres.copy_(dot_centres[0])
        self.dot_probs.copy_(dot_probs)

        roundtrip = F.cosine_similarity(self.decode(self.encode(image_embeds)).double(), x, dim=-1)
        figures = {
            "fit_items": float(len(x)),
            "pca_dims": float(self.dims),
            "pca_explained_variance": float(cumulative[self.dims - 1]),
            "roundtrip_cosine_mean": float(roundtrip.mean()),
            "roundtrip_cosine_min": float(roundtrip.min()),
            "dot_median": float(dots.median()),
        }
        if target_variance is not None:
            short = int((cumulative < target_variance - 1e-12).sum())
            figures["pca_dims_needed"] = float(min(short + 1, len(cumulative)))
        return figures

    # ------------------------------------------------------------------ codes
    def project(self, image_embeds: Tensor) -> Tensor:
        """``[N, D]`` → ``[N, K]`` PCA coordinates."""
        return (image_embeds.to(self.mean.dtype) - self.mean) @ self.components.T

    def encode(self, image_embeds: Tensor) -> Tensor:
        """``[N, D]`` image embeddings → ``[N, K]`` codes (long, ``0 … B−1``)."""
        return assign(self.project(image_embeds), self.edges)

    def decode(self, codes: Tensor) -> Tensor:
        """``[N, K]`` codes → ``[N, D]`` unit-norm embeddings: bucket centres, inverse PCA,
        renormalised (PCA truncation and quantisation both shrink the vector a little)."""
        coords = torch.gather(self.centres.expand(codes.shape[0], -1, -1), 2, codes[..., None]).squeeze(-1)
        return F.normalize(coords @ self.components + self.mean, dim=-1)

    # ------------------------------------------------------------------ the z_i·z_t token
    def dot_tokens(self, dots: Tensor) -> Tensor:
        """``[N]`` dot products → ``[N]`` tokens (long, ``0 … T−1``)."""
        return assign(dots.to(self.dot_edges.dtype)[:, None], self.dot_edges[None])[:, 0]

    def top_tokens(self, quantile: float) -> Tensor:
        """``[T]`` bool: the tokens lying wholly above ``quantile`` of the training dot products
        (with equal-count buckets, the upper ``1 − quantile`` of the tokens). The last token
        always qualifies, so the set is never empty."""
        below = torch.cumsum(self.dot_probs.double(), 0) - self.dot_probs.double()  # mass under each token
        keep = below >= quantile - 1e-6
        keep[-1] = True
        return keep

    def sample_dot_tokens(self, count: int, quantile: float, generator: torch.Generator) -> Tensor:
        """``[count]`` tokens drawn from the training distribution of z_i·z_t restricted to the
        part above ``quantile`` (unCLIP samples "from the top half")."""
        weights = torch.where(self.top_tokens(quantile), self.dot_probs.double(), torch.zeros((), dtype=torch.float64))
        if float(weights.sum()) <= 0:  # a token set with no training mass: draw among them evenly
            weights = self.top_tokens(quantile).double()
        draws = torch.multinomial(weights.cpu().float(), count, replacement=True, generator=generator)
        return draws.to(self.dot_probs.device)
