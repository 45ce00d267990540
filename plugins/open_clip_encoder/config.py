"""Settings of the ``open-clip`` encoder, and the open_clip architecture they resolve to.

A recipe names an open_clip *architecture* (``model: ViT-B-32``) or spells one out inline
(``model_config: {embed_dim, vision_cfg, text_cfg}``, the structure of open_clip's JSON
configs) so that tiny test models need no file. Weights never come from a hub: they come
from the recipe's ``weights:`` file or from ``checkpoint:``.

open_clip is imported inside the functions, not at module level: importing it takes seconds
and plugin discovery (``unclip plugins``) should not pay for it.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from unclip_core import ComponentConfig, Declared

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
"""Checkpoint files the encoder reads; ``.pt``/``.pth``/``.bin`` go through
``torch.load(weights_only=True)``, so nothing but tensors is ever unpickled."""

_CONSTRUCTOR_ONLY = {"self", "cast_dtype", "output_dict"}


class OpenClipConfig(ComponentConfig):
    """Which open_clip architecture to build, and where its weights come from."""

    # `model_config` is pydantic's own attribute name, so the field is `model_cfg` behind that alias;
    # dumps (`unclip recipe show`/`cp`) write the alias so they read back as the recipe key.
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    model: str | None = Field(
        None,
        description=(
            "Name of an open_clip architecture shipped with the open_clip package, e.g. 'ViT-B-32' "
            "(architecture only: no pretrained weights are downloaded). Give this or model_config."
        ),
    )
    model_cfg: dict[str, Any] | None = Field(
        None,
        alias="model_config",
        description=(
            "An inline open_clip model config with the structure of open_clip's JSON configs: "
            "embed_dim, vision_cfg, text_cfg (and optionally quick_gelu, custom_text, "
            "init_logit_scale, init_logit_bias). Give this or model."
        ),
    )
    checkpoint: str | None = Field(
        None,
        description=(
            "An open_clip checkpoint on disk (.safetensors, or .pt/.pth/.bin read with "
            "torch.load(weights_only=True)), loaded when the encoder is built. Absolute or relative "
            "to the working directory. Usually left empty: the recipe's `weights:` file is loaded "
            "afterwards instead."
        ),
    )
    image_mean: tuple[float, float, float] | None = Field(
        None,
        description="Per-channel RGB mean the image tower was trained with; OpenAI CLIP's when empty.",
    )
    image_std: tuple[float, float, float] | None = Field(
        None,
        description="Per-channel RGB std the image tower was trained with; OpenAI CLIP's when empty.",
    )
    init_seed: int = Field(
        0,
        description=(
            "Seed of the random initialisation, drawn from a private generator so building an "
            "encoder never touches the global RNG; irrelevant once weights are loaded."
        ),
    )

    # ------------------------------------------------------------------ validation
    @field_validator("model")
    @classmethod
    def _known_architecture(cls, name: str | None) -> str | None:
        if name is not None:
            named_architecture(name)  # raises with close matches when unknown
        return name

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_suffix(cls, path: str | None) -> str | None:
        if path is not None and Path(path).suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise ValueError(
                f"checkpoint {path!r} must end in one of {', '.join(CHECKPOINT_SUFFIXES)} "
                "(safetensors, or a tensors-only torch file)"
            )
        return path

    @model_validator(mode="after")
    def _exactly_one_architecture(self) -> "OpenClipConfig":
        if (self.model is None) == (self.model_cfg is None):
            raise ValueError(
                "give exactly one of `model` (an open_clip architecture name such as 'ViT-B-32') "
                "or `model_config` (an inline open_clip config with embed_dim, vision_cfg, text_cfg)"
            )
        check_architecture(self.architecture(), where="model_config" if self.model is None else f"model {self.model!r}")
        return self

    # ------------------------------------------------------------------ derived values
    def architecture(self) -> dict[str, Any]:
        """The open_clip model config (a fresh copy: open_clip's constructors mutate theirs)."""
        if self.model_cfg is not None:
            return copy.deepcopy(self.model_cfg)
        return named_architecture(self.model)  # type: ignore[arg-type]

    def text_cfg(self):
        """open_clip's ``CLIPTextCfg`` dataclass, with its defaults for keys left out."""
        from open_clip.model import CLIPTextCfg  # heavy (seconds): imported only when settings are converted

        return CLIPTextCfg(**self.architecture()["text_cfg"])

    def vision_cfg(self):
        """open_clip's ``CLIPVisionCfg`` dataclass, with its defaults for keys left out."""
        from open_clip.model import CLIPVisionCfg  # heavy (seconds): imported only when settings are converted

        return CLIPVisionCfg(**self.architecture()["vision_cfg"])

    def preprocess_cfg(self) -> dict[str, Any]:
        """open_clip's image preprocessing settings (a ``PreprocessCfg`` as a dict)."""
        from open_clip.transform import PreprocessCfg  # heavy (seconds): imported only when settings are converted

        cfg = dataclasses.asdict(PreprocessCfg(size=self.vision_cfg().image_size))
        if self.image_mean is not None:
            cfg["mean"] = tuple(self.image_mean)
        if self.image_std is not None:
            cfg["std"] = tuple(self.image_std)
        return cfg

    def declares(self) -> Declared:
        """Sizes read from the config alone: the model is not built (ViT-L takes seconds)."""
        text = self.text_cfg()
        return Declared(
            embed_dim=int(self.architecture()["embed_dim"]),
            text_width=int(text.width),
            context_length=int(text.context_length),
            image_size=square_side(self.vision_cfg().image_size),
        )


# --------------------------------------------------------------------------------------
# Helpers (module level so tests and other plugins can reuse them)
# --------------------------------------------------------------------------------------
def named_architecture(name: str) -> dict[str, Any]:
    """open_clip's config for a built-in architecture name, or a ValueError with close matches."""
    import open_clip  # heavy (seconds): imported only when settings are converted

    if ":" in name:
        raise ValueError(
            f"model {name!r}: only open_clip's built-in architecture names are accepted "
            "(no 'hf-hub:' or 'local-dir:' sources); give weights with `checkpoint` or `weights`"
        )
    config = open_clip.get_model_config(name)
    if config is None:
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"{name!r} is not an open_clip architecture{hint} (open_clip.list_models() lists them)")
    return config


def square_side(size: int | list[int] | tuple[int, int]) -> int:
    """The side of a square image size; open_clip allows ``[H, W]`` but the stack is square."""
    if isinstance(size, int):
        return size
    height, width = size
    if height != width:
        raise ValueError(f"image_size {list(size)} is not square; unclip images are square")
    return int(height)


def _unknown_keys(given: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    problems = []
    for key in sorted(set(given) - allowed):
        close = difflib.get_close_matches(key, sorted(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{where}: unknown key {key!r}{hint}")
    return problems


def check_architecture(cfg: dict[str, Any], where: str) -> None:
    """Reject what the encoder cannot build offline, with every problem in one message.

    Refused: missing sections, keys open_clip does not know, CoCa (``multimodal_cfg``),
    Hugging Face text towers or tokenizers (they need the hub), pretrained timm towers
    (a download), non-square images.
    """
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg  # heavy (seconds): imported only when settings are converted

    problems: list[str] = []
    if not isinstance(cfg.get("embed_dim"), int) or cfg["embed_dim"] <= 0:
        problems.append(f"{where}: embed_dim must be a positive integer")
    for section in ("vision_cfg", "text_cfg"):
        if not isinstance(cfg.get(section), dict):
            problems.append(f"{where}: {section} must be a mapping")
    if "multimodal_cfg" in cfg:
        problems.append(f"{where}: CoCa models (multimodal_cfg) are not supported by the open-clip encoder")
        cfg = {k: v for k, v in cfg.items() if k != "multimodal_cfg"}
    top_level = set(inspect.signature(CLIP.__init__).parameters) - _CONSTRUCTOR_ONLY | {"custom_text"}
    problems += _unknown_keys(cfg, top_level, where)
    if problems:
        raise ValueError("; ".join(problems))

    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    problems += _unknown_keys(vision, {f.name for f in dataclasses.fields(CLIPVisionCfg)}, f"{where}.vision_cfg")
    problems += _unknown_keys(text, {f.name for f in dataclasses.fields(CLIPTextCfg)}, f"{where}.text_cfg")
    if text.get("hf_model_name") or text.get("hf_tokenizer_name"):
        problems.append(
            f"{where}.text_cfg: Hugging Face text towers/tokenizers need the hub; the open-clip encoder "
            "only uses open_clip's bundled BPE tokenizer and its own text transformer"
        )
    if vision.get("timm_model_pretrained"):
        problems.append(f"{where}.vision_cfg: timm_model_pretrained would download weights; set it false")
    if text.get("embed_cls"):
        problems.append(f"{where}.text_cfg: embed_cls (CoCa-style text towers) is not supported")
    try:
        square_side(vision.get("image_size", CLIPVisionCfg.image_size))
    except (TypeError, ValueError) as exc:
        problems.append(f"{where}.vision_cfg: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
