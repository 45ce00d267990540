"""Weights saved as safetensors load into a fresh build and reproduce its outputs exactly."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unclip_core.contracts._support import PROMPTS, _generator, _images, _label, _perturb_state, _require, _sampler_for, _sizes, _to, _with_global_seed
from unclip_core.contracts.inputs import _diffusion_inputs, make_text_encoding
from unclip_core.errors import CheckpointError
from unclip_core.interfaces import Autoencoder, ComponentConfig, DiffusionModel, Encoder, Prior, Sampler
from unclip_core.weights import load_weights, save_weights


def check_state_dict_roundtrip(
    factory: Callable[[Any], Any], config: ComponentConfig, *, sampler: Sampler | None = None
) -> None:
    """Weights saved with :func:`~unclip_core.weights.save_weights` (safetensors) and loaded
    with :func:`~unclip_core.weights.load_weights` into a freshly built component reproduce
    the original's outputs exactly.

    The original's floating-point state is perturbed first (as training would change it) and
    the two builds happen under different global seeds, so whatever the file does not carry —
    a buffer registered with ``persistent=False`` that holds real state, a tensor kept as a
    plain attribute — shows up as a difference.
    """
    original = _with_global_seed(1234, lambda: factory(config))
    label = _label(original)
    _require(isinstance(original, nn.Module), label, "is not an nn.Module, so it has no weights to save")
    original.eval()
    _perturb_state(original, _generator(15))
    fresh = _with_global_seed(4321, lambda: factory(config))
    fresh.eval()
    if original.state_dict():  # (safetensors cannot write an empty file with metadata)
        with tempfile.TemporaryDirectory() as folder:
            path = save_weights(original, Path(folder) / "weights.safetensors")
            try:
                load_weights(fresh, path)
            except CheckpointError as exc:
                raise AssertionError(f"{label}: its saved weights do not load into a fresh build of the same config: {exc}") from None
    fresh_buffers = dict(fresh.named_buffers())
    lost = [
        name
        for name, buffer in original.named_buffers()
        if name in fresh_buffers and not torch.equal(buffer, fresh_buffers[name])
    ]
    _require(
        not lost,
        label,
        f"buffer(s) {', '.join(lost)} are not restored by its saved weights (registered with persistent=False?) "
        "yet differ between two builds of the same config",
    )
    outputs, reloaded = _outputs(original, sampler), _outputs(fresh, sampler)
    for name, value in outputs.items():
        _require(
            torch.equal(value, reloaded[name]),
            label,
            f"{name} differs after saving its weights and loading them into a fresh build: some state is "
            "not in its state_dict (a buffer with persistent=False, or a tensor kept as a plain attribute)",
        )


def _outputs(component: Any, sampler: Sampler | None) -> dict[str, Tensor]:
    """Every deterministic output the checks can get from ``component``, by name."""
    found: dict[str, Tensor] = {}
    with torch.no_grad():
        if isinstance(component, Encoder):
            size = _sizes(component.declared)[3]
            text = component.encode_text(list(PROMPTS))
            found.update({"encode_text embed": text.embed, "encode_text tokens": text.tokens})
            found["encode_image"] = component.encode_image(_images(2, size, _generator(16)).to(component.device))
        if isinstance(component, Prior):
            embed_dim, length, width, _ = _sizes(component.declared)
            text = _to(make_text_encoding(3, embed_dim, length, width, _generator(17)), component)
            use = _sampler_for(component, sampler)
            found["sample"] = component.sample(text, sampler=use, generator=_generator(0), candidates=2)
        if isinstance(component, DiffusionModel):
            x_t, t, cond = _diffusion_inputs(component, _generator(18))
            found["forward"] = component(x_t, t, cond)
        if isinstance(component, Autoencoder):
            side = 4 * component.downscale
            found["encode"] = component.encode(_images(2, side, _generator(16)).to(component.device))
            found["decode"] = component.decode(found["encode"])
    return found
