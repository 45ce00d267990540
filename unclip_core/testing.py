"""The contract suite: the promises of :mod:`unclip_core.interfaces`, checked the same way for
every component, built-in or third-party.

A plugin's own test suite runs it on its component::

    from unclip_core.testing import check_component

    def test_my_prior_keeps_the_contract():
        check_component("prior", MyPrior, MyPriorConfig(embed_dim=16))

Every check is a plain function that raises :class:`AssertionError` with a message naming the
component and the promise it broke, so it works under any test runner (pytest is not
imported). The individual checks are public too, for a component that needs only some of them
or special inputs; :func:`make_text_encoding`, :func:`make_exact_denoiser` and
:func:`make_training_batch` build the inputs they use.

What is checked (see each function for details):

* settings: unknown keys are rejected, a dump reads back (:func:`check_config_rejects_unknown_settings`,
  :func:`check_config_dump_roundtrip`);
* the component is the kind it is registered as, and its sizes are the ones its config
  declares (:func:`check_kind`, :func:`check_declared_matches`);
* per kind: tensor shapes, norms and dtypes, guidance, conditioning flags, best-of-N, the
  sampler's loop (:func:`check_encoder`, :func:`check_prior`, :func:`check_decoder`,
  :func:`check_upsampler`, :func:`check_sampler`, :func:`check_dataset`);
* same seed, same result, whatever torch's global RNG holds (:func:`check_determinism`);
* weights saved as safetensors load into a fresh build and give identical outputs
  (:func:`check_state_dict_roundtrip`);
* ``training_loss`` trains (:func:`check_train_step_reduces_loss`).

The checks run tiny batches on the component's device; a component built from a tiny config
passes the whole suite in seconds on a CPU.
"""
from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unclip_core.diffusion.guidance import guide
from unclip_core.diffusion.parameterization import alpha_sigma
from unclip_core.diffusion.schedule import NoiseSchedule
from unclip_core.errors import CheckpointError, UnclipError
from unclip_core.interfaces import (
    KINDS,
    ComponentConfig,
    Decoder,
    DecoderCondition,
    Declared,
    Denoiser,
    DiffusionModel,
    Encoder,
    Prior,
    PriorCondition,
    PredictionType,
    Sampler,
    StepInfo,
    TextEncoding,
    Upsampler,
    UpsamplerCondition,
    VarianceType,
)

__all__ = [
    "ExactDenoiser",
    "check_component",
    "check_config_dump_roundtrip",
    "check_config_rejects_unknown_settings",
    "check_dataset",
    "check_declared_matches",
    "check_decoder",
    "check_determinism",
    "check_diffusion_model",
    "check_encoder",
    "check_kind",
    "check_plugin_registers",
    "check_prior",
    "check_sampler",
    "check_state_dict_roundtrip",
    "check_train_step_reduces_loss",
    "check_upsampler",
    "make_exact_denoiser",
    "make_text_encoding",
    "make_training_batch",
]

BASE_CLASS: dict[str, type] = {
    "encoder": Encoder,
    "prior": Prior,
    "decoder": Decoder,
    "upsampler": Upsampler,
    "sampler": Sampler,
}
"""The interface each pipeline kind must implement (datasets are any ``torch`` Dataset)."""

PROMPTS = ("a red circle to the left of a blue square", "", "two green triangles")
"""Captions the encoder checks use; the empty one is the unconditional caption."""

UNKNOWN_SETTING = "surely_not_a_setting"

# Sizes used where a config declares none ("accepts anything").
_DEFAULT_EMBED_DIM, _DEFAULT_LENGTH, _DEFAULT_WIDTH, _DEFAULT_IMAGE_SIZE = 16, 8, 16, 32


# --------------------------------------------------------------------------------------
# Inputs plugin authors can reuse
# --------------------------------------------------------------------------------------
def make_text_encoding(
    batch: int, embed_dim: int, length: int, width: int, generator: torch.Generator
) -> TextEncoding:
    """A random caption batch as an encoder would give it: unit-norm ``embed`` ``[B, D]``,
    Gaussian ``tokens`` ``[B, L, W]`` and a ``mask`` ``[B, L]`` marking a random number
    (at least one) of leading tokens real. Drawn on the CPU from ``generator``."""
    device = generator.device
    embed = torch.randn(batch, embed_dim, generator=generator, device=device)
    tokens = torch.randn(batch, length, width, generator=generator, device=device)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator, device=device)
    mask = torch.arange(length, device=device)[None, :] < lengths[:, None]
    return TextEncoding(embed=torch.nn.functional.normalize(embed, dim=-1), tokens=tokens, mask=mask)


class ExactDenoiser:
    """A :class:`~unclip_core.interfaces.Denoiser` that knows the answer.

    For one fixed clean sample ``x0`` it returns, at any ``(x_t, t)``, exactly what a perfect
    model would: the noise that ``x_t`` holds (``eps``), ``x0`` itself, or ``v``. A correct
    sampler driven by it must land on ``x0``, whatever noise it starts from, so a sampler can
    be tested without any trained model. With ``variance_type="learned_range"`` it appends
    zeros (the midpoint between the fixed variances) as the variance channels.
    ``calls`` counts the evaluations.
    """

    def __init__(
        self,
        x0: Tensor,
        schedule: NoiseSchedule,
        *,
        prediction_type: PredictionType = "eps",
        variance_type: VarianceType = "fixed_small",
        clip_range: float | None = 1.0,
    ):
        if prediction_type not in ("eps", "x0", "v"):
            raise ValueError(f"unknown prediction type {prediction_type!r}")
        self.x0 = x0
        self.schedule = schedule
        self.prediction_type = prediction_type
        self.variance_type = variance_type
        self.clip_range = clip_range
        self.device = x0.device
        self.dtype = x0.dtype
        self.calls = 0

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        x_t64 = x_t.double()
        x0 = self.x0.to(device=x_t.device, dtype=torch.float64).expand_as(x_t64)
        a, s = alpha_sigma(self.schedule, torch.as_tensor(t).cpu().long(), x_t64)
        eps = (x_t64 - a * x0) / s
        out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[self.prediction_type].to(x_t.dtype)
        if self.variance_type == "learned_range":
            out = torch.cat([out, torch.zeros_like(out)], dim=1)
        return out


def make_exact_denoiser(
    x0: Tensor,
    schedule: NoiseSchedule,
    *,
    prediction_type: PredictionType = "eps",
    variance_type: VarianceType = "fixed_small",
    clip_range: float | None = 1.0,
) -> ExactDenoiser:
    """An :class:`ExactDenoiser` for ``x0``: a perfect model of a one-point data set."""
    return ExactDenoiser(
        x0, schedule, prediction_type=prediction_type, variance_type=variance_type, clip_range=clip_range
    )


def make_training_batch(
    kind: str, declared: Declared, *, batch_size: int = 2, generator: torch.Generator | None = None
) -> dict[str, Any]:
    """A random batch in the layout the training stages hand to ``training_loss``
    (see :mod:`unclip_core.training.stages`): priors get ``image_embed`` and ``text``;
    decoders ``image``, ``image_embed`` and (when they read captions) ``text``; upsamplers
    ``image`` at their output size. Images are uniform in [-1, 1]."""
    generator = generator if generator is not None else _generator(0)
    embed_dim, length, width, size = _sizes(declared)
    device = generator.device

    def image_embed() -> Tensor:
        return torch.nn.functional.normalize(torch.randn(batch_size, embed_dim, generator=generator, device=device), dim=-1)

    def images() -> Tensor:
        return torch.rand(batch_size, 3, size, size, generator=generator, device=device) * 2 - 1

    if kind == "prior":
        return {"image_embed": image_embed(), "text": make_text_encoding(batch_size, embed_dim, length, width, generator)}
    if kind == "decoder":
        batch = {"image": images(), "image_embed": image_embed()}
        if declared.text_width is not None:
            batch["text"] = make_text_encoding(batch_size, embed_dim, length, width, generator)
        return batch
    if kind == "upsampler":
        return {"image": images()}
    raise ValueError(f"no standard training batch for a {kind!r}; pass batch= yourself")


# --------------------------------------------------------------------------------------
# The whole suite
# --------------------------------------------------------------------------------------
def check_component(
    kind: str,
    factory: Callable[[Any], Any],
    config: ComponentConfig,
    *,
    batch: Mapping[str, Any] | None = None,
    sampler: Sampler | None = None,
    stochastic: bool | None = None,
) -> Any:
    """Run every check that applies to a ``kind`` component built as ``factory(config)``;
    returns the component built.

    ``batch`` is a training batch for ``training_loss`` (default: :func:`make_training_batch`);
    ``sampler`` drives a prior that needs one (default: the registered ``ddim``, 3 steps);
    ``stochastic`` says whether a prior's samples must (True) or must not (False) change with
    the generator's seed — None leaves it unchecked (samplers always must).
    """
    check_config_rejects_unknown_settings(type(config), config)
    check_config_dump_roundtrip(config)
    component = _build(factory, config, kind)
    check_kind(component, kind)
    if kind == "dataset":
        check_dataset(component)
        return component
    if kind == "evaluation":
        check_evaluation(component)
        return component
    if isinstance(component, nn.Module):
        component.eval()
    if kind == "prior":
        sampler = _sampler_for(component, sampler)
    check_declared_matches(component, sampler=sampler)
    per_kind: dict[str, Callable[[], None]] = {
        "encoder": lambda: check_encoder(component),
        "prior": lambda: check_prior(component, sampler=sampler),
        "decoder": lambda: check_decoder(component),
        "upsampler": lambda: check_upsampler(component),
        "sampler": lambda: check_sampler(component),
    }
    per_kind[kind]()
    trains = callable(getattr(component, "training_loss", None))
    if trains and batch is None:
        batch = make_training_batch(kind, component.declared, generator=_generator(7))
    check_determinism(component, sampler=sampler, batch=batch if trains else None, stochastic=stochastic)
    if isinstance(component, nn.Module):
        check_state_dict_roundtrip(factory, config, sampler=sampler)
    if trains:
        check_train_step_reduces_loss(component, batch)  # type: ignore[arg-type]
    return component


def check_plugin_registers(kind: str, name: str, *, distribution: str | None = None) -> Any:
    """Discover plugins through their entry points (as ``unclip plugins`` does) and return
    the :class:`~unclip_core.registry.ComponentSpec` registered as ``kind`` ``name``.
    Fails if it is missing or clashes, or if ``distribution`` reported a failure."""
    from unclip_core.errors import PluginError
    from unclip_core.registry import discover

    registry = discover()
    if distribution is not None:
        failures = [f"{f.plugin}: {f.error}" for f in registry.failures if f.distribution == distribution]
        _require(not failures, f"plugin distribution {distribution!r}", "reported problems: " + "; ".join(failures))
    try:
        spec = registry.get(kind, name)
    except PluginError as exc:
        raise AssertionError(f"{kind} {name!r} is not available: {exc}") from None
    if distribution is not None:
        _require(
            spec.provider.distribution == distribution,
            f"{kind} {name!r}",
            f"is provided by {spec.provider}, not by distribution {distribution!r}",
        )
    return spec


# --------------------------------------------------------------------------------------
# Settings and kind
# --------------------------------------------------------------------------------------
def check_config_rejects_unknown_settings(config_model: type, config: ComponentConfig | None = None) -> None:
    """The settings model derives from :class:`ComponentConfig` and rejects a key it does not
    know (a misspelt setting must be an error in the recipe, never silently ignored)."""
    from pydantic import ValidationError

    label = f"config {getattr(config_model, '__qualname__', config_model)!r}"
    _require(
        isinstance(config_model, type) and issubclass(config_model, ComponentConfig),
        label,
        "must derive from unclip_core.ComponentConfig (the registry refuses anything else)",
    )
    data = _dump(config) if config is not None else {}
    try:
        config_model.model_validate({**data, UNKNOWN_SETTING: 1})
    except ValidationError as exc:
        _require(
            any(UNKNOWN_SETTING in map(str, error.get("loc", ())) for error in exc.errors()),
            label,
            f"rejected the settings, but not because of the unknown key {UNKNOWN_SETTING!r}: {exc}",
        )
        return
    raise AssertionError(
        f"{label}: accepted the unknown setting {UNKNOWN_SETTING!r}; unknown keys must be an error "
        "(keep ComponentConfig's extra='forbid')"
    )


def check_config_dump_roundtrip(config: ComponentConfig) -> None:
    """``model_dump`` reads back to an equal config: ``unclip recipe show`` and ``cp`` write
    dumps that users then load as recipes."""
    label = f"config {type(config).__qualname__!r}"
    data = _dump(config)
    try:
        again = type(config).model_validate(data)
    except Exception as exc:  # noqa: BLE001 - any failure is the broken promise
        raise AssertionError(f"{label}: its own dump {data} does not validate: {exc}") from None
    _require(again == config, label, f"its dump reads back as {again!r}, not {config!r}")


def check_kind(component: Any, kind: str) -> None:
    """The component implements the interface of the kind it is registered as."""
    label = _label(component)
    if kind == "dataset":
        label = f"dataset {type(component).__name__}"
        _require(
            (callable(getattr(component, "__len__", None)) and callable(getattr(component, "__getitem__", None)))
            or callable(getattr(component, "batches", None)),
            label,
            "a dataset must have __len__ and __getitem__ (a torch.utils.data.Dataset), or stream batches()",
        )
        return
    if kind == "evaluation":
        from unclip_core.evaluation import Evaluation

        _require(isinstance(component, Evaluation), f"evaluation {type(component).__name__}", "is not an unclip_core.evaluation.Evaluation")
        return
    _require(kind in KINDS, label, f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    base = BASE_CLASS[kind]
    _require(isinstance(component, base), label, f"is registered as a {kind} but is not a {base.__name__}")
    _require(getattr(component, "kind", None) == kind, label, f"has kind {getattr(component, 'kind', None)!r}, not {kind!r}")
    _require(isinstance(component.declared, Declared), label, "config.declares() must return a Declared")


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


# --------------------------------------------------------------------------------------
# Per kind
# --------------------------------------------------------------------------------------
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
        if pil is not None:
            from_pil = encoder.encode_image(pil)
            _require(
                tuple(from_pil.shape) == tuple(image_embed.shape),
                label,
                f"encode_image of {len(pil)} PIL images must give {list(image_embed.shape)}, got {list(from_pil.shape)}",
            )
            _require_unit_norm(from_pil, label, "encode_image of PIL images")


def check_prior(prior: Prior, *, sampler: Sampler | None = None, captions: int = 32, candidates: int = 8) -> None:
    """``sample`` gives finite ``[B, D]`` embeddings, for any ``candidates``; more candidates
    bring the embeddings closer to their captions (unCLIP's best of N by z_i·z_t) — or, for a
    prior whose samples do not depend on the seed, change nothing. A prior that is also a
    :class:`DiffusionModel` passes :func:`check_diffusion_model` (``drop_text``)."""
    label = _label(prior)
    embed_dim, length, width, _ = _sizes(prior.declared)
    sampler = _sampler_for(prior, sampler)
    text = _to(make_text_encoding(captions, embed_dim, length, width, _generator(1000)), prior)

    def sample(seed: int, n: int) -> Tensor:
        with torch.no_grad():
            return prior.sample(text, sampler=sampler, generator=_generator(seed), guidance_scale=2.0, candidates=n)

    singles = [sample(seed, 1) for seed in range(4)]
    single, other, best = singles[0], singles[1], sample(0, candidates)
    for what, z in (("candidates=1", single), (f"candidates={candidates}", best)):
        _require(
            tuple(z.shape) == (captions, embed_dim),
            label,
            f"sample with {what} for {captions} captions must give [{captions}, {embed_dim}], got {list(z.shape)}",
        )
        _require(z.is_floating_point() and bool(torch.isfinite(z).all()), label, f"sample with {what} gave non-finite or non-float values")
    if torch.equal(single, other):
        _require(
            _close(best, single),
            label,
            f"its samples do not depend on the seed, so candidates={candidates} must give the same embeddings as candidates=1",
        )
    else:
        def scores(z: Tensor) -> Tensor:
            return (z.float() * text.embed.float()).sum(-1)

        # The best of 8 draws beats a typical one by ~1.4 standard deviations of a caption's
        # scores; averaged over the captions, 0.6 of a deviation separates it from sampling noise.
        single_scores = torch.stack([scores(z) for z in singles])
        typical, spread = float(single_scores.mean()), float(single_scores.std(dim=0).mean())
        gained = float(scores(best).mean()) - typical
        _require(
            gained > 0.6 * spread,
            label,
            f"with candidates={candidates} the embeddings are no closer to their captions than with one "
            f"(mean z_i·z_t up by {gained:.4f}, where a caption's scores spread by {spread:.4f}); sample() "
            "must draw `candidates` embeddings per caption and keep the one with the highest dot product with z_t",
        )
    if isinstance(prior, DiffusionModel):
        generator = _generator(6)
        x_t = torch.randn(3, embed_dim, generator=generator).to(prior.device)
        cond = PriorCondition.from_text(_to(make_text_encoding(3, embed_dim, length, width, generator), prior))
        check_diffusion_model(prior, x_t, _timesteps(prior.schedule, 3, prior.device), cond, drop_flags=("drop_text",))


def check_decoder(decoder: Decoder) -> None:
    """:func:`check_diffusion_model` on a decoder: ``drop_image`` (and ``drop_text`` when it
    reads captions) must change the prediction, and guidance must be the CFG formula."""
    x_t, t, cond = _diffusion_inputs(decoder, _generator(8))
    flags = ("drop_image", "drop_text") if cond.text_embed is not None else ("drop_image",)
    check_diffusion_model(decoder, x_t, t, cond, drop_flags=flags)


def check_upsampler(upsampler: Upsampler) -> None:
    """:func:`check_diffusion_model` on an upsampler, which must also actually read its
    low-resolution condition."""
    label = _label(upsampler)
    x_t, t, cond = _diffusion_inputs(upsampler, _generator(9))
    check_diffusion_model(upsampler, x_t, t, cond, drop_flags=())
    with torch.no_grad():
        out = upsampler(x_t, t, cond)
        other = upsampler(x_t, t, UpsamplerCondition(-cond.low_res))
    _require(_differ(out, other), label, "its prediction does not depend on the low-resolution condition")


def check_diffusion_model(
    model: DiffusionModel, x_t: Tensor, t: Tensor, cond: Any, *, drop_flags: Sequence[str] = ()
) -> None:
    """A diffusion model's one call and the denoiser built on it.

    ``model(x_t, t, cond)`` returns ``x_t``'s shape — with the channels (dim 1) doubled for
    ``variance_type="learned_range"`` — finite and floating; ``prediction_type``,
    ``variance_type`` and ``schedule`` are valid; ``model.denoiser(cond, 1.0)`` satisfies the
    :class:`Denoiser` protocol and equals the plain call; with guidance ``s`` it equals
    ``uncond + s (cond - uncond)`` (when the condition has an unconditional form); setting any
    of ``drop_flags`` changes the prediction.
    """
    label = _label(model)
    _require(model.prediction_type in ("eps", "x0", "v"), label, f"unknown prediction_type {model.prediction_type!r}")
    _require(
        model.variance_type in ("fixed_small", "fixed_large", "learned_range"),
        label,
        f"unknown variance_type {model.variance_type!r}",
    )
    _require(isinstance(model.schedule, NoiseSchedule), label, "schedule must be a NoiseSchedule")
    with torch.no_grad():
        out = model(x_t, t, cond)
        channels = x_t.shape[1] * (2 if model.variance_type == "learned_range" else 1)
        expected = (x_t.shape[0], channels, *x_t.shape[2:])
        _require(
            tuple(out.shape) == expected,
            label,
            f"forward must return {list(expected)} for x_t {list(x_t.shape)} with variance_type "
            f"{model.variance_type!r}, got {list(out.shape)}",
        )
        _require(out.is_floating_point() and bool(torch.isfinite(out).all()), label, "forward returned non-finite or non-float values")

        denoiser = model.denoiser(cond, 1.0)
        _require(isinstance(denoiser, Denoiser), label, "denoiser() must return an object with the Denoiser protocol's attributes")
        for attr in ("prediction_type", "variance_type", "clip_range"):
            _require(
                getattr(denoiser, attr) == getattr(model, attr),
                label,
                f"its denoiser's {attr} {getattr(denoiser, attr)!r} differs from the model's {getattr(model, attr)!r}",
            )
        _require(_close(denoiser(x_t, t), out), label, "denoiser(cond, guidance_scale=1) must equal the plain forward call")

        try:
            uncond = cond.unconditional()
        except NotImplementedError:
            uncond = None
        if uncond is not None:
            scale = 3.0
            expected_guided = guide(out, model(x_t, t, uncond), scale, model.variance_type)
            guided = model.denoiser(cond, scale)(x_t, t)
            _require(
                _close(guided, expected_guided, tolerance=1e-4),
                label,
                f"denoiser(cond, guidance_scale={scale}) must equal uncond + {scale}·(cond − uncond) "
                "(classifier-free guidance on the prediction)",
            )
        for flag in drop_flags:
            dropped = dataclasses.replace(cond, **{flag: torch.ones_like(getattr(cond, flag))})
            _require(
                _differ(model(x_t, t, dropped), out),
                label,
                f"setting {flag} does not change its prediction; it must swap in the null input "
                "(that is how conditioning dropout and classifier-free guidance work)",
            )


def check_sampler(sampler: Sampler, *, atol: float = 1e-4) -> None:
    """The sampler owns the loop: driven by an exact denoiser (:func:`make_exact_denoiser`)
    it returns the known ``x0`` for every prediction type and variance type, for image-shaped
    and embedding-shaped samples; it returns the requested shape; it calls the callback once
    per step, in order (``config.steps`` times, where the config has ``steps``); and it
    uses ``x_T`` when given."""
    label = _label(sampler)
    schedule = NoiseSchedule.from_name("cosine", 1000)
    cases: tuple[tuple[tuple[int, ...], PredictionType, VarianceType], ...] = (
        ((2, 3, 8, 8), "eps", "fixed_small"),
        ((3, 16), "x0", "learned_range"),
        ((2, 3, 8, 8), "v", "fixed_large"),
    )
    for shape, prediction_type, variance_type in cases:
        generator = _generator(10)
        x0 = (torch.rand(shape, generator=generator) * 1.8 - 0.9)
        denoiser = make_exact_denoiser(x0, schedule, prediction_type=prediction_type, variance_type=variance_type)
        steps: list[StepInfo] = []
        out = sampler.sample(denoiser, shape, generator=_generator(0), callback=steps.append)
        case = f"(shape {list(shape)}, prediction {prediction_type!r}, variance {variance_type!r})"
        _require(tuple(out.shape) == shape, label, f"sample must return the requested shape {list(shape)} {case}, got {list(out.shape)}")
        error = float((out.float() - x0).abs().max())
        _require(
            error <= atol,
            label,
            f"with an exact denoiser sample must return the clean sample x0 {case}; off by {error:.3g} (max abs)",
        )
        _require(len(steps) >= 1, label, f"never called the callback {case}")
        _require(
            [s.index for s in steps] == list(range(len(steps))) and all(s.total == len(steps) for s in steps),
            label,
            f"must call the callback once per step with index 0..total-1 in order {case}; got "
            f"{[(s.index, s.total) for s in steps]}",
        )
        _require(all(tuple(s.x.shape) == shape for s in steps), label, f"callback StepInfo.x must have the sample's shape {case}")
        wanted = getattr(sampler.config, "steps", None)
        _require(
            wanted is None or len(steps) == wanted,
            label,
            f"config.steps is {wanted} but the callback was called {len(steps)} times {case}",
        )
        _require(denoiser.calls >= len(steps), label, f"reported {len(steps)} steps but called the denoiser {denoiser.calls} times")

    shape = (2, 3, 8, 8)
    smooth = _SmoothDenoiser(schedule)
    x_a = torch.randn(shape, generator=_generator(11))
    with torch.no_grad():
        from_a = sampler.sample(smooth, shape, generator=_generator(0), x_T=x_a)
        from_b = sampler.sample(smooth, shape, generator=_generator(0), x_T=-x_a)
    _require(_differ(from_a, from_b), label, "ignores the x_T it is given")


def check_dataset(dataset: Any) -> None:
    """Items are ``{"image": [3, H, W] float in [-1, 1], "caption": str}``, the same item
    each time it is read."""
    label = f"dataset {type(dataset).__name__}"
    if not hasattr(dataset, "__getitem__") and hasattr(dataset, "batches"):
        _check_streaming_dataset(dataset, label)
        return
    _require(len(dataset) >= 1, label, "is empty")
    for index in sorted({0, len(dataset) - 1}):
        item = dataset[index]
        _require(isinstance(item, Mapping), label, f"item {index} must be a mapping, got {type(item).__name__}")
        _require({"image", "caption"} <= set(item), label, f"item {index} must have 'image' and 'caption', has {sorted(item)}")
        image, caption = item["image"], item["caption"]
        _require(
            isinstance(image, Tensor) and image.ndim == 3 and image.shape[0] == 3 and image.is_floating_point(),
            label,
            f"item {index}'s image must be a float tensor [3, H, W], got "
            f"{list(image.shape) if isinstance(image, Tensor) else type(image).__name__}",
        )
        _require(bool(((image >= -1) & (image <= 1)).all()), label, f"item {index}'s image has values outside [-1, 1]")
        _require(isinstance(caption, str), label, f"item {index}'s caption must be a str, got {type(caption).__name__}")
        again = dataset[index]
        _require(torch.equal(again["image"], image) and again["caption"] == caption, label, f"item {index} differs when read twice")


def _check_streaming_dataset(dataset: Any, label: str) -> None:
    """A streaming dataset (``batches(rank=, world_size=, batch_size=, workers=, seed=, skip=)``)
    yields raw batches ``{"image": [B, 3, H, W] in [-1, 1], "caption": [str] * B, "index": [...]}``,
    and the same first batch each time it is started with the same seed."""
    def first_batch() -> Mapping:
        return next(iter(dataset.batches(rank=0, world_size=1, batch_size=2, workers=0, seed=0, skip=0)))

    batch = first_batch()
    _require(isinstance(batch, Mapping), label, f"batches must be mappings, got {type(batch).__name__}")
    _require({"image", "caption", "index"} <= set(batch), label, f"a batch must have 'image', 'caption' and 'index', has {sorted(batch)}")
    image, captions = batch["image"], batch["caption"]
    _require(
        isinstance(image, Tensor) and image.ndim == 4 and image.shape[:2] == (2, 3) and image.is_floating_point(),
        label,
        f"a batch's image must be a float tensor [2, 3, H, W], got {list(image.shape) if isinstance(image, Tensor) else type(image).__name__}",
    )
    _require(bool(((image >= -1) & (image <= 1)).all()), label, "a batch's images have values outside [-1, 1]")
    _require(len(captions) == 2 and all(isinstance(c, str) for c in captions), label, "a batch's captions must be 2 str")
    again = first_batch()
    _require(torch.equal(again["image"], image) and list(again["caption"]) == list(captions), label, "the first batch differs when started twice")


def check_evaluation(evaluation: Any) -> None:
    """The default prompt set is non-empty, fixed, and made of :class:`EvalCase` with at least
    one sample each; the report of blank images is a JSON-serialisable mapping."""
    import json

    from PIL import Image

    from unclip_core.evaluation import EvalCase, EvalSamples

    label = f"evaluation {type(evaluation).__name__}"
    cases = evaluation.cases()
    _require(isinstance(cases, list) and len(cases) > 0, label, "cases() must return a non-empty list")
    _require(all(isinstance(c, EvalCase) and c.samples >= 1 for c in cases), label, "cases must be EvalCase with samples >= 1")
    _require(cases == evaluation.cases(), label, "cases() differs when called twice")
    _require(evaluation.cases([c.prompt for c in cases[:1]])[0].prompt == cases[0].prompt, label, "cases(prompts) must keep the prompts given")
    blank = [EvalSamples(c, [Image.new("RGB", (32, 32), (128, 128, 128))] * c.samples) for c in cases]
    report = evaluation.report(blank)
    _require(isinstance(report, Mapping), label, f"report() must return a mapping, got {type(report).__name__}")
    try:
        json.dumps(report)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label}: its report is not JSON-serialisable: {exc}") from None


# --------------------------------------------------------------------------------------
# Seeds, weights, training
# --------------------------------------------------------------------------------------
def check_determinism(
    component: Any,
    *,
    sampler: Sampler | None = None,
    batch: Mapping[str, Any] | None = None,
    stochastic: bool | None = None,
) -> None:
    """Same inputs and generator seed, same result — even when torch's global RNG holds
    something else, since every random draw must come from the ``generator`` argument.

    Checks ``encode_text``/``encode_image`` (encoders), ``sample`` (priors, samplers),
    ``forward`` (diffusion models) and, given a ``batch``, ``training_loss``. A sampler must
    also give different samples for different seeds (it draws ``x_T``); a prior must when
    ``stochastic`` is True, and must not when it is False.
    """
    label = _label(component)
    # (what, run(seed), whether different seeds must give different results: None = either)
    runs: list[tuple[str, Callable[[int], Any], bool | None]] = []
    if isinstance(component, Encoder):
        size = _sizes(component.declared)[3]
        images = _images(2, size, _generator(12)).to(component.device)
        runs.append(("encode_text", lambda seed: component.encode_text(list(PROMPTS)).embed, False))
        runs.append(("encode_image", lambda seed: component.encode_image(images), False))
    if isinstance(component, Prior):
        embed_dim, length, width, _ = _sizes(component.declared)
        text = _to(make_text_encoding(3, embed_dim, length, width, _generator(13)), component)
        use = _sampler_for(component, sampler)

        def prior_sample(seed: int) -> Tensor:
            return component.sample(text, sampler=use, generator=_generator(seed), guidance_scale=2.0, candidates=2)

        runs.append(("sample", prior_sample, stochastic))
    if isinstance(component, DiffusionModel):
        x_t, t, cond = _diffusion_inputs(component, _generator(14))
        runs.append(("forward", lambda seed: component(x_t, t, cond), False))
    if isinstance(component, Sampler):
        smooth, shape = _SmoothDenoiser(NoiseSchedule.from_name("cosine", 1000)), (2, 3, 8, 8)
        runs.append(("sample", lambda seed: component.sample(smooth, shape, generator=_generator(seed)), True))
    if batch is not None and callable(getattr(component, "training_loss", None)):
        runs.append(("training_loss", lambda seed: component.training_loss(dict(batch), _generator(seed)), None))

    for what, run, must_vary in runs:
        with torch.no_grad():
            first = _with_global_seed(101, lambda: run(0))
            second = _with_global_seed(202, lambda: run(0))
            _require(
                torch.equal(first, second),
                label,
                f"{what} gave different results for the same generator seed when torch's global RNG "
                "changed; every random draw must use the explicit generator it is given",
            )
            if must_vary is not None and _differ(first, run(1)) != must_vary:
                raise AssertionError(
                    f"{label}: {what} gave identical results for generator seeds 0 and 1; it must draw its "
                    "randomness from the generator it is given"
                    if must_vary
                    else f"{label}: {what} gave different results for generator seeds 0 and 1; it was expected "
                    "not to depend on the seed"
                )


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
    from unclip_core.weights import load_weights, save_weights

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


def check_train_step_reduces_loss(
    component: Any, batch: Mapping[str, Any], *, steps: int = 5, lr: float = 1e-3, seed: int = 0
) -> None:
    """A few AdamW steps on one fixed batch (and fixed timesteps and noise: the generator is
    reseeded each step) lower ``training_loss(batch, generator)``: the loss reaches the
    trainable parameters and its sign is right. Works on a copy; ``component`` is untouched."""
    label = _label(component)
    model = copy.deepcopy(component)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    _require(bool(params), label, "has training_loss but no trainable parameters")

    def loss() -> Tensor:
        return model.training_loss(dict(batch), _generator(seed))

    first = loss()
    _require(
        isinstance(first, Tensor) and first.ndim == 0 and bool(torch.isfinite(first.detach())),
        label,
        f"training_loss must return a finite scalar tensor, got {first!r}",
    )
    _require(first.requires_grad, label, "training_loss returned a tensor that carries no gradient")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        before, after = first.item(), loss().item()
    _require(
        after < before,
        label,
        f"training_loss did not decrease over {steps} AdamW steps (lr {lr}) on a fixed batch and seed: "
        f"{before:.5g} -> {after:.5g}",
    )


# --------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------
class _SmoothDenoiser:
    """An x0-predicting denoiser whose answer depends on ``x_t`` (it shrinks it), so a
    sampler's result depends on where it starts: for seed and x_T checks."""

    prediction_type: PredictionType = "x0"
    variance_type: VarianceType = "fixed_small"
    clip_range: float | None = 1.0
    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        a, _ = alpha_sigma(self.schedule, torch.as_tensor(t).cpu().long(), x_t)
        return torch.tanh(0.5 * a * x_t)


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
    else the registered ``ddim`` (3 steps)."""
    if prior.declared.needs_sampler is False:
        return None
    if sampler is not None:
        return sampler
    from unclip_core.registry import default_registry

    try:
        spec = default_registry().get("sampler", "ddim")
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


def _pil_images(images: Tensor) -> list | None:
    try:
        from unclip_core.images import tensor_to_pil
    except ImportError:  # pragma: no cover - pillow is a dependency, but the suite must not need it
        return None
    return tensor_to_pil(images.cpu())


def _to(text: TextEncoding, component: Any) -> TextEncoding:
    from unclip_core.interfaces import map_tensors

    return map_tensors(text, lambda tensor: tensor.to(component.device))


def _timesteps(schedule: NoiseSchedule, batch: int, device: torch.device) -> Tensor:
    """Timesteps spread over the whole schedule, noisiest last."""
    last = schedule.num_train_timesteps - 1
    return torch.linspace(0, last, batch).round().long().to(device)


def _diffusion_inputs(model: Any, generator: torch.Generator) -> tuple[Tensor, Tensor, Any]:
    """``(x_t, t, cond)`` at the model's declared sizes, batch 3."""
    declared, batch = model.declared, 3
    embed_dim, length, width, size = _sizes(declared)
    device = model.device
    if isinstance(model, Prior):
        x_t = torch.randn(batch, embed_dim, generator=generator)
        cond: Any = PriorCondition.from_text(make_text_encoding(batch, embed_dim, length, width, generator))
    elif isinstance(model, Upsampler):
        channels = getattr(model, "in_channels", 3)
        x_t = torch.randn(batch, channels, size, size, generator=generator)
        low = declared.input_size or max(size // 2, 1)
        cond = UpsamplerCondition(torch.rand(batch, channels, low, low, generator=generator) * 2 - 1)
    else:
        channels = getattr(model, "in_channels", 3)
        x_t = torch.randn(batch, channels, size, size, generator=generator)
        image_embed = torch.nn.functional.normalize(torch.randn(batch, embed_dim, generator=generator), dim=-1)
        text = make_text_encoding(batch, embed_dim, length, width, generator) if declared.text_width is not None else None
        cond = DecoderCondition.build(image_embed, text)
    from unclip_core.interfaces import map_tensors

    return x_t.to(device), _timesteps(model.schedule, batch, device), map_tensors(cond, lambda tensor: tensor.to(device))


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
    return found


def _perturb_state(module: nn.Module, generator: torch.Generator) -> None:
    """Nudge every floating-point tensor of the state dict, as training would."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
                tensor.add_(0.01 * noise.to(device=tensor.device, dtype=tensor.dtype))


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
