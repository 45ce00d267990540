"""What a transformers CLIP text tower needs at run time, whichever plugin holds one (the
``hf-clip`` encoder; Stable unCLIP's caption encoder): transformers itself, imported only when a
tower is built (it is optional: the ``karlo`` extra), and the prompts checked. The errors name
the ``hf-clip`` encoder, the component that needs transformers in most recipes."""
from __future__ import annotations

from collections.abc import Sequence

from unclip_core import InputError, PluginError

NAME = "hf-clip"


def import_transformers():
    """The transformers package, or a one-line error saying how to install it."""
    try:
        import transformers  # optional (the karlo extra)
    except ImportError:  # pragma: no cover - depends on the environment
        raise PluginError(
            f"{NAME}: needs the transformers package, which is not installed; "
            "install it with: pip install 'unclip[karlo]'"
        ) from None
    return transformers


def check_prompts(prompts: Sequence[str] | str) -> list[str]:
    """``prompts`` as a list of strings (one string is a list of one); a one-line error otherwise."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, Sequence) or not prompts:
        raise InputError(f"{NAME}: prompts must be a non-empty list of strings")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputError(f"{NAME}: prompt {index} must be a string, got {type(prompt).__name__}")
    return list(prompts)
