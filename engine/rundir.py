"""The run directory: plain files a researcher can open, written so that a killed run loses nothing.

``config.json`` and ``summary.json`` are replaced atomically (write to a temporary file, fsync, rename);
``episodes.jsonl`` is append-only, one finished episode per line, flushed and fsynced after each line, so a
run killed at any moment leaves at most a torn last line, which is ignored on resume. A task may have
several records (an episode that ended by an error, then its retry): the latest one counts.

One process at a time owns a run directory: ``.lock`` is held with ``flock`` for the whole run and names
the holder's pid. The kernel releases the lock when its holder dies, however it dies, so a lock left by
a killed run is never in the way.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import threading
from pathlib import Path

from pydantic import BaseModel, ValidationError

from learnact.engine.records import EpisodeRecord

CONFIG = "config.json"
EPISODES = "episodes.jsonl"
SUMMARY = "summary.json"
LOCK = ".lock"
MAX_CONFIG_BYTES = 50_000_000


class RunDirError(ValueError):
    """The run directory cannot be used; the message is one line that says why and what to do."""


class RunDirBusy(RunDirError):
    """Another process holds the run directory's lock."""


def describe_os_error(exc: OSError, path: Path, doing: str) -> RunDirError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason += " (the disk is full)"
    where = exc.filename if isinstance(exc.filename, str) else str(path)
    return RunDirError(f"cannot {doing} {where}: {reason}")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._lock_file: int | None = None
        self._created = False

    def check_usable(self) -> None:
        """Refuse, without writing anything, a path that cannot be a run directory."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file, not a directory; give a directory")
        for parent in self.path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunDirError(f"--out {self.path} is inside {parent}, which is a file")
                break

    def lock(self) -> None:
        """Take the run directory for this process (creating it), or raise RunDirBusy naming the holder."""
        self.check_usable()
        try:
            if not self.path.is_dir():
                self.path.mkdir(parents=True)
                self._created = True
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise describe_os_error(exc, self.path, "create the run directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunDirBusy(
                f"{self.path} is in use by another learnact eval (pid {holder}); "
                "wait for it to finish or use another --out"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise describe_os_error(exc, self.path, "lock the run directory") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise describe_os_error(exc, self.path / LOCK, "write") from None
        self._lock_file = fd

    def unlock(self, discard_if_unused: bool = False) -> None:
        """Release the lock. With ``discard_if_unused``, a directory this process created and never
        wrote a run to is removed again (a run that could not start leaves nothing behind)."""
        if self._lock_file is None:
            return
        fd, self._lock_file = self._lock_file, None
        if discard_if_unused and self._created and not (self.path / CONFIG).exists():
            try:
                (self.path / LOCK).unlink()
                self.path.rmdir()
            except OSError:
                pass
        os.close(fd)  # closing the last descriptor releases the flock

    def previous_config(self) -> dict | None:
        """The config of the run already in the folder (a JSON object), None when there is none."""
        config_path = self.path / CONFIG
        if not config_path.exists():
            return None
        try:
            if config_path.stat().st_size > MAX_CONFIG_BYTES:
                raise RunDirError(f"{config_path} is too large to be a run's config; use another --out")
            previous = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{config_path} is not valid JSON ({exc}); use another --out") from None
        except OSError as exc:
            raise describe_os_error(exc, config_path, "read") from None
        if not isinstance(previous, dict):
            raise RunDirError(f"{config_path} is not a run's config (not a JSON object); use another --out")
        return previous

    def write_config(self, config: BaseModel) -> None:
        try:
            write_atomic(self.path / CONFIG, config.model_dump_json(indent=2) + "\n")
        except OSError as exc:
            raise describe_os_error(exc, self.path / CONFIG, "write") from None

    def finished(self) -> list[EpisodeRecord]:
        """Episodes already recorded, in file order (a task may appear more than once: the latest
        record counts). A torn last line (a killed write) is cut off."""
        path = self.path / EPISODES
        if not path.exists():
            return []
        try:
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with path.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        except OSError as exc:
            raise describe_os_error(exc, path, "read") from None
        records = []
        for number, line in enumerate(data.split(b"\n")[:-1], start=1):  # [-1]: empty or the torn line
            try:
                records.append(EpisodeRecord.model_validate_json(line))
            except ValidationError as exc:
                raise RunDirError(
                    f"{path}:{number} is not an episode record ({exc.errors()[0]['msg']}); "
                    "remove that line to resume, or use another --out"
                ) from None
        return records

    def latest(self) -> dict[str, EpisodeRecord]:
        """The latest record of every task, in the order the tasks were first recorded."""
        latest: dict[str, EpisodeRecord] = {}
        for record in self.finished():
            latest[record.task] = record
        return latest

    def append(self, record: EpisodeRecord) -> None:
        line = record.model_dump_json() + "\n"
        path = self.path / EPISODES
        with self._lock:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                try:
                    end = os.lseek(fd, 0, os.SEEK_END)
                    try:
                        data = memoryview(line.encode("utf-8"))
                        while data:
                            data = data[os.write(fd, data) :]
                        os.fsync(fd)
                    except OSError:
                        os.ftruncate(fd, end)  # no half line before the next record (e.g. a full disk)
                        raise
                finally:
                    os.close(fd)
            except OSError as exc:
                raise describe_os_error(exc, path, "write") from None

    def write_summary(self, summary: BaseModel) -> None:
        try:
            write_atomic(self.path / SUMMARY, summary.model_dump_json(indent=2) + "\n")
        except OSError as exc:
            raise describe_os_error(exc, self.path / SUMMARY, "write") from None
