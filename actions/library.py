"""The action library: every version of every learned action, why it was written, and how it fared.

LearnAct rewrites its actions many times (created, fixed after a static finding or a traceback, updated or
annotated after a failed call, rolled back); a researcher replays a learned set on other tasks and a
reviewer audits what code a model wrote and why. Both need the whole history as plain files, so a library
is a folder:

- ``versions.jsonl``: one :class:`ActionVersion` per line (code, signature, sha256, parent, origin, the id
  of the model call that wrote it, the feedback that motivated it, the static verdict, why it was dropped);
- ``code/<name>/v<N>.py``: the code of each version, to open, diff or check with ordinary tools;
- ``outcomes.jsonl``: one :class:`CallOutcome` per call of a learned action while scoring or testing;
- ``rounds.jsonl``: one :class:`RoundRecord` per learning round (candidates, scores, the best, rollbacks);
- ``library.json``: the format version, the environment, the selected ``{name: version}`` and its score.

A killed run never leaves a corrupt library: ``library.json`` and the ``.py`` files are replaced atomically
(temporary file, fsync, rename); the JSONL files are append-only, each write fsynced, so a kill leaves at
most a torn last line, which readers ignore and the next append cuts off. ``versions.jsonl`` is the record
of truth: a version's ``.py`` is written before its line, so a line never names a missing file.

Everything in a library came from a model or the sandbox and stays untrusted: text is made encodable when
it enters and feedback is bounded; action names are checked (they become folder names); nothing is ever
executed or unpickled here. This room imports only the standard library, pydantic and learnact.actions.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from learnact.actions.errors import LearnactError
from learnact.actions.files import AppendLog, read_bounded, reason, write_atomic
from learnact.actions.models import ActionSet, Finding, LearnedAction, UsageDemonstration
from learnact.actions.text import encodable, truncated

__all__ = [
    "FORMAT_VERSION",
    "ActionVersion",
    "CallOutcome",
    "CandidateScore",
    "Feedback",
    "LearningProgress",
    "Library",
    "LibraryError",
    "Origin",
    "RoundRecord",
]

FORMAT_VERSION = 1
MANIFEST = "library.json"
VERSIONS = "versions.jsonl"
OUTCOMES = "outcomes.jsonl"
ROUNDS = "rounds.jsonl"
CODE = "code"
RUN_LIBRARY = "library"  # where a learning run keeps its library: <RUN>/library/
ACTION_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,99}$"  # a Python identifier that is also a safe folder name
MAX_FEEDBACK_BYTES = 64_000  # a traceback, the findings, a trajectory excerpt: each bounded when stored
MAX_OUTCOME_TEXT_BYTES = 16_000  # an outcome's error, the agent's line, each primitive sub-step
MAX_PRIMITIVE_STEPS = 200
MAX_MANIFEST_BYTES = 10_000_000
MAX_CODE_BYTES = 1_000_000  # a version's .py file (the checker refuses code over 100 000 characters)
MAX_LOG_BYTES = {VERSIONS: 256 << 20, OUTCOMES: 1 << 30, ROUNDS: 256 << 20}  # each JSONL file, read whole


class LibraryError(LearnactError):
    """The library at ``path`` cannot be used as asked: the message says why, the remedy what to do."""

    def __init__(self, path: Path, problem: str, remedy: str = "") -> None:
        self.path = path
        super().__init__(problem, remedy)


class Origin(str, Enum):
    """What wrote a version."""

    created = "created"  # written by the model in the Create phase
    validated_fix = "validated_fix"  # the model's fix after a static finding or a traceback during validation
    update = "update"  # an Update answer of the Optimise phase
    plan_note = "plan_note"  # a Plan answer: same code, a usage note added
    rollback = "rollback"  # the best set of an earlier round restored (a round lowered the score)
    human = "human"  # written by a person and imported (`learnact actions import`), checked and validated alike


def _bounded(limit: int) -> Any:
    """A before-validator: untrusted text made encodable and cut to ``limit`` UTF-8 bytes (marked)."""

    def bound(value: Any) -> Any:
        return truncated(encodable(value), limit) if isinstance(value, str) else value

    return bound


def _encodable(value: Any) -> Any:
    return encodable(value) if isinstance(value, str) else value


class Feedback(BaseModel):
    """What motivated a version: the exact finding(s) or traceback the model was shown, or the failed call
    described, with the trajectory excerpt shown in the Optimise phase."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["finding", "traceback", "failed_call", "none"]
    text: str
    trajectory: str = ""

    _bound = field_validator("text", "trajectory", mode="before")(_bounded(MAX_FEEDBACK_BYTES))


class CallOutcome(BaseModel):
    """One call of a learned action while scoring or testing: where (phase, round, candidate, task, step),
    the agent's line that called it, whether it worked, and the primitive calls that ran inside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int = Field(ge=1)
    phase: Literal["score", "test"]
    round: int = Field(0, ge=0)
    candidate: int = Field(0, ge=0)
    task: str
    step: int = Field(ge=0)
    code: str  # the agent's line that called it
    ok: bool  # no error and no invalid primitive inside
    status: str  # an ExecutionStatus value
    error: str | None = None  # "Type: message" or the invalid primitive's observation
    primitive_steps: list[str] = Field(default_factory=list, max_length=MAX_PRIMITIVE_STEPS)

    _bound = field_validator("task", "code", "status", "error", mode="before")(_bounded(MAX_OUTCOME_TEXT_BYTES))

    @field_validator("primitive_steps", mode="before")
    @classmethod
    def _bound_steps(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        bound = _bounded(MAX_OUTCOME_TEXT_BYTES)
        return [bound(step) for step in value[:MAX_PRIMITIVE_STEPS]]


class ActionVersion(BaseModel):
    """One version of one learned action, with everything an audit asks of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=ACTION_NAME)
    version: int = Field(ge=1)
    parent: int | None = Field(None, ge=1)
    code: str
    signature: str  # ``name(args)`` of the function the code defines; empty when the code does not parse
    description: str
    example: str
    notes: tuple[str, ...] = ()
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # of ``code`` in UTF-8
    origin: Origin
    call_id: str | None  # the model call that wrote it (calls.jsonl); None for a rollback
    feedback: Feedback | None = None
    verdict: list[Finding] = Field(default_factory=list)  # the static checker's findings (action module)
    dropped: str | None = None  # why this version was dropped (validation failed, never called...)
    round: int = Field(0, ge=0)  # the learning round that wrote it (0: create and validate)

    _encodable = field_validator("code", "signature", "description", "example", "dropped", mode="before")(_encodable)

    @field_validator("notes", mode="before")
    @classmethod
    def _encodable_notes(cls, value: Any) -> Any:
        return tuple(_encodable(note) for note in value) if isinstance(value, (list, tuple)) else value

    def as_learned(self) -> LearnedAction:
        """This version as an agent uses it (code, description, example, notes)."""
        return LearnedAction(
            name=self.name,
            code=self.code,
            description=self.description,
            example=self.example,
            notes=self.notes,
            version=self.version,
        )


@dataclass(frozen=True)
class VersionDraft:
    """A version of an action as its writer gives it to :meth:`Library.new_version`, which numbers it, reads its
    signature from the code, computes its sha256 and validates it: ``parent`` an earlier version of the same
    action, ``call_id`` the model call that wrote it (None for a rollback), ``verdict`` the static checker's
    findings, ``round`` the learning round that wrote it, ``dropped`` why it was dropped."""

    name: str
    code: str
    description: str
    example: str
    origin: Origin
    notes: tuple[str, ...] = ()
    parent: int | None = None
    call_id: str | None = None
    feedback: Feedback | None = None
    verdict: tuple[Finding, ...] = ()
    round: int = 0
    dropped: str | None = None


class CandidateScore(BaseModel):
    """The score of one candidate action set on the training tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate: int = Field(ge=0)
    actions: dict[str, int]  # name -> version
    score: float
    components: dict[str, float]  # e.g. step_correction, call_ratio, success
    successes: int = Field(ge=0)
    tasks: int = Field(ge=0)
    # the mean share of the goals' conditions met: what tells sets apart when the score's terms tie (learning
    # chooses where the agent reads the usage demonstration by both)
    progress: float = Field(0.0, ge=0.0, le=1.0)


class RoundRecord(BaseModel):
    """One learning round: its candidates' scores and the set kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    round: int = Field(ge=0)
    candidates: list[CandidateScore]
    best: int  # the candidate kept
    best_score: float
    rolled_back: bool = False  # the round's best was lower than the previous best: the previous one kept


class LearningProgress(BaseModel):
    """Where the learning run writing a library stood when it last selected: a selection made before the
    run finished is the best set so far, not the result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    finished: bool
    round: int = Field(ge=0)  # the last round scored (0: the created candidates)
    rounds: int = Field(ge=0)  # the optimisation rounds the run was asked for

    def describe(self) -> str:
        if self.finished:
            return f"learning finished ({self.rounds} optimisation rounds)"
        return f"learning not finished (round {self.round} of {self.rounds})"


class _Manifest(BaseModel):
    """``library.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT_VERSION
    env: str
    selected: dict[str, int]
    score: float | None = None
    learning: LearningProgress | None = None  # None: written by hand, or by a learnact before it was kept
    usage: UsageDemonstration | None = None  # the selected set solving a task, grounded in the sandbox


Record = TypeVar("Record", bound=BaseModel)


def signature_of(name: str, code: str) -> str:
    """``name(args)`` of the function ``name`` that ``code`` defines at the top level (else of its first
    top-level function); empty when the code does not parse or defines no function."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return ""
    functions = [node for node in body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not functions:
        return ""
    chosen = next((node for node in functions if node.name == name), functions[0])
    try:
        return f"{chosen.name}({ast.unparse(chosen.args)})"
    except (RecursionError, ValueError):
        return f"{chosen.name}(...)"


def _sha256(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


class Library:
    """A library folder (see the module docstring); every write atomic. ``Library(path)`` opens it, creating
    the folder on the first write; :meth:`open_existing` opens one that must already exist.

    One process writes a library at a time (the learning run that owns its run directory); its writes are
    serialised by a lock, so scoring threads may record outcomes together. Readers see what was written
    when they first read the versions (a new Library sees later writes).

    ``root`` is the folder the user named (the library itself, or the run folder holding it): no link below
    it is followed, by reads or writes (:mod:`learnact.actions.files`). A version whose code does not match
    its sha256 is refused when read.
    """

    def __init__(self, path: Path, root: Path | None = None) -> None:
        self.path = Path(path)
        self.root = self.path if root is None else Path(root)
        self._lock = threading.RLock()
        self._versions: dict[str, list[ActionVersion]] | None = None
        self._logs = {
            file: AppendLog(self.path / file, root=self.root, max_bytes=limit) for file, limit in MAX_LOG_BYTES.items()
        }

    # --- opening ---------------------------------------------------------------------------------------

    @classmethod
    def open_existing(cls, path: Path) -> Library:
        """The library at ``path``: a library folder, or a run folder holding one in ``library/``. Every file
        is read once, so that an unreadable or invalid library is refused here.

        :raises LibraryError: when ``path`` is not a library (nor a run folder holding one), or a file of it
            cannot be read or is not what it should be (the file and line named).
        """
        path = Path(path)
        if not path.is_dir():
            what = "does not exist" if not path.exists() else "is not a folder"
            raise LibraryError(path, f"the action library {path} {what}", _WHERE_REMEDY)
        found = cls.found_at(path)
        if found is None:
            raise LibraryError(
                path, f"{path} is not an action library (it has no {MANIFEST} nor {VERSIONS})", _WHERE_REMEDY
            )
        library = cls(found, root=path)
        library._manifest()
        library._all_versions()
        library.outcomes()
        library.rounds()
        return library

    @staticmethod
    def found_at(path: Path) -> Path | None:
        """The library folder at ``path``: ``path`` itself or its ``library/`` (a learning run's folder); None
        when neither holds a library."""
        for candidate in (Path(path), Path(path) / RUN_LIBRARY):
            if any(os.path.lexists(candidate / name) for name in (MANIFEST, VERSIONS)):
                return candidate
        return None

    # --- versions ----------------------------------------------------------------------------------------

    def new_version(self, draft: VersionDraft) -> ActionVersion:
        """Record ``draft`` as a new version of its action: its number is the last one's + 1; the signature is
        read from the code's ``def``, the sha256 computed; ``code/<name>/v<N>.py`` is written, then the line
        appended.

        :raises LibraryError: for a name that is not an identifier, a ``parent`` that is not an earlier
            version of ``name``, an invalid field, or a library that cannot be read or written.
        """
        name, code, parent = draft.name, encodable(draft.code), draft.parent
        with self._lock:
            existing = self._all_versions().get(name, [])
            number = len(existing) + 1
            if parent is not None and not 1 <= parent < number:
                raise LibraryError(
                    self.path,
                    f"the parent of {name!r} v{number} must be one of its earlier versions (1..{number - 1}),"
                    f" not {parent}",
                )
            try:
                version = ActionVersion(
                    name=name,
                    version=number,
                    parent=parent,
                    code=code,
                    signature=signature_of(name, code),
                    description=draft.description,
                    example=draft.example,
                    notes=draft.notes,
                    sha256=_sha256(code),
                    origin=draft.origin,
                    call_id=draft.call_id,
                    feedback=draft.feedback,
                    verdict=list(draft.verdict),
                    dropped=draft.dropped,
                    round=draft.round,
                )
            except ValidationError as exc:
                raise LibraryError(self.path, f"invalid version of action {name!r}: {_first_error(exc)}") from None
            self._write(self._code_path(name, number), lambda target: write_atomic(target, code, root=self.root))
            self._append(VERSIONS, [version])
            self._all_versions().setdefault(name, []).append(version)
            return version

    def names(self) -> list[str]:
        """Every action name with at least one version, in the order they were first written.

        :raises LibraryError: when ``versions.jsonl`` cannot be read or is invalid.
        """
        return list(self._all_versions())

    def versions(self, name: str) -> list[ActionVersion]:
        """Every version of ``name``, oldest first (empty for an unknown name).

        :raises LibraryError: when ``versions.jsonl`` cannot be read or is invalid.
        """
        return list(self._all_versions().get(name, []))

    def get(self, name: str, version: int | None = None) -> ActionVersion:
        """Version ``version`` of ``name``; None: the selected version.

        :raises LibraryError: for an unknown action or version, or (version None) an action not selected.
        """
        versions = self._all_versions().get(name)
        if not versions:
            known = ", ".join(self._all_versions()) or "none"
            raise LibraryError(self.path, f"the library {self.path} has no action {name!r} (it has: {known})")
        if version is None:
            selected = self.selected()
            if name not in selected:
                raise LibraryError(
                    self.path,
                    f"the action {name!r} is not in the selected set of {self.path}",
                    f"name one of its versions (1..{len(versions)})",
                )
            version = selected[name]
        if not 1 <= version <= len(versions):
            raise LibraryError(self.path, f"the action {name!r} has no version {version} (it has 1..{len(versions)})")
        return versions[version - 1]

    def diff(self, name: str, old: int, new: int) -> str:
        """A unified diff from version ``old`` to version ``new`` of ``name``: of the code, then of the
        description, the example and the notes where they changed. Empty when nothing changed.

        :raises LibraryError: for an unknown action or version.
        """
        before, after = self.get(name, old), self.get(name, new)
        parts = [_unified(before.code, after.code, f"{name}/v{old}.py", f"{name}/v{new}.py")]
        for field, text_before, text_after in (
            ("description", before.description, after.description),
            ("example", before.example, after.example),
            ("notes", "\n".join(before.notes), "\n".join(after.notes)),
        ):
            parts.append(_unified(text_before, text_after, f"{name}/v{old} {field}", f"{name}/v{new} {field}"))
        return "".join(parts)

    # --- outcomes and rounds -----------------------------------------------------------------------------

    def record_outcomes(self, outcomes: Sequence[CallOutcome]) -> None:
        """Append call outcomes (one fsynced write).

        :raises LibraryError: when ``outcomes.jsonl`` cannot be written.
        """
        if outcomes:
            self._append(OUTCOMES, outcomes)

    def outcomes(self, name: str | None = None) -> list[CallOutcome]:
        """The recorded call outcomes, in order; only those of ``name`` when given.

        :raises LibraryError: when ``outcomes.jsonl`` cannot be read or a line is not an outcome.
        """
        recorded = self._read(OUTCOMES, CallOutcome)
        return recorded if name is None else [outcome for outcome in recorded if outcome.name == name]

    def record_round(self, record: RoundRecord) -> None:
        """Append a learning round.

        :raises LibraryError: when ``rounds.jsonl`` cannot be written.
        """
        self._append(ROUNDS, [record])

    def rounds(self) -> list[RoundRecord]:
        """The recorded rounds, in order.

        :raises LibraryError: when ``rounds.jsonl`` cannot be read or a line is not a round.
        """
        return self._read(ROUNDS, RoundRecord)

    # --- the selected set --------------------------------------------------------------------------------

    def select(
        self,
        actions: Mapping[str, int],
        score: float | None,
        env: str,
        learning: LearningProgress | None = None,
        usage: UsageDemonstration | None = None,
    ) -> None:
        """Make ``{name: version}`` the selected set (scored ``score`` on ``env``, at the point ``learning``
        of its learning run, shown at work by ``usage``): ``library.json``, atomic.

        :raises LibraryError: for a name or version the library does not have, or when it cannot be written.
        """
        with self._lock:
            for name, version in actions.items():
                self.get(name, version)
            manifest = _Manifest(env=env, selected=dict(actions), score=score, learning=learning, usage=usage)
            text = manifest.model_dump_json(indent=2) + "\n"
            self._write(self.path / MANIFEST, lambda target: write_atomic(target, text, root=self.root))

    def selected(self) -> dict[str, int]:
        """The selected ``{name: version}`` (empty before the first :meth:`select`).

        :raises LibraryError: when ``library.json`` cannot be read or is invalid.
        """
        manifest = self._manifest()
        return dict(manifest.selected) if manifest else {}

    def learning(self) -> LearningProgress | None:
        """Where the learning run stood at the last selection; None when the library does not say.

        :raises LibraryError: when ``library.json`` cannot be read or is invalid.
        """
        manifest = self._manifest()
        return manifest.learning if manifest else None

    def env(self) -> str | None:
        """The environment the selected set was scored on (None before the first :meth:`select`).

        :raises LibraryError: when ``library.json`` cannot be read or is invalid.
        """
        manifest = self._manifest()
        return manifest.env if manifest else None

    def score(self) -> float | None:
        """The selected set's score (None when not scored or not selected yet).

        :raises LibraryError: when ``library.json`` cannot be read or is invalid.
        """
        manifest = self._manifest()
        return manifest.score if manifest else None

    def current(self) -> ActionSet:
        """The selected versions as the action set an agent gets, in the order they were selected, with the
        usage demonstration learning grounded for them.

        :raises LibraryError: when the library cannot be read or names a version it does not have.
        """
        manifest = self._manifest()
        selected = manifest.selected if manifest else {}
        return ActionSet(
            actions=tuple(self.get(name, version).as_learned() for name, version in selected.items()),
            usage=manifest.usage if manifest else None,
        )

    # --- files ---------------------------------------------------------------------------------------------

    def code_path(self, name: str, version: int) -> Path:
        """Where the code of version ``version`` of ``name`` is kept as a file.

        :raises LibraryError: for a name that is not an action name (it would not be a safe folder name).
        """
        return self._code_path(name, version)

    def verify_code_file(self, name: str, version: int) -> None:
        """Check that ``code/<name>/v<N>.py``, what a reviewer opens, is the code recorded (and hashed) in
        ``versions.jsonl``, which is what runs.

        :raises LibraryError: when the file is missing, unreadable, refused (a link, not a regular file, too
            large) or differs from the recorded code.
        """
        recorded = self.get(name, version)
        path = self._code_path(name, version)
        try:
            text = read_bounded(path, MAX_CODE_BYTES, root=self.root).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise self._unreadable(path, exc) from None
        if text != recorded.code:
            raise LibraryError(
                self.path,
                f"{path} differs from the code of {name!r} v{version} recorded in {VERSIONS} (what runs)",
                "restore the library from its source, or learn it again",
            )

    def _code_path(self, name: str, version: int) -> Path:
        if not isinstance(name, str) or not re.fullmatch(ACTION_NAME, name):
            raise LibraryError(
                self.path, f"{name!r} is not an action name (a Python identifier of at most 100 characters)"
            )
        return self.path / CODE / name / f"v{version}.py"

    def _manifest(self) -> _Manifest | None:
        path = self.path / MANIFEST
        try:
            text = read_bounded(path, MAX_MANIFEST_BYTES, root=self.root).decode("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise self._unreadable(path, exc) from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LibraryError(self.path, f"{path} is not valid JSON ({exc})") from None
        if isinstance(raw, dict) and isinstance(raw.get("format"), int) and raw["format"] > FORMAT_VERSION:
            raise LibraryError(
                self.path,
                f"{path} has library format {raw['format']}; this learnact reads format {FORMAT_VERSION}",
                "use a newer learnact",
            )
        try:
            return _Manifest.model_validate(raw)
        except ValidationError as exc:
            raise LibraryError(self.path, f"{path} is not a library manifest ({_first_error(exc)})") from None

    def _all_versions(self) -> dict[str, list[ActionVersion]]:
        with self._lock:
            if self._versions is None:
                loaded: dict[str, list[ActionVersion]] = {}
                for number, version in self._numbered(VERSIONS, ActionVersion):
                    existing = loaded.setdefault(version.name, [])
                    if version.version != len(existing) + 1:
                        raise LibraryError(
                            self.path,
                            f"{self.path / VERSIONS}:{number} is version {version.version} of {version.name!r};"
                            f" the next one should be {len(existing) + 1}",
                        )
                    if _sha256(version.code) != version.sha256:
                        raise LibraryError(
                            self.path,
                            f"{self.path / VERSIONS}:{number}: the code of {version.name!r} v{version.version} does"
                            " not match its sha256, so it was changed after it was recorded",
                            "restore the library from its source, or learn it again",
                        )
                    existing.append(version)
                self._versions = loaded
            return self._versions

    def _read(self, file: str, model: type[Record]) -> list[Record]:
        return [record for _, record in self._numbered(file, model)]

    def _numbered(self, file: str, model: type[Record]) -> list[tuple[int, Record]]:
        log = self._logs[file]
        try:
            lines = log.lines()
        except OSError as exc:
            raise self._unreadable(log.path, exc) from None
        records = []
        for number, line in enumerate(lines, start=1):
            try:
                records.append((number, model.model_validate_json(line)))
            except ValidationError as exc:
                raise LibraryError(
                    self.path, f"{log.path}:{number} is not {_RECORD_NAMES[model]} ({_first_error(exc)})"
                ) from None
        return records

    def _append(self, file: str, records: Sequence[BaseModel]) -> None:
        """Append ``records`` as lines in one fsynced write; a failed write leaves no half line."""
        data = "".join(record.model_dump_json() + "\n" for record in records).encode("utf-8")
        with self._lock:
            self._write(self.path / file, lambda _: self._logs[file].append(data))

    def _write(self, path: Path, write: Callable[[Path], None]) -> None:
        try:
            write(path)
        except OSError as exc:
            raise LibraryError(self.path, f"cannot write {path}: {reason(exc)}") from None

    def _unreadable(self, path: Path, exc: Exception) -> LibraryError:
        return LibraryError(self.path, f"cannot read {path}: {reason(exc) if isinstance(exc, OSError) else exc}")


_WHERE_REMEDY = "give a library folder, or the run folder of a learning run (it holds library/)"
_RECORD_NAMES: dict[type[BaseModel], str] = {
    ActionVersion: "an action version",
    CallOutcome: "a call outcome",
    RoundRecord: "a learning round",
}


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def _lines(text: str) -> list[str]:
    """``text`` cut at newlines only (not at form feeds or U+2028, which ``splitlines`` also cuts at)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line + "\n" for line in lines]


def _unified(before: str, after: str, from_name: str, to_name: str) -> str:
    if before == after:
        return ""
    # Each line ends with a newline (model code rarely ends with one), so that the diff is whole lines.
    lines = difflib.unified_diff(
        _lines(before),
        _lines(after),
        fromfile=from_name,
        tofile=to_name,
    )
    return "".join(lines)
