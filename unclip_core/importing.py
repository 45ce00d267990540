"""What every importer shares (``unclip import FORMAT``): the interface a plugin registers,
an output folder that appears complete or not at all, and building components on the meta
device to check a foreign config against the model a component builds.

An importer turns published weights into a recipe with safetensors beside it. The format's
own knowledge (its folder layout, how its settings map onto components) lives in the plugin
that registers it through :func:`unclip_core.hookspecs.register_importers`; the core knows
no format by name.
"""
from __future__ import annotations

import argparse
import inspect
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from unclip_core.errors import InputError
from unclip_core.output_paths import check_writable

IGNORED_CONFIG_KEYS = frozenset({"_class_name", "_diffusers_version", "_name_or_path", "_use_default_values"})
"""Bookkeeping keys diffusers and transformers write into a model's config.json."""


@runtime_checkable
class Importer(Protocol):
    """What ``register_importers`` registers: ``unclip import NAME ...`` parses its own
    arguments with :meth:`add_arguments` and calls :meth:`run`, which returns the recipe it wrote."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> Path: ...


def check_output_folder(out: Path, source: Path, *, force: bool, marker: str, command: str, source_name: str) -> None:
    """The output folder may be new, or (with ``force``) a folder ``command`` wrote earlier
    (it holds ``marker``); never a file, the source folder or a folder holding it, nor a
    folder of something else. ``source_name`` names the source in errors ("the Karlo folder")."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; --force replaces only an output folder")
    if out == source or source in out.parents:
        raise InputError(f"the output folder {out} must not be inside {source_name} {source}")
    if out in source.parents:
        raise InputError(f"the output folder {out} holds {source_name} {source}; choose another --out")
    if not out.exists():
        check_writable(out, "output folder", folder=True)  # a file in its path, or no permission
        return
    if not force:
        raise InputError(f"{out} already exists; choose another --out or pass --force to replace it")
    if any(out.iterdir()) and not (out / marker).is_file():
        raise InputError(
            f"{out} is not a folder {command} wrote (it has no {marker}); --force replaces only such a folder"
        )


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A hidden work folder beside ``out``, renamed into place when the block completes (an
    existing ``out`` is swapped out only then); on any failure the work folder and every
    parent folder made for ``out`` are removed, so nothing half-written is ever left."""
    made = [parent for parent in out.parents if not parent.exists()]  # innermost first
    work = out.parent / f".{out.name}.importing-{secrets.token_hex(4)}"
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            work.mkdir()
        except OSError as exc:
            raise InputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
        yield work
        if out.exists():
            old = out.parent / f".{out.name}.replaced-{secrets.token_hex(4)}"
            os.replace(out, old)
            os.replace(work, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        for parent in made:
            try:
                parent.rmdir()
            except OSError:
                break
        raise


def build_component(
    registry: Any, kind: str, name: str, settings: dict[str, Any], base_dir: Path, *, meta: bool
) -> tuple[Any, Any]:
    """``(component, config)`` from settings an importer derived; ``meta``: on the meta device
    (no memory, no time), enough to compare configs and check weight names and shapes."""
    spec = registry.get(kind, name)
    try:
        config = spec.config_model.model_validate(settings, context={"base_dir": base_dir})
    except Exception as exc:  # noqa: BLE001 - pydantic's report, on one line
        raise InputError(f"{kind} {name!r}: the folder's settings are not valid: {' '.join(str(exc).split())}") from None
    if not meta:
        return spec.build(config), config
    with torch.device("meta"):
        return spec.build(config), config


def check_same_config(part: str, theirs: Mapping[str, Any], model: Any) -> None:
    """The folder's model config and the (diffusers) model a component builds agree on every
    setting. A key the folder's config leaves out (an older diffusers wrote it) means the
    class default, as when diffusers loads it; a key the installed diffusers does not know is
    ignored, as diffusers' own loader ignores it."""
    ours = model.config
    defaults = {
        name: param.default
        for name, param in inspect.signature(type(model).__init__).parameters.items()
        if param.default is not inspect.Parameter.empty
    }
    differing = []
    for key in sorted(ours):
        if key in IGNORED_CONFIG_KEYS or (key not in theirs and key not in defaults):
            continue
        wanted = theirs[key] if key in theirs else defaults[key]
        if _plain(wanted) != _plain(ours[key]):
            differing.append(f"{key}={wanted!r} (unclip builds {ours[key]!r})")
    if differing:
        raise InputError(f"{part}/config.json describes a model unclip does not build: {'; '.join(differing[:4])}")


def run_line(recipe: Path, prompt: str) -> str:
    """The recipe's first line: the command that runs it, with a relative path where short."""
    try:
        shown = os.path.relpath(recipe)
    except ValueError:  # another drive (Windows)
        shown = str(recipe)
    if shown.startswith(".."):
        shown = str(recipe)
    return f'# Run: unclip generate "{prompt}" -r {shown}'


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples as lists), so configs compare as their files would."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
