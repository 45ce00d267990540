"""Settings of the ``stable-unclip-decoder``: Stable Diffusion 2.1's UNet fine-tuned on noised
CLIP image embeddings (Stable unCLIP), its own CLIP text tower for the caption, the image
normaliser's size, the noise level and the schedules.

The UNet and text tower are spelt out as the diffusers and transformers settings their folder
saved (``unclip import stable-unclip`` copies them), so any published size loads; a UNet whose
settings diffusers refuses is a one-line error when the recipe is validated, built on the meta
device (no memory, no time).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator

from unclip_core import ComponentConfig, Declared
from unclip_core.diffusion.schedule import BetaScheduleName
from unclip_core.importing import IGNORED_CONFIG_KEYS
from unclip_plugins.diffusers_folders.clip_config import TEXT_KEYS, tokenizer_files_problem, unknown_keys

NOISING_DEFAULT = {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000}


class StableUnclipDecoderConfig(ComponentConfig):
    """SD's UNet with the noised CLIP image embedding as its class label and SD's caption
    tokens as cross-attention context."""

    unet: dict[str, Any] = Field(
        description="diffusers UNet2DConditionModel settings as saved in the folder's unet/config.json "
        "(class_embed_type 'projection', projection_class_embeddings_input_dim twice the embedding size)."
    )
    text_encoder: dict[str, Any] = Field(
        description="transformers CLIPTextConfig settings of SD's caption encoder (a CLIPTextModel; its last "
        "hidden states are the UNet's cross-attention context)."
    )
    tokenizer: str = Field(
        description="Folder of SD's CLIPTokenizer; a relative path is relative to the recipe file."
    )
    context_length: int | None = Field(
        None, gt=0, description="Caption tokens (padded or truncated to it); None: the text tower's max_position_embeddings."
    )
    image_size: int = Field(gt=0, description="Side of the images drawn, in pixels (the UNet's sample_size times "
                            "the autoencoder's downscale).")
    noise_level: int = Field(
        0, ge=0, description="How much noise is added to the image embedding before the UNet reads it (diffusers' "
        "noise_level; 0: the embedding almost as given, higher: looser variations)."
    )
    noising_scheduler: dict[str, Any] = Field(
        default_factory=lambda: dict(NOISING_DEFAULT),
        description="The image_noising_scheduler's settings as saved (a DDPMScheduler; its add_noise noises the embedding).",
    )
    beta_schedule: BetaScheduleName = Field("scaled_linear", description="Noise schedule the UNet was trained with.")
    beta_start: float = Field(0.00085, gt=0)
    beta_end: float = Field(0.012, gt=0)
    num_train_timesteps: int = Field(1000, gt=0)
    prediction_type: Literal["eps", "v"] = Field("v", description="What the UNet predicts (SD 2.1: v).")
    embedding_space: str | None = Field(
        None, description="Name of the CLIP embedding space the UNet was trained on (e.g. 'openai/clip-vit-large-patch14'); "
        "a prior or encoder declaring another is refused by `recipe validate`. None: not stated."
    )

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_folder(cls, value: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base_dir") if info.context else None
        folder = Path(value).expanduser()
        folder = (folder if folder.is_absolute() else Path(base or Path.cwd()) / folder).resolve()
        problem = tokenizer_files_problem(folder)
        if problem:
            raise ValueError(problem)
        return str(folder)

    @field_validator("unet", "noising_scheduler")
    @classmethod
    def _drop_bookkeeping(cls, value: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k not in IGNORED_CONFIG_KEYS}

    @model_validator(mode="after")
    def _check(self) -> "StableUnclipDecoderConfig":
        problems = unknown_keys(self.text_encoder, TEXT_KEYS, "text_encoder")
        unet = self.unet
        if unet.get("class_embed_type") != "projection":
            problems.append(f"unet.class_embed_type {unet.get('class_embed_type')!r}; Stable unCLIP's UNet reads the "
                            "noised image embedding through a 'projection' class embedding")
        width = unet.get("projection_class_embeddings_input_dim")
        if not isinstance(width, int) or width <= 0 or width % 2:
            problems.append(f"unet.projection_class_embeddings_input_dim {width!r}; expected twice the embedding size")
        hidden = self.text_encoder.get("hidden_size", 512)
        if unet.get("cross_attention_dim") != hidden:
            problems.append(f"unet.cross_attention_dim {unet.get('cross_attention_dim')!r} differs from the text "
                            f"encoder's hidden_size {hidden}")
        if problems:
            raise ValueError("; ".join(problems))
        if self.noise_level >= int(self.noising_scheduler.get("num_train_timesteps", 1000)):
            raise ValueError(f"noise_level {self.noise_level} must be below the noising scheduler's "
                             f"{self.noising_scheduler.get('num_train_timesteps', 1000)} timesteps")
        try:  # diffusers' own checks of the UNet settings, without memory or time
            from diffusers import UNet2DConditionModel

            with torch.device("meta"):
                UNet2DConditionModel.from_config(unet)
        except Exception as exc:  # noqa: BLE001 - diffusers raises assorted types
            raise ValueError(f"unet: diffusers cannot build it ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
        return self

    @property
    def embed_dim(self) -> int:
        return int(self.unet["projection_class_embeddings_input_dim"]) // 2

    @property
    def latent_channels(self) -> int:
        return int(self.unet.get("in_channels", 4))

    def declares(self) -> Declared:
        return Declared(embed_dim=self.embed_dim, image_size=self.image_size, embedding_space=self.embedding_space,
                        latent=True, latent_channels=self.latent_channels)
