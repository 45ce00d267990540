"""The ``hf-clip`` encoder: transformers' CLIP towers behind unclip's :class:`Encoder` contract.

Captions are encoded exactly as diffusers' ``UnCLIPPipeline`` encodes them for Karlo: the
tokenizer pads to ``context_length`` (truncating longer captions), the token ids go through
``CLIPTextModelWithProjection`` *without* an attention mask (CLIP's causal mask is all it
uses), the pooled ``text_embeds`` are the caption embedding and ``last_hidden_state`` the
per-token features, and the tokenizer's attention mask marks the real tokens.

The towers are kept whole as ``self.text_encoder`` and ``self.image_encoder``, named after the
folders of a diffusers unCLIP checkpoint, so the component's state dict is transformers' own
under those prefixes.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from unclip_core import Encoder, InputError, TextEncoding, UnclipError
from unclip_core.clip_pixels import is_pil_image, tensor_batch
from unclip_core.images import pil_to_tensor
from unclip_plugins.diffusers_folders.transformers_clip import NAME, check_prompts, import_transformers

from .hf_clip_config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, HfClipConfig

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

class HfClipEncoder(Encoder[HfClipConfig]):
    """CLIP text (and image) towers from transformers, with a local tokenizer."""

    def __init__(self, config: HfClipConfig):
        super().__init__(config)
        transformers = import_transformers()
        self.text_encoder = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**config.text_config))
        self.image_encoder = None
        if config.vision_config is not None:
            self.image_encoder = transformers.CLIPVisionModelWithProjection(
                transformers.CLIPVisionConfig(**config.vision_config)
            )
        try:
            self.tokenizer = transformers.CLIPTokenizer.from_pretrained(config.tokenizer, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; the user needs the folder
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise InputError(
                f"tokenizer folder {config.tokenizer}: transformers cannot load a CLIP tokenizer from it "
                f"({type(exc).__name__}: {detail})"
            ) from None
        self.context_length = config.length
        self.image_mean = tuple(config.image_mean or OPENAI_CLIP_MEAN)
        self.image_std = tuple(config.image_std or OPENAI_CLIP_STD)

    # ------------------------------------------------------------------ text
    def tokenize(self, prompts: Sequence[str] | str) -> tuple[Tensor, Tensor]:
        """``(ids [B, L], mask [B, L] bool)`` on the CPU, padded or truncated to L (with a
        warning for each caption that is cut)."""
        prompts = check_prompts(prompts)
        length = self.context_length
        for prompt in prompts:
            count = len(self.tokenizer(prompt).input_ids)
            if count > length:
                shown = prompt if len(prompt) <= 60 else prompt[:60] + "…"
                warnings.warn(
                    f"prompt {shown!r} is {count} tokens long; truncated to the encoder's context of {length}",
                    UserWarning,
                    stacklevel=3,
                )
        tokens = self.tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        return tokens.input_ids, tokens.attention_mask.bool()

    def encode_text(self, prompts: Sequence[str] | str) -> TextEncoding:
        """Pooled projected embeddings (unit norm unless ``normalize`` is false) and the last
        hidden states, as diffusers' unCLIP pipeline computes them."""
        ids, mask = self.tokenize(prompts)
        out = self.text_encoder(ids.to(self.device))
        embed = out.text_embeds
        if self.config.normalize:
            embed = F.normalize(embed, dim=-1)
        return TextEncoding(embed=embed, tokens=out.last_hidden_state, mask=mask.to(self.device))

    # ------------------------------------------------------------------ images
    def preprocess(self, images: Tensor | Sequence["Image.Image"] | "Image.Image") -> Tensor:
        """Pixels for the image tower: centre-cropped, resized (bicubic) and normalised."""
        size = int(self.config.image_size)  # type: ignore[arg-type]
        if isinstance(images, Tensor):
            pixels = tensor_batch(images.to(self.device), size, self.image_mean, self.image_std)
        else:
            if is_pil_image(images):
                images = [images]  # type: ignore[list-item]
            if not isinstance(images, Sequence) or not images or not all(is_pil_image(image) for image in images):
                raise InputError(f"{NAME}: images must be PIL images or a float tensor [B, 3, H, W] in [-1, 1]")
            pixels = tensor_batch(pil_to_tensor(list(images), size), size, self.image_mean, self.image_std)
        return pixels.to(device=self.device, dtype=self.dtype)

    def encode_image(self, images: Tensor | Sequence["Image.Image"] | "Image.Image") -> Tensor:
        """``[B, D]`` image embeddings, unit-norm unless ``normalize`` is false (needs an image tower)."""
        if self.image_encoder is None:
            raise UnclipError(
                f"{NAME}: this encoder has no image tower (its settings have no vision_config; a Karlo "
                "text-to-image folder has no image_encoder/), so it cannot embed images — variations, "
                "interpolation, text diffs and classification need one"
            )
        embeds = self.image_encoder(pixel_values=self.preprocess(images)).image_embeds
        return F.normalize(embeds, dim=-1) if self.config.normalize else embeds

    @property
    def logit_scale(self) -> Tensor:
        return torch.tensor(100.0)
