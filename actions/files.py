"""Durable writes shared by every room that keeps files (run directories, call logs, the action library): a
file is replaced whole or not at all, and an appended line is all there or not there. It lives in the bottom
room so that the library (``actions``) and the engine use one implementation."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace ``path`` by ``text`` (a str is written as UTF-8; bytes as they are, e.g. an image): a temporary
    file beside it, fsynced, then renamed over it.

    :raises OSError: when it cannot be written (nothing of it is left behind).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def append_synced(fd: int, data: bytes, end: int) -> None:
    """Write all of ``data`` to ``fd`` (opened with O_APPEND, ``end`` its size before) and fsync it; when that
    fails (e.g. a full disk) the file is cut back to ``end``, so no half line is left before the next one.

    :raises OSError: when it cannot be written.
    """
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError:
        os.ftruncate(fd, end)
        raise
