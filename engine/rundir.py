"""The run directory: plain files a researcher can open, written so that a killed run loses nothing.

``config.json`` and ``summary.json`` are replaced atomically (write to a temporary file, fsync, rename);
``episodes.jsonl`` is append-only, one finished episode per line, flushed and fsynced after each line, so a
run killed at any moment leaves at most a torn last line, which is ignored on resume. An episode is a
task and a seed (``--seeds``); one may have several records (an episode that ended by an error, then its
retry): the latest one counts. ``splits.json`` (atomic too) says which tasks each seed trained and tested on.

One process at a time owns a run directory: ``.lock`` is held with ``flock`` for the whole run and names
the holder's pid. The kernel releases the lock when its holder dies, however it dies, so a lock left by
a killed run is never in the way.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
from pathlib import Path

from pydantic import BaseModel, ValidationError

from learnact.actions.errors import LearnactError
from learnact.actions.files import append_synced, write_atomic
from learnact.engine.records import EpisodeRecord

CONFIG = "config.json"
EPISODES = "episodes.jsonl"
SUMMARY = "summary.json"
SPLITS = "splits.json"
LOCK = ".lock"
MAX_CONFIG_BYTES = 50_000_000
ANOTHER = "use another {out}"  # the remedy when a run directory is not this run's to use
log = logging.getLogger(__name__)


class RunDirError(LearnactError):
    """The run directory ``path`` cannot be used: the message says why, the remedy what to do."""

    def __init__(self, path: Path, problem: str, remedy: str = "") -> None:
        self.path = path
        super().__init__(problem, remedy)


class RunDirBusy(RunDirError):
    """Another process, ``pid`` (None when it did not say), holds the run directory's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.pid = pid
        holder = "unknown" if pid is None else str(pid)
        super().__init__(
            path,
            f"{path} is in use by another learnact eval (pid {holder})",
            "wait for it to finish or " + ANOTHER,
        )


def describe_os_error(exc: OSError, path: Path, doing: str) -> RunDirError:
    """The RunDirError for ``exc``, raised while doing ``doing`` (e.g. "write") on ``path``."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason += " (the disk is full)"
    where = exc.filename if isinstance(exc.filename, str) else str(path)
    return RunDirError(path, f"cannot {doing} {where}: {reason}")


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._lock_file: int | None = None
        self._created = False

    def check_usable(self) -> None:
        """Refuse, without writing anything, a path that cannot be a run directory.

        :raises RunDirError: for a file, or a path inside one.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(
                self.path, f"the run directory {self.path} is a file, not a directory", "give a directory as {out}"
            )
        for parent in self.path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise RunDirError(
                        self.path, f"the run directory {self.path} is inside {parent}, which is a file", ANOTHER
                    )
                break

    def lock(self) -> None:
        """Take the run directory for this process (creating it).

        :raises RunDirBusy: when another process holds it (naming the holder's pid).
        :raises RunDirError: when it cannot be used, created or locked.
        """
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
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            raise RunDirBusy(self.path, int(holder) if holder.isdigit() else None) from None
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
            except OSError as exc:
                log.debug("kept the unused run directory %s: %s", self.path, exc)
        os.close(fd)  # closing the last descriptor releases the flock

    def previous_config(self) -> dict | None:
        """The config of the run already in the folder (a JSON object), None when there is none.

        :raises RunDirError: when it cannot be read, is too large, or is not a JSON object.
        """
        config_path = self.path / CONFIG
        if not config_path.exists():
            return None
        try:
            if config_path.stat().st_size > MAX_CONFIG_BYTES:
                raise RunDirError(self.path, f"{config_path} is too large to be a run's config", ANOTHER)
            previous = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDirError(self.path, f"{config_path} is not valid JSON ({exc})", ANOTHER) from None
        except OSError as exc:
            raise describe_os_error(exc, config_path, "read") from None
        if not isinstance(previous, dict):
            raise RunDirError(self.path, f"{config_path} is not a run's config (not a JSON object)", ANOTHER)
        return previous

    def write_config(self, config: BaseModel) -> None:
        """Replace ``config.json`` atomically.

        :raises RunDirError: when it cannot be written.
        """
        self._replace(CONFIG, config)

    def finished(self) -> list[EpisodeRecord]:
        """Episodes already recorded, in file order (a task may appear more than once: the latest
        record counts). A torn last line (a killed write) is cut off.

        :raises RunDirError: when the file cannot be read or a line is not an episode record.
        """
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
                    self.path,
                    f"{path}:{number} is not an episode record ({exc.errors()[0]['msg']})",
                    "remove that line to resume, or " + ANOTHER,
                ) from None
        return records

    def latest(self) -> dict[tuple[str, int], EpisodeRecord]:
        """The latest record of every episode, keyed by (task, seed), in the order first recorded.

        :raises RunDirError: as :meth:`finished`.
        """
        latest: dict[tuple[str, int], EpisodeRecord] = {}
        for record in self.finished():
            latest[record.task, record.seed] = record
        return latest

    def append(self, record: EpisodeRecord) -> None:
        """Append one record as a line, fsynced (a failed write leaves no half line).

        :raises RunDirError: when it cannot be written.
        """
        line = record.model_dump_json() + "\n"
        path = self.path / EPISODES
        with self._lock:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                try:
                    end = os.lseek(fd, 0, os.SEEK_END)
                    append_synced(fd, line.encode("utf-8"), end)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise describe_os_error(exc, path, "write") from None

    def write_splits(self, splits: BaseModel) -> None:
        """Replace ``splits.json`` (each seed's training and test tasks) atomically.

        :raises RunDirError: when it cannot be written.
        """
        self._replace(SPLITS, splits)

    def write_summary(self, summary: BaseModel) -> None:
        """Replace ``summary.json`` atomically.

        :raises RunDirError: when it cannot be written.
        """
        self._replace(SUMMARY, summary)

    def _replace(self, name: str, record: BaseModel) -> None:
        try:
            write_atomic(self.path / name, record.model_dump_json(indent=2) + "\n")
        except OSError as exc:
            raise describe_os_error(exc, self.path / name, "write") from None
