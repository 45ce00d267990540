"""One exception family for everything a user can get wrong.

The CLI prints ``str(error)`` and exits 2 without a traceback, so every message must stand
on its own: say what was wrong and where (a YAML path, a file, a plugin name).
"""
from __future__ import annotations


QUOTE_LIMIT = 80
"""Longest piece of user input quoted in full in a message (a 13,000-character caption would
otherwise make a 13,000-character "line")."""


def shorten(text: object, limit: int = QUOTE_LIMIT) -> str:
    """``text`` for quoting in a one-line message: at most ``limit`` characters, the middle
    replaced by ``…`` and the number of characters left out."""
    text = str(text)
    if len(text) <= limit:
        return text
    keep = max(limit - 20, 10)
    return f"{text[: keep // 2]}…[{len(text) - keep} characters]…{text[-(keep - keep // 2):]}"


class UnclipError(Exception):
    """Base of every error the framework raises on purpose."""


class RecipeError(UnclipError):
    """A recipe (or an override) is malformed, names an unknown component, or does not chain.

    ``problems`` holds every problem found, each as ``(yaml_path, message)``, so tools can
    show them all at once; ``str()`` lists them one per line.
    """

    def __init__(self, problems: list[tuple[str, str]] | str, source: str | None = None):
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"{path}: {msg}" if path else msg for path, msg in self.problems]
        if len(lines) == 1:
            text = f"recipe error{where}: {lines[0]}"
        else:
            text = f"{len(lines)} recipe errors{where}:\n" + "\n".join(f"  - {line}" for line in lines)
        super().__init__(text)

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.problems]


class PluginError(UnclipError):
    """A plugin failed to load, registered a bad component, or clashes with another."""


class CheckpointError(UnclipError):
    """A weights or checkpoint file is missing, corrupt, or does not fit the model."""


class InputError(UnclipError):
    """A user-supplied input (image, prompt, mask, path) cannot be used."""
