"""Finding plugins and the components they register.

Every plugin — the built-ins included — is an entry point in the ``unclip`` group, loaded
here one at a time inside its own ``try``: a plugin that fails to import, misspells a hook,
or raises while registering is recorded in :attr:`Registry.failures` and the rest carry on.
A name registered twice for one kind is kept out of service and reported with both
providers, so a recipe can never silently get the wrong one.

Each :func:`discover` call builds a fresh :class:`pluggy.PluginManager` (no global state);
:func:`default_registry` caches one for the CLI and :func:`unclip_core.load_pipeline`.

Environment:
  ``UNCLIP_PLUGINS``          comma-separated allowlist of entry-point or distribution names
  ``UNCLIP_DISABLE_PLUGINS``  comma-separated blocklist (wins over the allowlist)
  ``UNCLIP_TRACE_PLUGINS=1``  print every hook call and registration to stderr
"""
from __future__ import annotations

import difflib
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from unclip_core import hookspecs
from unclip_core.errors import PluginError
from unclip_core.hookspecs import HOOK_FOR_KIND, PROJECT
from unclip_core.importing import Importer
from unclip_core.interfaces import KINDS, ComponentConfig

REGISTRY_KINDS: tuple[str, ...] = (*KINDS, "autoencoder", "dataset", "evaluation")
"""The five pipeline kinds, latent decoders' autoencoders, training datasets and evaluations."""

ENTRY_POINT_GROUP = PROJECT

FIRST_PARTY = "unclip"
"""The distribution whose components keep their names when a plugin registers them again."""

ROLES: dict[str, str] = {
    "inversion": "the deterministic sampler (with an ``eta`` setting) used for DDIM-style inversion, "
    "variations, interpolation, text diffs and training previews when a recipe names none",
}
"""Roles a component may be registered for (``register(..., roles=(...))``): the core asks the
registry for a role, never for a component by name."""

QUALIFIER = ":"
"""``plugin:name`` names the component one plugin registered (see :meth:`Registry.get`)."""


@dataclass(frozen=True)
class Provider:
    """Where a component came from: the entry point and the distribution that ships it."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} (plugin {self.plugin!r})"


@dataclass(frozen=True)
class ComponentSpec:
    """One registered component: enough to validate a recipe and to build it."""

    kind: str
    name: str
    factory: Callable[[Any], Any]
    config_model: type[ComponentConfig]
    provider: Provider
    summary: str = ""
    roles: tuple[str, ...] = ()
    """What the core may use it for when a recipe names nothing (see :data:`ROLES`)."""

    def build(self, config: ComponentConfig) -> Any:
        return self.factory(config)


@dataclass(frozen=True)
class ImporterSpec:
    """One registered ``unclip import`` format (an :class:`~unclip_core.importing.Importer`)."""

    name: str
    importer: Any
    provider: Provider
    summary: str = ""


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    distribution: str
    error: str
    detail: str = ""


@dataclass
class Registry:
    """Every component by kind and name, plus what failed to load."""

    components: dict[str, dict[str, ComponentSpec]] = field(default_factory=lambda: {k: {} for k in REGISTRY_KINDS})
    duplicates: dict[tuple[str, str], list[Provider]] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    plugins: dict[str, Provider] = field(default_factory=dict)
    importers: dict[str, ImporterSpec] = field(default_factory=dict)
    registered: dict[tuple[str, str], list[ComponentSpec]] = field(default_factory=dict)
    """Every registration of each ``(kind, name)``, clashing ones included (for ``plugin:name``)."""

    # ------------------------------------------------------------------ lookups
    def names(self, kind: str) -> list[str]:
        return sorted(set(self.components.get(kind, {})) | {n for k, n in self.duplicates if k == kind})

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The component, or a :class:`PluginError` saying why not (with "did you mean").

        ``plugin:name`` picks the ``name`` that plugin (its entry point) registered: how a
        third-party component whose name a built-in already has stays reachable."""
        if kind not in self.components:
            raise PluginError(f"unknown component kind {kind!r}; kinds are {', '.join(REGISTRY_KINDS)}")
        if QUALIFIER in name:
            plugin, _, bare = name.partition(QUALIFIER)
            for spec in self.registered.get((kind, bare), []):
                if spec.provider.plugin == plugin:
                    return spec
            raise PluginError(f"plugin {plugin!r} registers no {kind} {bare!r}; " + self.unknown_message(kind, bare))
        if (kind, name) in self.duplicates:
            providers = " and ".join(str(p) for p in self.duplicates[(kind, name)])
            choices = ", ".join(repr(f"{p.plugin}{QUALIFIER}{name}") for p in self.duplicates[(kind, name)])
            raise PluginError(
                f"{kind} {name!r} is registered by both {providers}; "
                f"name one as {choices}, or disable one with UNCLIP_DISABLE_PLUGINS"
            )
        try:
            return self.components[kind][name]
        except KeyError:
            raise PluginError(self.unknown_message(kind, name)) from None

    def shadowed(self) -> list[ComponentSpec]:
        """Third-party components registered under a built-in's name: the built-in keeps the
        name, these answer to ``plugin:name`` (:meth:`get`)."""
        return [
            spec
            for (kind, name), specs in sorted(self.registered.items())
            for spec in specs
            if name in self.components[kind] and self.components[kind][name] is not spec
        ]

    def for_role(self, kind: str, role: str) -> ComponentSpec:
        """The component registered for ``role`` (a built-in first), or a :class:`PluginError`."""
        candidates = [spec for spec in self.all_components() if spec.kind == kind and role in spec.roles]
        candidates.sort(key=lambda spec: spec.provider.distribution != FIRST_PARTY)
        if not candidates:
            raise PluginError(f"no {kind} is registered for {role} ({ROLES.get(role, role)}); name one in the recipe")
        return candidates[0]

    def clash_warning(self) -> str | None:
        """One line naming every shadowed component, for the CLI to show on every command."""
        shadowed = self.shadowed()
        if not shadowed:
            return None
        named = "; ".join(
            f"{spec.kind} {spec.name!r} of {spec.provider} (use it as '{spec.provider.plugin}{QUALIFIER}{spec.name}')"
            for spec in shadowed
        )
        return f"built-in names win over plugins that register them again: {named}; `unclip plugins` lists them"

    def unknown_message(self, kind: str, name: str) -> str:
        known = self.names(kind)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listing = ", ".join(known) if known else "none registered"
        return f"{name!r} is not a registered {kind}{hint}; known {kind}s: {listing}"

    def importer(self, name: str) -> ImporterSpec:
        """The ``unclip import`` format ``name``, or a :class:`PluginError` listing the known ones."""
        try:
            return self.importers[name]
        except KeyError:
            close = difflib.get_close_matches(name, sorted(self.importers), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listing = ", ".join(sorted(self.importers)) or "none registered"
            raise PluginError(f"{name!r} is not a registered import format{hint}; known formats: {listing}") from None

    def all_components(self) -> Iterable[ComponentSpec]:
        for kind in REGISTRY_KINDS:
            for name in sorted(self.components[kind]):
                yield self.components[kind][name]

    # ------------------------------------------------------------------ registration
    def _add(self, spec: ComponentSpec) -> None:
        """A first-party (``unclip``) component keeps its name whatever registers it again, so
        installing a plugin never breaks the shipped recipes; two third-party components with
        one name are ambiguous and answer only to their qualified names."""
        key = (spec.kind, spec.name)
        self.registered.setdefault(key, []).append(spec)
        if key in self.duplicates:
            self.duplicates[key].append(spec.provider)
            return
        existing = self.components[spec.kind].get(spec.name)
        if existing is None:
            self.components[spec.kind][spec.name] = spec
            return
        first_party = [s for s in (existing, spec) if s.provider.distribution == FIRST_PARTY]
        if len(first_party) == 1:
            self.components[spec.kind][spec.name] = first_party[0]
            return
        del self.components[spec.kind][spec.name]
        self.duplicates[key] = [existing.provider, spec.provider]
        self.failures.append(
            PluginFailure(
                spec.provider.plugin,
                spec.provider.distribution,
                f"{spec.kind} {spec.name!r} is already registered by {existing.provider}",
            )
        )


def _split_env(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _trace(message: str) -> None:
    if os.environ.get("UNCLIP_TRACE_PLUGINS"):
        print(f"[unclip plugins] {message}", file=sys.stderr)


def _make_register(registry: Registry, kind: str, provider: Provider) -> Callable[..., None]:
    def register(
        name: str,
        factory: Callable[[Any], Any],
        config_model: type[BaseModel],
        *,
        summary: str | None = None,
        roles: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"{provider}: a {kind} was registered without a name")
        unknown = [role for role in roles if role not in ROLES]
        if unknown:
            raise PluginError(f"{provider}: {kind} {name!r} claims unknown role(s) {unknown}; roles are {', '.join(ROLES)}")
        if not (isinstance(config_model, type) and issubclass(config_model, ComponentConfig)):
            raise PluginError(
                f"{provider}: {kind} {name!r} must give a config model derived from "
                "unclip_core.ComponentConfig (so unknown settings are rejected)"
            )
        if not callable(factory):
            raise PluginError(f"{provider}: {kind} {name!r} factory is not callable")
        doc = summary or (factory.__doc__ or "").strip().splitlines()[0:1]
        text = doc if isinstance(doc, str) else (doc[0] if doc else "")
        _trace(f"{provider.plugin}: register {kind} {name!r}")
        registry._add(ComponentSpec(kind, name, factory, config_model, provider, text.strip(), tuple(roles)))

    return register


def _make_importer_register(registry: Registry, provider: Provider) -> Callable[..., None]:
    def register(name: str, importer: Any, *, summary: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise PluginError(f"{provider}: an importer was registered without a name")
        if not isinstance(importer, Importer):
            raise PluginError(f"{provider}: importer {name!r} must have add_arguments(parser) and run(args)")
        existing = registry.importers.get(name)
        if existing is not None:
            raise PluginError(f"importer {name!r} is already registered by {existing.provider}")
        text = summary or getattr(importer, "help", "") or ""
        registry.importers[name] = ImporterSpec(name, importer, provider, text.strip())

    return register


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _distribution_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ("unknown", "?")
    return (dist.metadata["Name"] or "unknown", dist.version or "?")


def discover(extra_plugins: Iterable[tuple[str, ModuleType | object]] = ()) -> Registry:
    """Load every allowed entry point in the ``unclip`` group, plus ``extra_plugins``
    (``(name, module)`` pairs, for tests and notebooks), into a fresh registry."""
    registry = Registry()
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    allow, block = _split_env("UNCLIP_PLUGINS"), _split_env("UNCLIP_DISABLE_PLUGINS")

    candidates: list[tuple[str, Provider, Callable[[], Any]]] = []
    for ep in _entry_points():
        dist_name, version = _distribution_of(ep)
        names = {ep.name, dist_name}
        if names & block or (allow and not names & allow):
            _trace(f"skip {ep.name} ({dist_name}): not allowed by UNCLIP_PLUGINS / UNCLIP_DISABLE_PLUGINS")
            continue
        candidates.append((ep.name, Provider(ep.name, dist_name, version), ep.load))
    for name, module in extra_plugins:
        candidates.append((name, Provider(name, "local", "-"), lambda module=module: module))

    for name, provider, load in candidates:
        try:
            plugin = load()
            if manager.get_plugin(name) is not None:
                raise PluginError(f"a plugin named {name!r} is already loaded")
            manager.register(plugin, name=name)
            try:
                manager.check_pending()
            except pluggy.PluginValidationError as exc:
                manager.unregister(plugin)
                raise PluginError(f"unknown hook: {exc}") from None
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin (even one calling sys.exit) must not take the others down
            registry.failures.append(
                PluginFailure(name, provider.distribution, _describe_failure(exc), traceback.format_exc())
            )
            _trace(f"failed to load {name}: {exc}")
            continue
        registry.plugins[name] = provider

    hooks = [*HOOK_FOR_KIND.items(), (None, "register_importers")]
    for kind, hook_name in hooks:
        hook = getattr(manager.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order
            provider = registry.plugins[impl.plugin_name]
            register = _make_register(registry, kind, provider) if kind else _make_importer_register(registry, provider)
            _trace(f"call {impl.plugin_name}.{hook_name}")
            try:
                impl.function(register=register)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                registry.failures.append(
                    PluginFailure(
                        impl.plugin_name,
                        provider.distribution,
                        f"{hook_name} {_describe_failure(exc, 'raised')}",
                        traceback.format_exc(),
                    )
                )
    return registry


def _describe_failure(exc: BaseException, verb: str = "") -> str:
    """``ImportError: needs libfoo``, or ``called sys.exit(3)`` for a plugin that tried to end
    the process."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"{verb + ' ' if verb else ''}{type(exc).__name__}: {exc}"


_DEFAULT: Registry | None = None


def default_registry(refresh: bool = False) -> Registry:
    """The registry of installed plugins, discovered once per process."""
    global _DEFAULT
    if _DEFAULT is None or refresh:
        _DEFAULT = discover()
        clash = _DEFAULT.clash_warning()
        if clash is not None:
            warnings.warn(clash, PluginClashWarning, stacklevel=2)
    return _DEFAULT


class PluginClashWarning(UserWarning):
    """A plugin registered a name a built-in already has; the built-in keeps it."""
