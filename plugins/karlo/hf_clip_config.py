"""Settings of the ``hf-clip`` encoder: a transformers CLIP text tower (and optionally its image
tower) spelt out as transformers config settings, plus a local tokenizer folder.

The settings carry the architecture only; the weights come from the recipe's ``weights:``
file, as for every component (``unclip import karlo`` writes both from a diffusers folder).
transformers is imported when the encoder is built, not when a recipe is validated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from unclip_core import ComponentConfig, Declared
from unclip_plugins.diffusers_folders.clip_config import TEXT_KEYS, VISION_KEYS, tokenizer_files_problem, unknown_keys

_TEXT_DEFAULTS = {"hidden_size": 512, "projection_dim": 512, "num_attention_heads": 8, "max_position_embeddings": 77}
_VISION_DEFAULTS = {"hidden_size": 768, "projection_dim": 512, "num_attention_heads": 12, "image_size": 224, "patch_size": 32}
"""transformers' defaults for the keys checked here when a config leaves them out."""

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class HfClipConfig(ComponentConfig):
    """A transformers CLIP text tower (CLIPTextModelWithProjection), an optional image tower
    (CLIPVisionModelWithProjection) and a tokenizer folder, all local."""

    text_config: dict[str, Any] = Field(
        description="Settings of transformers' CLIPTextConfig (vocab_size, hidden_size, intermediate_size, "
        "projection_dim, num_hidden_layers, num_attention_heads, max_position_embeddings, hidden_act, "
        "layer_norm_eps, pad/bos/eos_token_id, ...); left-out keys take transformers' defaults.",
    )
    vision_config: dict[str, Any] | None = Field(
        None,
        description="Settings of transformers' CLIPVisionConfig for an image tower; None: text only, and "
        "encode_image raises an error (Karlo's text-to-image folder has no image tower).",
    )
    tokenizer: str = Field(
        description="Folder of a transformers CLIPTokenizer (tokenizer.json, or vocab.json and merges.txt); "
        "a relative path is relative to the recipe file (outside a recipe: to the working directory).",
    )
    context_length: int | None = Field(
        None,
        gt=0,
        description="Caption tokens L (padded or truncated to it); None: the text tower's max_position_embeddings.",
    )
    normalize: bool = Field(
        True,
        description="Rescale the pooled text and image embeddings to unit norm, as CLIP does; Karlo's and "
        "Kandinsky 2.2's priors and decoders were trained on the raw projected embeddings, so their recipes set false.",
    )
    embedding_space: str | None = Field(
        None, description="Name of the CLIP embedding space the towers embed into (e.g. 'openai/clip-vit-large-patch14'); "
        "`recipe validate` refuses a decoder that names another. None: not stated.",
    )
    image_mean: tuple[float, float, float] | None = Field(
        None, description="Per-channel RGB mean of the image tower's inputs; OpenAI CLIP's when empty."
    )
    image_std: tuple[float, float, float] | None = Field(
        None, description="Per-channel RGB std of the image tower's inputs; OpenAI CLIP's when empty."
    )

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_folder(cls, value: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base_dir") if info.context else None
        folder = Path(value).expanduser()
        if not folder.is_absolute():
            folder = Path(base or Path.cwd()) / folder
        folder = folder.resolve()
        problem = tokenizer_files_problem(folder)
        if problem:
            raise ValueError(problem)
        return str(folder)

    @model_validator(mode="after")
    def _check_towers(self) -> "HfClipConfig":
        problems = unknown_keys(self.text_config, TEXT_KEYS, "text_config")
        if self.vision_config is not None:
            problems += unknown_keys(self.vision_config, VISION_KEYS, "vision_config")
        if problems:
            raise ValueError("; ".join(problems))
        text = {**_TEXT_DEFAULTS, **self.text_config}
        for name, value in text.items():
            if name in _TEXT_DEFAULTS and not (isinstance(value, int) and value > 0):
                problems.append(f"text_config.{name} must be a positive integer, got {value!r}")
        if not problems and text["hidden_size"] % text["num_attention_heads"]:
            problems.append(
                f"text_config.hidden_size {text['hidden_size']} is not divisible by num_attention_heads "
                f"{text['num_attention_heads']}"
            )
        if not problems and self.context_length is not None and self.context_length > text["max_position_embeddings"]:
            problems.append(
                f"context_length {self.context_length} exceeds the text tower's max_position_embeddings "
                f"{text['max_position_embeddings']}"
            )
        if self.vision_config is not None:
            vision = {**_VISION_DEFAULTS, **self.vision_config}
            if vision["projection_dim"] != text["projection_dim"]:
                problems.append(
                    f"vision_config.projection_dim {vision['projection_dim']} differs from text_config.projection_dim "
                    f"{text['projection_dim']}: image and text embeddings must share one space"
                )
            if not isinstance(vision["image_size"], int):
                problems.append(f"vision_config.image_size must be one integer (square images), got {vision['image_size']!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def from_transformers(
        cls,
        text_config: dict[str, Any],
        *,
        tokenizer: str,
        vision_config: dict[str, Any] | None = None,
        **settings: Any,
    ) -> "HfClipConfig":
        """Settings from transformers' ``config.json`` contents (a CLIPTextModelWithProjection's
        and optionally a CLIPVisionModelWithProjection's): the architecture's keys are kept,
        bookkeeping and generation settings dropped."""
        text = {k: v for k, v in text_config.items() if k in TEXT_KEYS}
        vision = {k: v for k, v in vision_config.items() if k in VISION_KEYS} if vision_config is not None else None
        return cls(text_config=text, vision_config=vision, tokenizer=tokenizer, **settings)

    # ------------------------------------------------------------------ derived values
    @property
    def text_settings(self) -> dict[str, Any]:
        return {**_TEXT_DEFAULTS, **self.text_config}

    @property
    def length(self) -> int:
        """Caption tokens L."""
        return int(self.context_length or self.text_settings["max_position_embeddings"])

    @property
    def image_size(self) -> int | None:
        if self.vision_config is None:
            return None
        return int({**_VISION_DEFAULTS, **self.vision_config}["image_size"])

    def declares(self) -> Declared:
        text = self.text_settings
        return Declared(
            embed_dim=int(text["projection_dim"]),
            text_width=int(text["hidden_size"]),
            context_length=self.length,
            image_size=self.image_size,
            embedding_space=self.embedding_space,
        )
