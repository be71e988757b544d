"""Files in run folders and libraries, which may have been handed over or planted by someone else.

Every room that keeps files (run directories, call logs, the action library, reports) uses these functions,
so that one set of rules holds everywhere:

- **No link is followed below a root.** A run folder or a library is a *root*: the folder the user named is
  opened as given, and every component below it (sub-folders and the file itself) is opened with
  ``O_NOFOLLOW`` from the descriptor of the one above, so a symbolic link planted anywhere inside never sends
  a write or a read elsewhere. A file given by the user directly (no root) is opened as named.
- **Only regular files are opened.** The check is made on the open descriptor (``fstat``), after a
  non-blocking open, so a FIFO, a device (``/dev/zero``) or a socket is refused at once instead of blocking
  or streaming forever. A file written to must have exactly one link: a hard link planted in a run folder
  is not written through either.
- **Reads are bounded by what is read, not by ``stat``.** :func:`read_bounded` reads at most ``max_bytes`` + 1
  bytes from the descriptor and refuses the file past that, whatever its size claims (sparse files).
- **Writes are whole or absent.** :func:`write_atomic` writes a temporary file beside the target, fsyncs
  and renames it over the target (a rename replaces a link, never writes through it); :class:`AppendLog`
  appends whole fsynced lines and cuts a torn last line (a killed write) before its first append.

A refusal is an :class:`OSError` whose ``strerror`` says what is wrong and what to do, so the callers'
handlers turn it into their one-line errors like any other I/O failure.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
from pathlib import Path

_READ_CHUNK = 1 << 20
_WRITING = os.O_WRONLY | os.O_RDWR


def reason(exc: OSError) -> str:
    """What went wrong, in words: the system's message, and "(the disk is full)" when it is."""
    text = exc.strerror or str(exc)
    return f"{text} (the disk is full)" if exc.errno == errno.ENOSPC else text


def _link_error(path: Path) -> OSError:
    return OSError(
        errno.ELOOP,
        "it is a symbolic link, and learnact never follows links inside a run folder or library"
        " (remove the link, or use another folder)",
        str(path),
    )


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _explained(exc: OSError, path: Path, below_root: bool) -> OSError:
    """``exc`` from opening ``path``, with a refused link or a special file said in words."""
    if below_root and exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return _link_error(path)
    if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened for writing without blocking
        return OSError(errno.ENXIO, "it is a FIFO, not a regular file", str(path))
    exc.filename = str(path)
    return exc


def _folder_fd(root: Path, folder: Path, create: bool) -> int:
    """A descriptor of ``folder``, reached from ``root`` (opened as named) without following a link below it.

    :raises OSError: when a component is missing (and ``create`` is false), a link, or not a folder.
    """
    relative = folder.relative_to(root)  # a ValueError here is a bug in the caller
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    reached = root
    for part in relative.parts:
        reached = reached / part
        try:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            raise _explained(exc, reached, below_root=True) from None
        finally:
            os.close(fd)
        fd = inner
    return fd


def make_folders(root: Path, folder: Path) -> None:
    """Create ``folder`` and the folders on the way from ``root`` (which is created as named), following no
    link below ``root``: a sub-folder planted as a link is refused, not written into.

    :raises OSError: when one cannot be created, or is a link or not a folder.
    """
    os.close(_folder_fd(root, folder, create=True))


def open_regular(path: Path, flags: int, *, root: Path | None = None, mode: int = 0o644) -> int:
    """A descriptor of the regular file ``path`` opened with ``flags`` (``O_CLOEXEC`` added). Below ``root``
    no link is followed, the file's own name included; without a root the path is opened as named. The
    open never blocks (a FIFO is refused, not waited on). Opened for writing, the file must have one link.

    :raises OSError: when it cannot be opened, is a link below ``root``, is not a regular file, or (for
        writing) has other hard links; ``strerror`` says which.
    """
    flags |= os.O_NONBLOCK | os.O_CLOEXEC
    if root is None:
        try:
            fd = os.open(path, flags, mode)
        except OSError as exc:
            raise _explained(exc, path, below_root=False) from None
    else:
        folder = _folder_fd(root, path.parent, create=bool(flags & os.O_CREAT))
        try:
            fd = os.open(path.name, flags | os.O_NOFOLLOW, mode, dir_fd=folder)
        except OSError as exc:
            raise _explained(exc, path, below_root=True) from None
        finally:
            os.close(folder)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            code = errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL
            raise OSError(code, f"it is {_kind(info.st_mode)}, not a regular file", str(path))
        if flags & _WRITING and info.st_nlink != 1:
            raise OSError(
                errno.EMLINK,
                f"it has {info.st_nlink} hard links, and learnact writes only files with one"
                " (remove the other links, or use another folder)",
                str(path),
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(path: Path, max_bytes: int, *, root: Path | None = None) -> bytes:
    """The bytes of the regular file ``path`` (opened as :func:`open_regular` does), refused past
    ``max_bytes`` as counted while reading: a file whose size ``stat`` misstates is read no further.

    :raises FileNotFoundError: when it does not exist.
    :raises OSError: when it cannot be read, is refused by :func:`open_regular`, or is larger than ``max_bytes``.
    """
    fd = open_regular(path, os.O_RDONLY, root=root)
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := os.read(fd, min(_READ_CHUNK, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise OSError(errno.EFBIG, f"it is larger than {max_bytes:,} bytes, the most learnact reads", str(path))
    finally:
        os.close(fd)
    return b"".join(chunks)


def write_atomic(path: Path, text: str | bytes, *, root: Path | None = None) -> None:
    """Replace ``path`` by ``text`` (a str is written as UTF-8; bytes as they are, e.g. an image): a temporary
    file beside it, fsynced, then renamed over it (a link at ``path`` is replaced, never written through).
    Below ``root`` the folders on the way are created or opened without following links.

    :raises OSError: when it cannot be written (nothing of it is left behind).
    """
    folder = _folder_fd(path.parent if root is None else root, path.parent, create=True)
    temporary = f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder
        )
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8") if isinstance(text, str) else text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=folder)
            except OSError:
                pass
            raise
        os.fsync(folder)
    except OSError as exc:
        exc.filename = str(path)
        raise
    finally:
        os.close(folder)


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


class AppendLog:
    """An append-only file of lines in a run folder or library (``path`` below ``root``): each append is
    whole lines in one fsynced write, and a torn last line left by a killed write is cut before the first
    append, so the next line starts on its own. Readers see complete lines only. Thread-safe.
    """

    def __init__(self, path: Path, *, root: Path, max_bytes: int) -> None:
        self.path, self.root, self.max_bytes = path, root, max_bytes
        self._lock = threading.Lock()
        self._repaired = False

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole lines, each ending with a newline).

        :raises OSError: when it cannot be written (a failed write leaves no half line) or the file is
            refused (:func:`open_regular`).
        """
        with self._lock:
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, root=self.root)
            try:
                end = os.lseek(fd, 0, os.SEEK_END)
                if not self._repaired:
                    end = _cut_torn_line(fd, end)
                    self._repaired = True
                append_synced(fd, data, end)
            finally:
                os.close(fd)

    def lines(self) -> list[bytes]:
        """The complete lines (without their newlines); a torn last line is left out. None written: none.

        :raises OSError: when the file cannot be read, is refused, or is larger than ``max_bytes``.
        """
        try:
            data = read_bounded(self.path, self.max_bytes, root=self.root)
        except FileNotFoundError:
            return []
        return data.split(b"\n")[:-1]  # [-1]: empty after the last newline, or the torn line


def _cut_torn_line(fd: int, end: int) -> int:
    """Cut a torn last line so the next line starts on its own; the new end."""
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return end
    keep = end
    while keep > 0:
        start = max(keep - _READ_CHUNK, 0)
        newline = os.pread(fd, keep - start, start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        keep = start
    os.ftruncate(fd, keep)
    return keep
