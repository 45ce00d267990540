"""Helpers every contract check shares: labels, failure messages, seeds, sizes, tolerances."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from unclip_core.errors import UnclipError
from unclip_core.images import tensor_to_pil
from unclip_core.interfaces import ComponentConfig, Declared, Prior, Sampler, TextEncoding, map_tensors
from unclip_core.registry import default_registry

PROMPTS = ("a red circle to the left of a blue square", "", "two green triangles")
"""Captions the encoder checks use; the empty one is the unconditional caption."""

UNKNOWN_SETTING = "surely_not_a_setting"

# Sizes used where a config declares none ("accepts anything").
_DEFAULT_EMBED_DIM, _DEFAULT_LENGTH, _DEFAULT_WIDTH, _DEFAULT_IMAGE_SIZE = 16, 8, 16, 32


def _label(component: Any) -> str:
    kind = getattr(component, "kind", None)
    name = type(component).__name__
    return f"{kind} {name}" if isinstance(kind, str) else name


def _require(condition: bool, label: str, promise: str) -> None:
    if not condition:
        raise AssertionError(f"{label}: {promise}")


def _call(label: str, what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; an exception becomes an AssertionError saying which promise it broke."""
    try:
        with torch.no_grad():
            return fn()
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - the component's own error, reported with context
        raise AssertionError(f"{label}: {what} raised {type(exc).__name__}: {exc}") from exc


def _build(factory: Callable[[Any], Any], config: ComponentConfig, kind: str) -> Any:
    """``factory(config)`` under a fixed global seed (random initialisers use torch's global
    RNG), so the suite's verdict does not depend on what ran before it."""
    try:
        return _with_global_seed(0, lambda: factory(config))
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{kind} factory {getattr(factory, '__qualname__', factory)!r} failed on {config!r}: {exc}") from exc


def _sampler_for(prior: Prior, sampler: Sampler | None) -> Sampler | None:
    """The sampler to pass a prior: none to one that samples by itself, the given one, or
    else the sampler registered for the ``inversion`` role (3 steps)."""
    if prior.declared.needs_sampler is False:
        return None
    if sampler is not None:
        return sampler
    try:
        spec = default_registry().for_role("sampler", "inversion")
        return spec.build(spec.config_model(steps=3))
    except UnclipError as exc:
        raise AssertionError(f"{_label(prior)}: needs a sampler; pass sampler=... ({exc})") from None


def _dump(config: ComponentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json", by_alias=True)


def _sizes(declared: Declared) -> tuple[int, int, int, int]:
    """(D, L, W, image side) to build inputs with; defaults where nothing is declared."""
    return (
        declared.embed_dim or _DEFAULT_EMBED_DIM,
        declared.context_length or _DEFAULT_LENGTH,
        declared.text_width or _DEFAULT_WIDTH,
        declared.image_size or _DEFAULT_IMAGE_SIZE,
    )


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _with_global_seed(seed: int, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` with torch's global RNG seeded, restoring the caller's RNG state after."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return fn()


def _images(batch: int, size: int, generator: torch.Generator) -> Tensor:
    return torch.rand(batch, 3, size, size, generator=generator) * 2 - 1


def _pil_images(images: Tensor) -> list:
    return tensor_to_pil(images.cpu())


def _to(text: TextEncoding, component: Any) -> TextEncoding:
    return map_tensors(text, lambda tensor: tensor.to(component.device))


def _close(a: Tensor, b: Tensor, tolerance: float = 1e-5) -> bool:
    if a.shape != b.shape:
        return False
    scale = max(float(b.abs().max()), 1.0) if b.numel() else 1.0
    return bool(((a.float() - b.float()).abs() <= tolerance * scale).all())


def _differ(a: Tensor, b: Tensor) -> bool:
    return a.shape != b.shape or float((a.float() - b.float()).abs().max()) > 1e-6


def _require_unit_norm(embed: Tensor, label: str, what: str) -> None:
    norms = embed.float().norm(dim=-1)
    worst = float((norms - 1).abs().max()) if norms.numel() else 0.0
    _require(worst < 1e-3, label, f"{what} must be unit-norm (CLIP normalises its embeddings); norms are off by up to {worst:.3g}")


def _perturb_state(module: nn.Module, generator: torch.Generator) -> None:
    """Nudge every floating-point tensor of the state dict, as training would."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
                tensor.add_(0.01 * noise.to(device=tensor.device, dtype=tensor.dtype))
