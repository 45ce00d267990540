"""The sizes a config declares (checked before anything is built) are the sizes the built component really uses."""
from __future__ import annotations

from typing import Any

from unclip_core.contracts._support import PROMPTS, _call, _generator, _images, _label, _require, _sampler_for, _sizes, _to
from unclip_core.contracts.inputs import _diffusion_inputs, make_text_encoding
from unclip_core.errors import UnclipError
from unclip_core.interfaces import Declared, Decoder, Encoder, Prior, Sampler, Upsampler


def check_declared_matches(component: Any, *, sampler: Sampler | None = None) -> None:
    """The sizes a component's config declares (read by recipe validation before anything is
    built) are the sizes the built component really reads and produces."""
    label, declared = _label(component), component.declared
    embed_dim, length, width, size = _sizes(declared)
    if isinstance(component, Encoder):
        text = _call(label, "encode_text", lambda: component.encode_text(list(PROMPTS)))
        for what, got, want in (
            ("embed_dim", text.embed.shape[-1], declared.embed_dim),
            ("context_length", text.tokens.shape[1], declared.context_length),
            ("text_width", text.tokens.shape[-1], declared.text_width),
        ):
            _require(want is None or got == want, label, f"declares {what}={want} but encode_text gives {got}")
        images = _images(2, size, _generator(1)).to(component.device)
        image_embed = _call(label, f"encode_image of {size}px images (its declared image_size)", lambda: component.encode_image(images))
        _require(
            declared.embed_dim is None or image_embed.shape[-1] == declared.embed_dim,
            label,
            f"declares embed_dim={declared.embed_dim} but encode_image gives {image_embed.shape[-1]}",
        )
    elif isinstance(component, Prior):
        _check_prior_declared(component, sampler, label, declared)
    elif isinstance(component, (Decoder, Upsampler)):
        x_t, t, cond = _diffusion_inputs(component, _generator(2))
        out = _call(label, "forward on inputs of its declared sizes", lambda: component(x_t, t, cond))
        _require(
            declared.image_size is None or tuple(out.shape[-2:]) == (declared.image_size,) * 2,
            label,
            f"declares image_size={declared.image_size} but forward returns {list(out.shape)}",
        )


def _check_prior_declared(prior: Prior, sampler: Sampler | None, label: str, declared: Declared) -> None:
    embed_dim, length, width, _ = _sizes(declared)
    text = _to(make_text_encoding(2, embed_dim, length, width, _generator(3)), prior)
    if declared.needs_sampler:
        try:
            prior.sample(text, sampler=None, generator=_generator(0))
        except UnclipError:
            pass
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(
                f"{label}: declares needs_sampler=True; sample(sampler=None) must raise an UnclipError "
                f"saying so, but raised {type(exc).__name__}: {exc}"
            ) from None
        else:
            raise AssertionError(f"{label}: declares needs_sampler=True but sample(sampler=None) worked")
    sampler = _sampler_for(prior, sampler)
    z = _call(label, "sample on a caption batch of its declared sizes", lambda: prior.sample(text, sampler=sampler, generator=_generator(0)))
    _require(
        declared.embed_dim is None or z.shape[-1] == declared.embed_dim,
        label,
        f"declares embed_dim={declared.embed_dim} but sample gives {list(z.shape)}",
    )
