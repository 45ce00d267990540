"""Building the open_clip model itself, offline, and loading an open_clip checkpoint into it.

open_clip's ``create_model`` only takes architecture *names*; the inline configs a recipe may
give need the constructor directly. We pick the class the way ``create_model`` does
(``custom_text`` → ``CustomTextCLIP``, else ``CLIP``), so parameter names, and therefore
checkpoints, are open_clip's own.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from unclip_core import CheckpointError

from .config import OpenClipConfig


def build_open_clip_model(config: OpenClipConfig) -> nn.Module:
    """A randomly initialised open_clip model, drawn from a private RNG seeded with
    ``config.init_seed`` (the global RNG is left as it was)."""
    from open_clip.model import CLIP, CustomTextCLIP, set_model_preprocess_cfg  # heavy (seconds): imported when a model is built, so discovery stays fast

    architecture = config.architecture()
    model_class = CustomTextCLIP if architecture.pop("custom_text", False) else CLIP
    if "timm_model_name" in architecture["vision_cfg"]:
        architecture["vision_cfg"]["timm_model_pretrained"] = False  # never download
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)
        model = model_class(**architecture)
    set_model_preprocess_cfg(model, config.preprocess_cfg())
    return model


def load_open_clip_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load an open_clip checkpoint with open_clip's own loader (it unwraps ``state_dict``
    and ``module.`` prefixes, converts old text-tower layouts, resizes position embeddings),
    reading ``.pt``/``.bin`` files with ``weights_only=True``. Any failure becomes a one-line
    :class:`CheckpointError` naming the file."""
    import open_clip  # heavy (seconds): imported when a model is built, so discovery stays fast

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"open-clip checkpoint {str(path)!r} does not exist")
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"open-clip checkpoint {str(path)!r} holds more than tensors and was not unpickled "
            f"(weights_only=True): {first}"
        ) from None
    except Exception as exc:  # open_clip and torch raise many kinds; the user needs one line
        lines = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in lines[:3])
        if len(detail) > 300:
            detail = detail[:300] + "…"
        raise CheckpointError(
            f"open-clip checkpoint {str(path)!r} does not fit the configured model: "
            f"{type(exc).__name__}: {detail}"
        ) from None
