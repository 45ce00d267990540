"""The recipes shipped with the package, found without importing torch.

Kept apart from :mod:`unclip_core.recipe.files` (which validates recipes and so needs the
registry, the interfaces and torch) so that ``unclip recipe ls`` starts as fast as a bare
Python (docs/benchmarks.md, "Start-up").
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_recipes_dir() -> Path:
    """Where the installed package keeps its recipes (package data of ``unclip_recipes``)."""
    return Path(str(resources.files("unclip_recipes")))


SLOT_FILE_MARK = "# Slot:"
"""First line of a slot file (one stage of a recipe in a file of its own, see
:func:`unclip_core.recipe.files.expand_slot_files`); such files are not recipes and are not listed as ones."""
FILE_SLOTS = ("encoder", "prior", "decoder")


def is_slot_file(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().startswith(SLOT_FILE_MARK)
    except OSError:
        return False


def shipped_recipes() -> dict[str, Path]:
    """Name → path of every recipe shipped with the package (``*.yaml`` at any depth, slot
    files left out)."""
    root = shipped_recipes_dir()
    found = {}
    for path in sorted(root.rglob("*.yaml")):
        if is_slot_file(path):
            continue
        name = path.relative_to(root).with_suffix("").as_posix()
        found[name] = path
    return found
