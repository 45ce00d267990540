"""Noise schedules: the betas a diffusion model was trained with.

A schedule belongs to the *model* (it fixed the noise levels during training); a sampler
only chooses which of its timesteps to visit. Everything is kept in float64 so that
respaced steps and parity checks against diffusers do not drift.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

BetaScheduleName = Literal["linear", "scaled_linear", "cosine", "squaredcos_cap_v2"]


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    """DDPM's linear schedule (Ho et al. 2020): diffusers' ``"linear"`` values exactly, which it
    spaces in float32 — a float64 spacing differs in the last bits (~1e-9), enough for a
    sampler that keeps diffusers' float32 schedule (``exact_float32``) to drift from it by 5e-3
    over 25 steps of a random model."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float32).to(torch.float64)


def scaled_linear_betas(num_steps: int, beta_start: float = 8.5e-4, beta_end: float = 1.2e-2) -> torch.Tensor:
    """Linear in sqrt(beta), as latent diffusion uses: diffusers' ``"scaled_linear"`` values
    exactly (spaced and squared in float32, as it does; see :func:`linear_betas`)."""
    return (torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float32) ** 2).to(torch.float64)


def cosine_betas(num_steps: int, max_beta: float = 0.999, offset: float = 0.008) -> torch.Tensor:
    """Improved-DDPM cosine schedule (Nichol & Dhariwal 2021), diffusers' ``"squaredcos_cap_v2"``.

    Computed exactly as diffusers does (per-step Python floats) so the betas match bit for bit.
    """

    def alpha_bar(t: float) -> float:
        return math.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
        for i in range(num_steps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


@dataclass(frozen=True)
class NoiseSchedule:
    """The forward process q(x_t | x_0) of a trained model, as ``betas`` over training timesteps."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        betas = self.betas.to(torch.float64)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alphas_cumprod", torch.cumprod(1.0 - betas, dim=0))

    @classmethod
    def from_name(
        cls,
        name: BetaScheduleName,
        num_train_timesteps: int = 1000,
        beta_start: float | None = None,
        beta_end: float | None = None,
    ) -> "NoiseSchedule":
        if name == "linear":
            return cls(linear_betas(num_train_timesteps, beta_start or 1e-4, beta_end or 2e-2))
        if name == "scaled_linear":
            return cls(scaled_linear_betas(num_train_timesteps, beta_start or 8.5e-4, beta_end or 1.2e-2))
        if name in ("cosine", "squaredcos_cap_v2"):
            return cls(cosine_betas(num_train_timesteps))
        raise ValueError(f"unknown beta schedule {name!r} (choose linear, scaled_linear or cosine)")

    @property
    def num_train_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """ᾱ_t, with ᾱ_{-1} = 1 (the clean image), as a float64 tensor shaped like ``t``."""
        t = torch.as_tensor(t, dtype=torch.long)
        padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])
        return padded[t + 1]
