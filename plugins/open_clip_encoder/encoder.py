"""The ``open-clip`` encoder: an open_clip CLIP model behind unclip's :class:`Encoder` contract.

The open_clip model is the only submodule (``self.model``), so the component's state dict is
exactly open_clip's parameters under the prefix ``model.``: a recipe's ``weights:`` file
saved from this encoder loads back with ``load_state_dict``, and an open_clip checkpoint
loads through ``checkpoint:``. Everything numerical is open_clip's own code: its tokenizer,
its ``forward_intermediates`` (for per-token features), its eval transform and ``ClipLoss``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from unclip_core import Encoder, InputError, TextEncoding

from .config import OpenClipConfig, square_side
from .model import build_open_clip_model, load_open_clip_checkpoint
from .preprocess import is_pil_image, pil_batch, tensor_batch
from .tokens import Tokenized, bpe_tokenizer, check_prompts, tokenize

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image


class OpenClipEncoder(Encoder[OpenClipConfig]):
    """CLIP text and image towers from open_clip, built from an architecture (never a download)."""

    def __init__(self, config: OpenClipConfig):
        super().__init__(config)
        from open_clip.transform import PreprocessCfg, image_transform_v2  # heavy (seconds): imported only when an encoder runs

        self.model = build_open_clip_model(config)
        if config.checkpoint is not None:
            load_open_clip_checkpoint(self.model, config.checkpoint)
        text_cfg = config.text_cfg()
        self.context_length: int = int(text_cfg.context_length)
        self.tokenizer = bpe_tokenizer(self.context_length, text_cfg.tokenizer_kwargs)
        preprocess = config.preprocess_cfg()
        self.image_size: int = square_side(preprocess["size"])
        self.image_mean: tuple[float, ...] = tuple(preprocess["mean"])
        self.image_std: tuple[float, ...] = tuple(preprocess["std"])
        self.pil_transform = image_transform_v2(PreprocessCfg(**preprocess), is_train=False)

    # ------------------------------------------------------------------ text
    def tokenize(self, prompts: Sequence[str] | str) -> Tokenized:
        """Token ids ``[B, L]`` and the SOT..EOT mask, on the CPU (warns when truncating)."""
        return tokenize(self.tokenizer, check_prompts(prompts), self.context_length)

    def encode_text(self, prompts: Sequence[str] | str) -> TextEncoding:
        """Pooled unit-norm embeddings (``model.encode_text(normalize=True)``) and the per-token
        features after ``ln_final``, from one pass through open_clip's ``forward_intermediates``."""
        tokenized = tokenize(self.tokenizer, check_prompts(prompts), self.context_length)
        ids = tokenized.ids.to(self.device)
        out = self.model.forward_intermediates(
            text=ids, text_indices=1, normalize=True, normalize_intermediates=True
        )
        return TextEncoding(
            embed=out["text_features"],
            tokens=out["text_intermediates"][-1],
            mask=tokenized.mask.to(self.device),
        )

    # ------------------------------------------------------------------ images
    def preprocess(self, images: Tensor | Sequence["Image.Image"] | "Image.Image") -> Tensor:
        """Pixels ready for the image tower ``[B, 3, S, S]`` on the model's device and dtype."""
        if isinstance(images, Tensor):
            pixels = tensor_batch(images.to(self.device), self.image_size, self.image_mean, self.image_std)
        elif is_pil_image(images):
            pixels = pil_batch([images], self.pil_transform)
        elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
            pixels = pil_batch(images, self.pil_transform)
        else:
            raise InputError(
                f"images must be PIL images or a float tensor [B, 3, H, W] in [-1, 1], "
                f"got {type(images).__name__}"
            )
        return pixels.to(device=self.device, dtype=self.dtype)

    def encode_image(self, images: Tensor | Sequence["Image.Image"] | "Image.Image") -> Tensor:
        """``[B, D]`` unit-norm embeddings; differentiable with respect to a tensor input."""
        return self.model.encode_image(self.preprocess(images), normalize=True)

    # ------------------------------------------------------------------ training
    @property
    def logit_scale(self) -> Tensor:
        """CLIP's learned temperature, ``exp(logit_scale)`` (100 for trained OpenAI models)."""
        return self.model.logit_scale.exp()

    def contrastive_loss(
        self, images: Tensor, prompts: Sequence[str], negatives: Sequence[Sequence[str]] | None = None
    ) -> Tensor:
        """CLIP's symmetric InfoNCE over a batch of matching (image, caption) pairs, computed
        by open_clip's ``ClipLoss`` (single process: features are not gathered across ranks).

        ``negatives``: for each image, the same number of captions false for it (hard
        negatives, as NegCLIP adds them). They join that image's candidates in the
        image → caption direction only — they have no image of their own to match in the
        other — so the text tower must tell "a red circle to the left of a blue square" from
        "a blue circle to the left of a red square" to lower the loss. With zero per image
        the loss is ``ClipLoss``'s."""
        from open_clip.loss import ClipLoss  # heavy (seconds): imported only when an encoder runs

        prompts = check_prompts(prompts)
        if len(images) != len(prompts):
            raise InputError(f"contrastive_loss got {len(images)} images but {len(prompts)} prompts")
        image_features = self.encode_image(images)
        if negatives is None:
            text_features = self.encode_text(prompts).embed
            return ClipLoss()(image_features, text_features, self.logit_scale, self.model.logit_bias)
        per_image = self._negatives_per_image(negatives, len(prompts))
        if self.model.logit_bias is not None:
            raise InputError("hard negatives need CLIP's softmax loss; this model has a logit_bias (SigLIP's sigmoid loss)")
        flat = [text for row in negatives for text in row]
        if flat:
            check_prompts(flat)  # each a string
        texts = self.encode_text(prompts + flat).embed  # one text forward for captions and negatives
        batch = len(prompts)
        text_features, negative_features = texts[:batch], texts[batch:].view(batch, per_image, texts.shape[1])
        logits_per_image = self.logit_scale * image_features @ text_features.T
        negative_logits = self.logit_scale * torch.einsum("bd,bkd->bk", image_features, negative_features)
        labels = torch.arange(batch, device=image_features.device)
        image_loss = F.cross_entropy(torch.cat([logits_per_image, negative_logits], dim=1), labels)
        text_loss = F.cross_entropy(logits_per_image.T, labels)
        return (image_loss + text_loss) / 2

    @staticmethod
    def _negatives_per_image(negatives: Sequence[Sequence[str]], batch: int) -> int:
        if isinstance(negatives, str) or len(negatives) != batch:
            raise InputError(f"contrastive_loss needs one list of negative captions per image ({batch}), got {len(negatives)}")
        counts = {len(row) for row in negatives}
        if len(counts) != 1:
            raise InputError(f"every image needs the same number of negative captions, got {sorted(counts)}")
        return counts.pop()
