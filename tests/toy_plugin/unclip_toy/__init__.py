"""An example unclip plugin: the ``text-as-image`` prior.

unCLIP's paper compares its priors against feeding the decoder the caption's CLIP *text*
embedding as if it were an image embedding. This prior does exactly that, so a recipe can
run that baseline by changing one line (``prior.type: text-as-image``). It needs no weights
and no sampler.
"""
from __future__ import annotations

import torch
from pydantic import Field

from unclip_core import ComponentConfig, Declared, Prior, TextEncoding, hookimpl


class TextAsImageConfig(ComponentConfig):
    """Settings of the ``text-as-image`` prior."""

    embed_dim: int | None = Field(default=None, ge=1, description="Embedding size, to check the recipe's chain.")
    noise: float = Field(default=0.0, ge=0.0, description="Std of Gaussian noise added before renormalising.")

    def declares(self) -> Declared:
        return Declared(embed_dim=self.embed_dim, needs_sampler=False)


class TextAsImagePrior(Prior[TextAsImageConfig]):
    """Returns the (optionally noised, renormalised) caption embedding as the image embedding."""

    def sample(self, text: TextEncoding, *, sampler=None, generator: torch.Generator, guidance_scale=1.0,
               candidates=1, callback=None) -> torch.Tensor:
        embed = text.embed.float()
        if self.config.noise == 0:
            return torch.nn.functional.normalize(embed, dim=-1)
        # `candidates` noisy copies per caption; keep the one closest to the caption (unCLIP's best of N).
        noise = torch.randn((candidates, *embed.shape), generator=generator, device=generator.device)
        samples = torch.nn.functional.normalize(embed + self.config.noise * noise.to(embed.device), dim=-1)
        best = (samples * embed).sum(dim=-1).argmax(dim=0)
        return samples[best, torch.arange(len(embed), device=embed.device)]


@hookimpl
def register_priors(register):
    register("text-as-image", TextAsImagePrior, TextAsImageConfig,
             summary="Baseline prior: the caption's CLIP text embedding used as the image embedding.")
