"""Checking where a command will write before it does any work.

A generation or a training run may take minutes; finding only when it saves that the output
sits under a regular file or in a folder nobody may write to wastes them and, for multi-file
outputs, can leave part of the files written. Commands call :func:`check_writable` on each
output first; the error is one line naming the output and the part of its path at fault.
"""
from __future__ import annotations

import os
from pathlib import Path

from unclip_core.errors import InputError


def check_writable(path: str | Path, what: str = "output", *, folder: bool = False) -> Path:
    """``path`` as a :class:`Path` if a file (or, with ``folder``, a folder) can be written there.

    Missing parent folders are fine (writers create them); what is refused: an empty path, a
    path whose existing part is a file where a folder is needed, an existing folder where a
    file is to be written (or the reverse), and a nearest existing folder this process may not
    write in.
    """
    if not str(path).strip():
        raise InputError(f"the {what} path is empty")
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise InputError(f"cannot write {what} {path}: it is a file, not a folder")
        if not folder and path.is_dir():
            raise InputError(f"cannot write {what} {path}: it is a folder")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write {what} {path}: {ancestor} is a file, not a folder")
    writable_here = path if folder and path.is_dir() else ancestor
    if not os.access(writable_here, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what} {path}: no permission to write in {writable_here}")
    return path
