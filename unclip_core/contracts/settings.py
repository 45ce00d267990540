"""Settings and kind: every component's config rejects unknown keys and round-trips, and the component is the kind it is registered as."""
from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from unclip_core.contracts._support import UNKNOWN_SETTING, _dump, _label, _require
from unclip_core.evaluation import Evaluation
from unclip_core.interfaces import KINDS, Autoencoder, ComponentConfig, Declared, Decoder, Encoder, Prior, Sampler, Upsampler


BASE_CLASS: dict[str, type] = {
    "encoder": Encoder,
    "prior": Prior,
    "decoder": Decoder,
    "upsampler": Upsampler,
    "sampler": Sampler,
    "autoencoder": Autoencoder,
}
"""The interface each pipeline kind must implement (datasets are any ``torch`` Dataset)."""


def check_config_rejects_unknown_settings(config_model: type, config: ComponentConfig | None = None) -> None:
    """The settings model derives from :class:`ComponentConfig` and rejects a key it does not
    know (a misspelt setting must be an error in the recipe, never silently ignored)."""
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
        _require(isinstance(component, Evaluation), f"evaluation {type(component).__name__}", "is not an unclip_core.evaluation.Evaluation")
        return
    _require(kind in BASE_CLASS, label, f"unknown kind {kind!r}; kinds are {', '.join(BASE_CLASS)}")
    base = BASE_CLASS[kind]
    _require(isinstance(component, base), label, f"is registered as a {kind} but is not a {base.__name__}")
    _require(getattr(component, "kind", None) == kind, label, f"has kind {getattr(component, 'kind', None)!r}, not {kind!r}")
    _require(isinstance(component.declared, Declared), label, "config.declares() must return a Declared")
