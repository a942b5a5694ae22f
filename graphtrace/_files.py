"""Atomic file writes: a temporary file in the target folder, then ``os.replace``."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[Any]], object], *, binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``.

    An interrupted or failing write never leaves a half-written ``path``: an existing file is replaced
    only by a complete one, and the temporary file is removed on error. An existing file keeps its
    permission bits; one without any write bit (``chmod a-w``) is not replaced at all: PermissionError,
    whoever runs the program (root included).
    """
    target = Path(path)
    mode = None
    if target.exists():
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(target))
        mode = stat.S_IMODE(target.stat().st_mode)
        if not mode & 0o222:
            raise PermissionError(errno.EACCES, "read-only file (no write permission bit), not replaced", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:  # an unwritable folder: name the user's path, not our temporary
        raise type(exc)(exc.errno, exc.strerror, str(target)) from None
    try:
        # mkstemp makes 0600: give a new file the usual permissions, a replaced one its own
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        fh: IO[Any]
        fh = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="")
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename == tmp:  # name the user's path, not our temporary
            exc.filename = str(target)
        raise
    return target
