"""The whole suite for one component, and the check that a plugin's entry point registers it."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from unclip_core.contracts._support import _build, _generator, _require, _sampler_for
from unclip_core.contracts.autoencoder import check_autoencoder
from unclip_core.contracts.dataset import check_dataset
from unclip_core.contracts.declared import check_declared_matches
from unclip_core.contracts.decoder import check_decoder
from unclip_core.contracts.determinism import check_determinism
from unclip_core.contracts.encoder import check_encoder
from unclip_core.contracts.evaluation import check_evaluation
from unclip_core.contracts.inputs import make_training_batch
from unclip_core.contracts.prior import check_prior
from unclip_core.contracts.sampler import check_sampler
from unclip_core.contracts.settings import check_config_dump_roundtrip, check_config_rejects_unknown_settings, check_kind
from unclip_core.contracts.training import check_train_step_reduces_loss
from unclip_core.contracts.upsampler import check_upsampler
from unclip_core.contracts.weights import check_state_dict_roundtrip
from unclip_core.errors import PluginError
from unclip_core.interfaces import ComponentConfig, Sampler
from unclip_core.registry import discover


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
    ``sampler`` drives a prior that needs one (default: the sampler registered for the ``inversion`` role, 3 steps);
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
    if kind == "autoencoder":
        check_autoencoder(component)
        check_state_dict_roundtrip(factory, config)
        return component
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
