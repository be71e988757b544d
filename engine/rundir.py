"""The run directory: plain files a researcher can open, written so that a killed run loses nothing.

``config.json`` and ``summary.json`` are replaced atomically (write to a temporary file, fsync, rename);
``episodes.jsonl`` is append-only, one finished episode per line, flushed and fsynced after each line, so a
run killed at any moment leaves at most a torn last line, which is ignored on resume. An episode is a
task and a seed (``--seeds``); one may have several records (an episode that ended by an error, then its
retry): the latest one counts. ``splits.json`` (atomic too) says which tasks each seed trained and tested on.

One process at a time owns a run directory: ``.lock`` is held with ``flock`` for the whole run and names
the holder's pid. The kernel releases the lock when its holder dies, however it dies, so a lock left by
a killed run is never in the way.

Every kind of run (an evaluation, a reflexion or a LearnAct learning run) follows one protocol,
:meth:`RunDir.opened`: lock, check the folder's kind and format (``run.json``), check that the run already
there is this one (``config.json``: its identity, naming the settings that differ), write the identity,
run, unlock. One vocabulary of file names serves every kind (below); a folder of another format is
refused with a remedy, never read through a compatibility shim.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from learnact.actions.errors import LearnactError
from learnact.actions.files import AppendLog, open_regular, read_bounded, reason, write_atomic
from learnact.engine.records import EpisodeRecord

CONFIG = "config.json"  # every run's identity: a rerun resumes only the same run
EPISODES = "episodes.jsonl"  # every episode of the run (evaluation, training attempts, scoring)
SUMMARY = "summary.json"
SPLITS = "splits.json"  # per seed, the training and test tasks
LOCK = ".lock"
KIND = "run.json"  # what kind of run the folder holds, and its format
NOTES = "notes.json"  # a reflexion learning run's notes
LEARN_STATE = "learn_state.json"  # where a LearnAct learning run stands
LIBRARY = "library"  # a LearnAct learning run's action library
FORMAT = 2  # the format of the run folders this learnact writes and reads (1: before one protocol)
# The files a run folder of any format may hold: with no run.json beside them, an earlier learnact wrote them.
RUN_FILES = (CONFIG, EPISODES, SUMMARY, SPLITS, NOTES, LEARN_STATE, LIBRARY, "learnact.json", "split.json")
MAX_KIND_BYTES = 10_000
MAX_CONFIG_BYTES = 50_000_000
MAX_EPISODES_BYTES = 1 << 30  # episodes.jsonl: every record of every episode of a run
MAX_LOCK_BYTES = 64
HOLDER_WAIT_S = 1.0  # how long an empty lock file of a busy folder is read again for its holder's line
ANOTHER = "use another {out}"  # the remedy when a run directory is not this run's to use
log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
ConfigT = TypeVar("ConfigT", bound=BaseModel)


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
    format: int


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


def read_model(
    path: Path, model: type[ModelT], max_bytes: int, *, root: Path | None, what: str, remedy: str = ANOTHER
) -> ModelT | None:
    """The file ``path`` (below the folder ``root`` when given, read as :func:`read_bounded` does) validated as
    ``model``; None when it does not exist. ``what`` names the record in errors ("a learning state"), ``remedy``
    what to do about one that is not.

    :raises RunDirError: when it cannot be read, is refused, too large, or is not ``what`` (naming the field).
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
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        problem = f"{path} is not {what} ({f'{where}: ' if where else ''}{first['msg']})"
        raise RunDirError(root or path, problem, remedy) from None


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


def differences(previous: BaseModel, now: BaseModel) -> list[str]:
    """The settings in which two identities of a run differ, in field order. A setting that groups other
    groups (the run's settings inside a learning run's) is named by its own settings that differ; a group of
    plain values (the environment, the sandbox, the model) by its own name."""
    found: list[str] = []
    for name in type(now).model_fields:
        before, after = getattr(previous, name, None), getattr(now, name)
        if before == after:
            continue
        grouping = isinstance(after, BaseModel) and type(before) is type(after) and _groups(after)
        found += differences(before, after) if grouping else [name]
    return found


def _groups(model: BaseModel) -> bool:
    return any(isinstance(getattr(model, name), BaseModel) for name in type(model).model_fields)


class RunDir:
    def __init__(self, path: Path, kind: RunKind = RunKind.evaluation) -> None:
        self.path, self.kind = path, kind
        self._lock_file: int | None = None
        self._created = False
        self._found: set[str] = set()  # the folder's files when this process took it
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
                try:
                    self.path.mkdir(parents=True)
                    self._created = True
                except FileExistsError:  # another learnact made it since: the lock below decides who runs
                    if not self.path.is_dir():
                        raise
            self._found = {p.name for p in self.path.iterdir()}
            fd = self._open_lock(path)
        except OSError as exc:
            raise describe_os_error(exc, self.path, "create the run directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, command = _busy_holder(fd)
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
                self.write(KIND, _KindFile(kind=self.kind, format=FORMAT))
        except BaseException:
            self.unlock(discard_if_unused=True)
            raise

    def found_kind(self) -> RunKind | None:
        """The kind of run the folder holds (``run.json``); None for a folder that holds no run.

        :raises RunDirError: when ``run.json`` cannot be read or is not one, names another format, or is
            missing beside the files of a run (an earlier learnact wrote them).
        """
        marker = read_model(self.path / KIND, _KindFile, MAX_KIND_BYTES, root=self.path, what="a run's kind")
        remedy = (
            f"this learnact reads run folders of format {FORMAT}: rerun the command with another {{out}} (the old "
            "folder's files stay readable as they are)"
        )
        if marker is None:
            found = [name for name in RUN_FILES if os.path.lexists(self.path / name)]
            if found:
                problem = f"{self.path} holds {found[0]} of a run written by an earlier learnact (no {KIND})"
                raise RunDirError(self.path, problem, remedy)
            return None
        if marker.format != FORMAT:
            raise RunDirError(self.path, f"{self.path} holds a run folder of format {marker.format}", remedy)
        return marker.kind

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
        """Release the lock. With ``discard_if_unused``, what this process added to the folder is removed
        again when it is no more than the protocol's files (the lock, the kind, the identity), and the folder
        too when this process created it: a run that could not start, or a folder refused, is left as found."""
        if self._lock_file is None:
            return
        fd, self._lock_file = self._lock_file, None
        try:
            present = {p.name for p in self.path.iterdir()} if discard_if_unused else set()
        except OSError:  # the folder was removed (or replaced) under the run: nothing of it to discard
            present = set()
        added = present - self._found
        if added and added <= {KIND, LOCK, CONFIG}:
            try:
                for name in added:
                    (self.path / name).unlink()
                if self._created:
                    self.path.rmdir()
            except OSError as exc:
                log.debug("kept what this run added to %s: %s", self.path, exc)
        os.close(fd)  # closing the last descriptor releases the flock

    @contextmanager
    def opened(
        self,
        config: ConfigT,
        identity: Callable[[ConfigT], BaseModel] = lambda config: config,
        merge: Callable[[ConfigT, ConfigT], ConfigT] = lambda previous, config: config,
    ) -> Iterator[ConfigT]:
        """The protocol of every run: take the folder (:meth:`lock`: its kind and format checked), check that the
        run already there (``config.json``) has the same ``identity`` as ``config`` (the whole config unless
        given), write ``merge(previous, config)`` (``config`` unless given; an evaluation merges its task
        selections) as the folder's config, and hand it to the body; release the folder when the body ends,
        however it ends. A folder created here that never held more than its identity is removed again.

        :raises RunDirBusy: when another process holds the folder.
        :raises RunDirError: when it cannot be used, holds another kind of run or another run (naming the
            settings that differ), or its config cannot be read or written.
        """
        self.lock()
        try:
            kind = type(config)
            what = f"a config this version of learnact reads as {self.kind.describe()}"
            previous = read_model(self.path / CONFIG, kind, MAX_CONFIG_BYTES, root=self.path, what=what)
            if previous is not None and identity(previous) != identity(config):
                differ = ", ".join(differences(identity(previous), identity(config)))
                raise RunDirError(
                    self.path,
                    f"{self.path} holds {self.kind.describe()} with a different {differ}",
                    ANOTHER + " or the same settings to resume it",
                )
            current = config if previous is None else merge(previous, config)
            self.write(CONFIG, current)
            yield current
        except BaseException:
            self.unlock(discard_if_unused=True)
            raise
        self.unlock()

    def write(self, name: str, record: BaseModel) -> None:
        """Replace the file ``name`` of the run directory by ``record`` as JSON, atomically.

        :raises RunDirError: when it cannot be written.
        """
        try:
            write_atomic(self.path / name, record.model_dump_json(indent=2) + "\n", root=self.path)
        except OSError as exc:
            raise describe_os_error(exc, self.path / name, "write") from None

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


def _busy_holder(fd: int) -> tuple[int | None, str | None]:
    """The holder a busy lock file names. A holder that has just created the file writes its line right after
    taking the lock: an empty file is read again for up to :data:`HOLDER_WAIT_S` before the holder is unknown."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    content = os.pread(fd, MAX_LOCK_BYTES, 0)
    while not content and time.monotonic() < deadline:
        time.sleep(0.01)
        content = os.pread(fd, MAX_LOCK_BYTES, 0)
    return _holder(content)


def _holder(content: bytes) -> tuple[int | None, str | None]:
    """The pid and command a lock file's content names; (None, None) when it is not a lock line."""
    match = re.fullmatch(rb"(\d{1,10})(?: ([a-z_]{1,20}))?\n?", content)
    if match is None:
        return None, None
    return int(match[1]), None if match[2] is None else match[2].decode()
