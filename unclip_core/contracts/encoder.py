"""The encoder's contract: shapes, masks and unit norms of text and image embeddings in one space."""
from __future__ import annotations

import torch

from unclip_core.contracts._support import PROMPTS, _generator, _images, _label, _pil_images, _require, _require_unit_norm, _sizes
from unclip_core.interfaces import Encoder, TextEncoding


def check_encoder(encoder: Encoder) -> None:
    """``encode_text`` gives ``embed`` ``[B, D]`` (unit norm), ``tokens`` ``[B, L, W]`` and a
    bool ``mask`` ``[B, L]``, all floating where they should be; ``encode_image`` maps
    ``[B, 3, H, W]`` tensors in [-1, 1] and PIL images to unit-norm ``[B, D]`` in the same
    space (the same D)."""
    label = _label(encoder)
    _, _, _, size = _sizes(encoder.declared)
    with torch.no_grad():
        text = encoder.encode_text(list(PROMPTS))
        _require(isinstance(text, TextEncoding), label, f"encode_text must return a TextEncoding, got {type(text).__name__}")
        batch = len(PROMPTS)
        _require(text.embed.ndim == 2 and text.embed.shape[0] == batch, label, f"encode_text embed must be [{batch}, D], got {list(text.embed.shape)}")
        _require(
            text.tokens.ndim == 3 and text.tokens.shape[0] == batch,
            label,
            f"encode_text tokens must be [{batch}, L, W], got {list(text.tokens.shape)}",
        )
        _require(
            tuple(text.mask.shape) == tuple(text.tokens.shape[:2]),
            label,
            f"encode_text mask must be [B, L] = {list(text.tokens.shape[:2])}, got {list(text.mask.shape)}",
        )
        _require(text.mask.dtype == torch.bool, label, f"encode_text mask must be bool, got {text.mask.dtype}")
        _require(bool(text.mask.any(dim=1).all()), label, "encode_text mask must mark at least one token of every caption real")
        for what, tensor in (("embed", text.embed), ("tokens", text.tokens)):
            _require(tensor.is_floating_point(), label, f"encode_text {what} must be floating point, got {tensor.dtype}")
            _require(bool(torch.isfinite(tensor).all()), label, f"encode_text {what} has NaN or inf")
        _require_unit_norm(text.embed, label, "encode_text embed")

        images = _images(2, size, _generator(4)).to(encoder.device)
        image_embed = encoder.encode_image(images)
        _require(
            tuple(image_embed.shape) == (2, text.embed.shape[1]),
            label,
            f"encode_image of [2, 3, {size}, {size}] must give [2, {text.embed.shape[1]}] (the text embedding's D), "
            f"got {list(image_embed.shape)}",
        )
        _require(image_embed.is_floating_point(), label, f"encode_image must return floats, got {image_embed.dtype}")
        _require_unit_norm(image_embed, label, "encode_image")

        pil = _pil_images(images)
        from_pil = encoder.encode_image(pil)
        _require(
            tuple(from_pil.shape) == tuple(image_embed.shape),
            label,
            f"encode_image of {len(pil)} PIL images must give {list(image_embed.shape)}, got {list(from_pil.shape)}",
        )
        _require_unit_norm(from_pil, label, "encode_image of PIL images")
