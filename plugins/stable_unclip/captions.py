"""Stable Diffusion's caption encoder inside the Stable unCLIP decoder: a transformers
``CLIPTextModel`` and its tokenizer, encoding captions as diffusers' ``encode_prompt`` does.

Why the decoder owns it: Stable unCLIP reads captions through SD 2.1's CLIP text tower, a
different model from the one whose embedding space the prior samples in (Karlo's CLIP ViT-L,
say). The recipe's encoder serves the prior (and image variations); this serves the UNet's
cross-attention. Captions are padded to the context length, the token ids go through the
tower without an attention mask (unless its config asks for one, as diffusers checks), and
the last hidden states are the context.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from unclip_core import InputError, TextEncoding
from unclip_plugins.diffusers_folders.transformers_clip import check_prompts, import_transformers


class CaptionEncoder(nn.Module):
    """SD's CLIP text tower (``self.text_model``: transformers' own parameter names) and tokenizer."""

    def __init__(self, text_config: dict, tokenizer: str, context_length: int | None):
        super().__init__()
        transformers = import_transformers()
        self.model = transformers.CLIPTextModel(transformers.CLIPTextConfig(**text_config))
        try:
            self.tokenizer = transformers.CLIPTokenizer.from_pretrained(tokenizer, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; the user needs the folder
            raise InputError(
                f"tokenizer folder {tokenizer}: transformers cannot load a CLIP tokenizer from it "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
            ) from None
        positions = self.model.config.max_position_embeddings
        self.context_length = min(context_length or self.tokenizer.model_max_length, positions)

    def forward(self, prompts: Sequence[str] | str) -> TextEncoding:
        prompts = check_prompts(prompts)
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=self.context_length, truncation=True, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        mask = tokens.attention_mask.to(device) if getattr(self.model.config, "use_attention_mask", False) else None
        out = self.model(tokens.input_ids.to(device), attention_mask=mask)
        hidden: Tensor = out[0]
        return TextEncoding(embed=out[1], tokens=hidden, mask=tokens.attention_mask.bool().to(device))

    @torch.no_grad()
    def empty(self, batch: int) -> TextEncoding:
        """The empty caption's encoding, ``batch`` rows (encoded as one batch of ``""``)."""
        return self([""] * batch)
