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
import re
from enum import Enum
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from learnact.actions.errors import LearnactError
from learnact.actions.files import AppendLog, open_regular, read_bounded, reason, write_atomic
from learnact.engine.records import EpisodeRecord

CONFIG = "config.json"
EPISODES = "episodes.jsonl"
SUMMARY = "summary.json"
SPLITS = "splits.json"
LOCK = ".lock"
KIND = "run.json"  # what kind of run the folder holds
NOTES = "notes.json"  # a reflexion learning run's notes
SPLIT = "split.json"  # a learning run's training tasks
LEARNACT_CONFIG = "learnact.json"  # a LearnAct learning run's identity
LEARN_STATE = "learn_state.json"  # where a LearnAct learning run stands
LIBRARY = "library"  # a LearnAct learning run's action library
MAX_KIND_BYTES = 10_000
MAX_CONFIG_BYTES = 50_000_000
MAX_EPISODES_BYTES = 1 << 30  # episodes.jsonl: every record of every episode of a run
MAX_LOCK_BYTES = 64
ANOTHER = "use another {out}"  # the remedy when a run directory is not this run's to use
log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)


class RunKind(str, Enum):
    """What a run folder holds; a command uses only a folder of its own kind (or a new one)."""

    evaluation = "evaluation"
    reflexion = "reflexion"
    learnact = "learnact"

    def describe(self) -> str:
        return {
            RunKind.evaluation: "an evaluation run (learnact eval)",
            RunKind.reflexion: "a reflexion learning run (learnact learn --method act_reflexion|react_reflexion)",
            RunKind.learnact: "a LearnAct learning run (learnact learn --method learnact)",
        }[self]

    @property
    def command(self) -> str:
        return "eval" if self is RunKind.evaluation else "learn"


class _KindFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RunKind
    format: int = 1


class RunDirError(LearnactError):
    """The run directory ``path`` cannot be used: the message says why, the remedy what to do."""

    def __init__(self, path: Path, problem: str, remedy: str = "") -> None:
        self.path = path
        super().__init__(problem, remedy)


class RunDirBusy(RunDirError):
    """Another process, ``pid`` running ``command`` (None when it did not say), holds the run directory's lock."""

    def __init__(self, path: Path, pid: int | None, command: str | None = None) -> None:
        self.pid, self.command = pid, command
        holder = "unknown" if pid is None else str(pid)
        super().__init__(
            path,
            f"{path} is in use by another learnact {command or 'process'} (pid {holder})",
            "wait for it to finish or " + ANOTHER,
        )


def describe_os_error(exc: OSError, path: Path, doing: str) -> RunDirError:
    """The RunDirError for ``exc``, raised while doing ``doing`` (e.g. "write") on ``path``."""
    where = exc.filename if isinstance(exc.filename, str) else str(path)
    return RunDirError(path, f"cannot {doing} {where}: {reason(exc)}")


def read_model(path: Path, model: type[ModelT], max_bytes: int, *, root: Path, what: str) -> ModelT | None:
    """The file ``path`` (below the run folder ``root``, read as :func:`read_bounded` does) validated as
    ``model``; None when it does not exist. ``what`` names the record in errors ("a learning state").

    :raises RunDirError: when it cannot be read, is refused, too large, or is not ``what``.
    """
    try:
        data = read_bounded(path, max_bytes, root=root)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise describe_os_error(exc, path, "read") from None
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise RunDirError(root, f"{path} is not {what} ({exc.errors()[0]['msg']})", ANOTHER) from None


def read_records(log: AppendLog, model: type[ModelT], what: str, remedy: str = "") -> list[ModelT]:
    """The complete lines of ``log`` (in a run folder) validated as ``model``; ``what`` names one in errors.

    :raises RunDirError: when the log cannot be read, or a line is not ``what`` (its number named).
    """
    try:
        lines = log.lines()
    except OSError as exc:
        raise describe_os_error(exc, log.path, "read") from None
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(model.model_validate_json(line))
        except ValidationError as exc:
            problem = f"{log.path}:{number} is not {what} ({exc.errors()[0]['msg']})"
            raise RunDirError(log.root, problem, remedy) from None
    return records


class RunDir:
    def __init__(self, path: Path, kind: RunKind = RunKind.evaluation) -> None:
        self.path, self.kind = path, kind
        self._lock_file: int | None = None
        self._created = False
        self._episodes = AppendLog(path / EPISODES, root=path, max_bytes=MAX_EPISODES_BYTES)

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
        """Take the run directory for this process (creating it). ``.lock`` names the holder (pid and command);
        an existing one is reused only when it is a regular file holding nothing but such a line, so the lock
        never truncates a file it did not create.

        :raises RunDirBusy: when another process holds it (naming the holder's pid and command).
        :raises RunDirError: when it cannot be used, created or locked.
        """
        self.check_usable()
        path = self.path / LOCK
        try:
            if not self.path.is_dir():
                self.path.mkdir(parents=True)
                self._created = True
            fd = self._open_lock(path)
        except OSError as exc:
            raise describe_os_error(exc, self.path, "create the run directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, command = _holder(os.pread(fd, MAX_LOCK_BYTES, 0))
            os.close(fd)
            raise RunDirBusy(self.path, pid, command) from None
        except OSError as exc:
            os.close(fd)
            raise describe_os_error(exc, self.path, "lock the run directory") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.kind.command}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise describe_os_error(exc, path, "write") from None
        self._lock_file = fd
        try:
            found = self.found_kind()
            if found is not None and found is not self.kind:
                raise RunDirError(
                    self.path, f"{self.path} holds {found.describe()}, not {self.kind.describe()}", ANOTHER
                )
            if found is None:
                self.write(KIND, _KindFile(kind=self.kind))
        except BaseException:
            self.unlock(discard_if_unused=True)
            raise

    def found_kind(self) -> RunKind | None:
        """The kind of run the folder holds (``run.json``; for a folder written before it, the files only that
        kind writes); None for a folder that holds no run.

        :raises RunDirError: when ``run.json`` cannot be read or is not one.
        """
        marker = read_model(self.path / KIND, _KindFile, MAX_KIND_BYTES, root=self.path, what="a run's kind")
        if marker is not None:
            return marker.kind
        signs = (
            (RunKind.learnact, (LEARNACT_CONFIG, LEARN_STATE, LIBRARY)),
            (RunKind.reflexion, (NOTES, SPLIT)),
            (RunKind.evaluation, (CONFIG, EPISODES, SUMMARY)),
        )  # the first kind any of whose files is there: a reflexion run has a config.json too
        for kind, names in signs:
            if any(os.path.lexists(self.path / name) for name in names):
                return kind
        return None

    def _open_lock(self, path: Path) -> int:
        try:
            return open_regular(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, root=self.path)
        except FileExistsError:
            pass
        fd = open_regular(path, os.O_RDWR, root=self.path)
        content = os.pread(fd, MAX_LOCK_BYTES + 1, 0)
        if content and _holder(content) == (None, None):
            os.close(fd)
            raise OSError(errno.EEXIST, "it is not a learnact lock file (remove it, or use another folder)", str(path))
        return fd

    def unlock(self, discard_if_unused: bool = False) -> None:
        """Release the lock. With ``discard_if_unused``, a directory this process created and never
        wrote a run to is removed again (a run that could not start leaves nothing behind)."""
        if self._lock_file is None:
            return
        fd, self._lock_file = self._lock_file, None
        if discard_if_unused and self._created and not (self.path / CONFIG).exists():
            try:
                for name in (KIND, LOCK):
                    (self.path / name).unlink(missing_ok=True)
                self.path.rmdir()
            except OSError as exc:
                log.debug("kept the unused run directory %s: %s", self.path, exc)
        os.close(fd)  # closing the last descriptor releases the flock

    def previous_config(self) -> dict | None:
        """The config of the run already in the folder (a JSON object), None when there is none.

        :raises RunDirError: when it cannot be read, is too large, or is not a JSON object.
        """
        config_path = self.path / CONFIG
        try:
            previous = json.loads(read_bounded(config_path, MAX_CONFIG_BYTES, root=self.path))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDirError(self.path, f"{config_path} is not valid JSON ({exc})", ANOTHER) from None
        except OSError as exc:
            raise describe_os_error(exc, config_path, "read") from None
        if not isinstance(previous, dict):
            raise RunDirError(self.path, f"{config_path} is not a run's config (not a JSON object)", ANOTHER)
        return previous

    def write(self, name: str, record: BaseModel) -> None:
        """Replace the file ``name`` of the run directory by ``record`` as JSON, atomically.

        :raises RunDirError: when it cannot be written.
        """
        try:
            write_atomic(self.path / name, record.model_dump_json(indent=2) + "\n", root=self.path)
        except OSError as exc:
            raise describe_os_error(exc, self.path / name, "write") from None

    def write_config(self, config: BaseModel) -> None:
        """Replace ``config.json`` atomically.

        :raises RunDirError: when it cannot be written.
        """
        self.write(CONFIG, config)

    def finished(self) -> list[EpisodeRecord]:
        """Episodes already recorded, in file order (a task may appear more than once: the latest
        record counts). A torn last line (a killed write) is left out, and cut before the next append.

        :raises RunDirError: when the file cannot be read or a line is not an episode record.
        """
        return read_records(
            self._episodes, EpisodeRecord, "an episode record", "remove that line to resume, or " + ANOTHER
        )

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
        try:
            self._episodes.append((record.model_dump_json() + "\n").encode("utf-8"))
        except OSError as exc:
            raise describe_os_error(exc, self._episodes.path, "write") from None

    def write_splits(self, splits: BaseModel) -> None:
        """Replace ``splits.json`` (each seed's training and test tasks) atomically.

        :raises RunDirError: when it cannot be written.
        """
        self.write(SPLITS, splits)

    def write_summary(self, summary: BaseModel) -> None:
        """Replace ``summary.json`` atomically.

        :raises RunDirError: when it cannot be written.
        """
        self.write(SUMMARY, summary)


def _holder(content: bytes) -> tuple[int | None, str | None]:
    """The pid and command a lock file's content names; (None, None) when it is not a lock line."""
    match = re.fullmatch(rb"(\d{1,10})(?: ([a-z_]{1,20}))?\n?", content)
    if match is None:
        return None, None
    return int(match[1]), None if match[2] is None else match[2].decode()
