"""Writing files so that readers see the old ones or the whole new ones, never half of them."""
from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

Writer = Callable[[Path], object]
"""Writes a file's whole content to the path it is given (a temporary beside the target)."""


def atomic_write(path: str | Path, write: Writer) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is hidden (``.name.<random>.tmp``) and removed if ``write`` fails or the
    process is interrupted before the rename, so an existing ``path`` is never lost or left
    half-written. It is created with mode 0666 so the umask applies as for any new file
    (``mkstemp`` would make it 0600). An operating-system error while writing (a full disk
    raises one that names no file) is re-raised naming ``path``.
    """
    return atomic_write_all([(Path(path), write)])[0]


def atomic_write_all(writes: Sequence[tuple[str | Path, Writer]]) -> list[Path]:
    """Write several files all or none: every one to its temporary first, then all renamed.

    A full disk at the third of five files leaves none of the five new files behind (and the
    old ones as they were); only a failing rename, after every byte is on disk, could leave
    some renamed and some not."""
    pending: list[tuple[Path, Path]] = []
    try:
        for target, write in writes:
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            except OSError as exc:  # name the file the user asked for, not the hidden temporary one
                raise _naming(exc, target) from None
            pending.append((tmp, target))
            try:
                write(tmp)
            except OSError as exc:
                raise _naming(exc, target) from None
        for tmp, target in pending:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise _naming(exc, target) from None
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    return [target for _, target in pending]


def _naming(exc: OSError, target: Path) -> OSError:
    """``exc`` naming ``target`` (the operating system named the temporary file, or nothing)."""
    try:
        return type(exc)(exc.errno, exc.strerror or str(exc), str(target))
    except Exception:  # a subclass with another constructor
        return OSError(exc.errno, exc.strerror or str(exc), str(target))


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{16}\.tmp$")


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Delete the temporaries :func:`atomic_write` left in ``folder`` for files called
    ``names`` when its process was killed between write and rename (``kill -9``: no cleanup
    runs). Only call it for files no other live process is writing."""
    folder = Path(folder)
    wanted = set(names)
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and match["name"] in wanted and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
