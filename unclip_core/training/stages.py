"""What one training step means for each stage, and what its preview looks like.

Every stage reads the same raw batch (``image`` [B,3,H,W] in [-1,1], ``caption``, ``index``)
and turns it into the batch its component's ``training_loss`` expects:

* ``encoder``: CLIP's contrastive loss on (image, caption) pairs;
* ``prior``: frozen-CLIP text encoding → unnoised CLIP image embedding (MSE, x0);
* ``decoder``: image at the decoder's size, conditioned on its CLIP image embedding and caption
  (and, for a decoder that declares ``inpainting``, a repaint mask per image, drawn from the
  training generator: :mod:`unclip_core.training.masks`);
* ``upsampler``: image at the upsampler's output size (the component degrades and crops);
* ``autoencoder``: the image as the dataset renders it (reconstruction loss);
* ``decoder`` of a *latent* decoder: as a decoder, but the image is replaced by the frozen
  autoencoder's ``latents`` of it (the posterior's mean), encoded once per dataset item and
  cached like the embeddings (:class:`LatentCache`).

The frozen encoder's outputs depend only on the dataset item, so they are cached per index
(``train.cache_embeddings``): after the first epoch a prior step costs no CLIP forward.
A raw batch may instead carry them precomputed (``image_embed``, ``text_embed``,
``text_tokens``, ``text_mask``: the ``shards`` dataset with ``embeddings``), and then no
CLIP runs at all.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from unclip_core.images import resize_tensor
from unclip_core.interfaces import TextEncoding
from unclip_core.training.embeddings import text_encoding
from unclip_core.training.masks import random_masks


class EmbeddingCache:
    """Frozen-encoder outputs per dataset index: text embed, tokens, mask, image embed."""

    def __init__(self, encoder: Any, enabled: bool = True):
        self.encoder = encoder
        self.enabled = enabled
        self.store: dict[int, tuple[Tensor, Tensor, Tensor, Tensor]] = {}

    @torch.no_grad()
    def __call__(self, images: Tensor, captions: list[str], indices: list[int]) -> tuple[TextEncoding, Tensor]:
        missing = [i for i, index in enumerate(indices) if index not in self.store] if self.enabled else list(range(len(indices)))
        fresh: dict[int, tuple[Tensor, Tensor, Tensor, Tensor]] = {}
        if missing:
            text = self.encoder.encode_text([captions[i] for i in missing])
            image_embed = self.encoder.encode_image(images[missing])
            for row, i in enumerate(missing):
                entry = (text.embed[row].float(), text.tokens[row].float(), text.mask[row], image_embed[row].float())
                fresh[i] = entry
                if self.enabled:
                    self.store[indices[i]] = entry
        rows = [fresh[i] if i in fresh else self.store[index] for i, index in enumerate(indices)]
        text = TextEncoding(
            embed=torch.stack([r[0] for r in rows]),
            tokens=torch.stack([r[1] for r in rows]),
            mask=torch.stack([r[2] for r in rows]),
        )
        return text, torch.stack([r[3] for r in rows])


class LatentCache:
    """The frozen autoencoder's latents of each dataset item, encoded once (its mean: an
    encoding that is a distribution is not sampled, so a cached latent is the same whatever
    batch it was first encoded in, up to the matrix products' last bits)."""

    def __init__(self, autoencoder: Any, size: int, enabled: bool = True):
        self.autoencoder = autoencoder
        self.size = size
        self.enabled = enabled
        self.store: dict[int, Tensor] = {}

    @torch.no_grad()
    def __call__(self, images: Tensor, indices: list[int] | None) -> Tensor:
        keys = list(indices) if indices is not None and self.enabled else None
        missing = [i for i, key in enumerate(keys) if key not in self.store] if keys is not None else list(range(len(images)))
        fresh: dict[int, Tensor] = {}
        if missing:
            latents = self.autoencoder.encode(resize_tensor(images[missing], self.size)).float()
            for row, i in enumerate(missing):
                fresh[i] = latents[row]
                if keys is not None:
                    self.store[keys[i]] = latents[row]
        if keys is None:
            return torch.stack([fresh[i] for i in range(len(images))])
        return torch.stack([fresh[i] if i in fresh else self.store[key] for i, key in enumerate(keys)])


def stage_batch(
    stage: str, model: Any, raw: dict[str, Any], cache: EmbeddingCache | None, generator: torch.Generator | None = None,
    latents: LatentCache | None = None,
) -> dict[str, Any]:
    """The batch ``model.training_loss`` (or the encoder's contrastive loss) expects.

    ``generator`` is the training loop's: an inpainting decoder's masks are drawn from it, so
    they are checkpointed with it and a resumed run draws the same ones. Without it (previews,
    refilling the embedding cache on resume) no mask is drawn and the generator is untouched;
    nor is it for any other stage or decoder, so their random streams are as before."""
    images: Tensor = raw["image"]
    if stage == "encoder":
        batch = {"image": images, "caption": raw["caption"]}
        if raw.get("negatives") is not None:
            batch["negatives"] = raw["negatives"]
        return batch
    if stage == "upsampler":
        return {"image": resize_tensor(images, int(model.declared.image_size))}
    if stage == "autoencoder":
        return {"image": images, "caption": list(raw["caption"])}
    if "image_embed" in raw:  # precomputed beside the shards (unclip embed): no encoder forward
        text, image_embed = text_encoding(raw), raw["image_embed"].float()
    else:
        assert cache is not None
        text, image_embed = cache(images, raw["caption"], raw["index"])
    if stage == "prior":
        return {"image_embed": image_embed, "text": text}
    if stage == "decoder":
        size = int(model.declared.image_size)
        batch = {"image": resize_tensor(images, size), "image_embed": image_embed, "text": text}
        if model.declared.latent:
            assert latents is not None, "a latent decoder trains with the recipe's autoencoder"
            batch["latents"] = latents(images, raw.get("index"))
        if generator is not None and model.declared.inpainting:
            batch["inpaint_mask"] = random_masks(len(images), size, generator)
        return batch
    raise ValueError(f"unknown stage {stage!r}")


def stage_loss(stage: str, model: Any, batch: dict[str, Any], generator: torch.Generator) -> Tensor:
    if stage == "encoder":
        if "negatives" in batch:  # only then: an encoder plugin without hard negatives still trains
            return model.contrastive_loss(batch["image"], list(batch["caption"]), negatives=batch["negatives"])
        return model.contrastive_loss(batch["image"], list(batch["caption"]))
    return model.training_loss(batch, generator)
