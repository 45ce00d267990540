"""Writing a file so that readers see the old one or the whole new one, never half of it."""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The temporary file is hidden (``.name.<random>.tmp``) and removed if ``write`` fails or the
    process is interrupted before the rename, so an existing ``path`` is never lost or left
    half-written. It is created with mode 0666 so the umask applies as for any new file
    (``mkstemp`` would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:  # name the file the user asked for, not the hidden temporary one
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
