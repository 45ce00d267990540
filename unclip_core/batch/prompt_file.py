"""A prompt file: plain text (one prompt a line) or JSONL (one object a line).

Every line is checked before any model loads, so a typo on line 9,000 costs nothing; the
error names the file and the line. Settings given on a JSONL line win over the command's
(``-n``, ``--seed``); a line without a seed draws with ``seed + k``, ``k`` counting prompts
from 0, so two prompts never share their noise by accident.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unclip_core.cli.limits import COUNT_LIMITS, SEED_MAX, check_seed, check_text
from unclip_core.errors import InputError, shorten

JSONL_SUFFIXES = (".jsonl", ".ndjson")
"""Files read as JSONL; any other name is read as plain text."""

FIELDS = ("prompt", "seed", "n", "negative")
"""The keys a JSONL line may hold (any other is a typo, refused)."""


@dataclass(frozen=True)
class Item:
    """One line's work: ``n`` images of ``prompt`` drawn from ``seed`` (exactly what
    ``unclip generate PROMPT -n N --seed S`` draws), optionally against a negative prompt."""

    line: int
    prompt: str
    seed: int
    n: int
    negative: str | None = None

    def file_name(self, index: int) -> str:
        """Image ``index`` of this line: named by line number, so a rerun finds it again."""
        return f"{self.line:06d}-{index:03d}.png"

    def settings(self) -> dict[str, Any]:
        """What decides this line's images (with the recipe): compared on resume."""
        out: dict[str, Any] = {"prompt": self.prompt, "seed": self.seed, "n": self.n}
        if self.negative is not None:
            out["negative"] = self.negative
        return out


def read_prompt_file(path: str | Path, *, n: int = 1, seed: int = 0) -> list[Item]:
    """The file's items in line order; blank lines and (in text files) ``#`` lines skipped."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"prompts file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"prompts file {path} is a folder; give a text or .jsonl file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"prompts file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise InputError(f"cannot read prompts file {path}: {exc.strerror or exc}") from None
    jsonl = file.suffix.lower() in JSONL_SUFFIXES
    items: list[Item] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or (not jsonl and stripped.startswith("#")):
            continue
        where = f"{path}:{number}"
        fields = _json_line(stripped, where) if jsonl else {"prompt": stripped}
        items.append(_item(fields, number, where, default_n=n, default_seed=seed + len(items)))
    if not items:
        raise InputError(f"prompts file {path} holds no prompt ({'one JSON object' if jsonl else 'one prompt'} per line)")
    return items


def _json_line(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not JSON ({exc.msg} at column {exc.colno}): {shorten(text)}") from None
    if not isinstance(value, dict):
        raise InputError(f"{where}: a line must be a JSON object like {{\"prompt\": \"a red circle\"}}, got {shorten(text)}")
    unknown = sorted(set(value) - set(FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r}; a line may hold {', '.join(FIELDS)}")
    return value


def _item(fields: dict[str, Any], number: int, where: str, *, default_n: int, default_seed: int) -> Item:
    prompt = fields.get("prompt")
    if not isinstance(prompt, str):
        raise InputError(f"{where}: 'prompt' must be text, got {shorten(json.dumps(prompt))}")
    if not prompt.strip():
        raise InputError(f"{where}: the prompt is empty; describe the image to generate")
    check_text(prompt, f"{where}: the prompt")
    seed = fields.get("seed", default_seed)
    if "seed" not in fields and seed > SEED_MAX:
        raise InputError(f"{where}: --seed plus the prompt's number ({seed}) passes 2**63-1; give a smaller --seed")
    check_seed(seed, f"{where}: 'seed'")
    count = fields.get("n", default_n)
    flag, most = COUNT_LIMITS["n"]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= most:
        raise InputError(f"{where}: 'n' must be a whole number from 1 to {most}, got {shorten(json.dumps(count))}")
    negative = fields.get("negative")
    if negative is not None:
        if not isinstance(negative, str):
            raise InputError(f"{where}: 'negative' must be text, got {shorten(json.dumps(negative))}")
        check_text(negative, f"{where}: the negative prompt")
    return Item(number, prompt, seed, count, negative)
