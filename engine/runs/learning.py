"""Learning runs of the reflexion methods (``learnact learn --method act_reflexion|react_reflexion``): the
agent tries the training tasks in the sandbox, reflects on each failure and tries again, and the notes
it wrote are what ``learnact eval --notes RUN`` shows the agent at test time.

The method (when to reflect, the reflection prompt, cleaning the answer) is :mod:`learnact.learner.reflexion`;
this module runs it: attempts as episodes through the sandbox, reflections through the backbone, and
everything in a run directory a reader can open. ``config.json`` (the settings, seed, training tasks and
rounds), ``splits.json``, ``episodes.jsonl`` (every attempt, in order), ``calls.jsonl`` (every model call,
reflections included), ``notes.json`` (replaced atomically after each reflection) and ``summary.json``.

A killed run resumes where it stopped: the n-th finished record of a task in ``episodes.jsonl`` is its
attempt n and the notes in ``notes.json`` are reflections already written, so a rerun repeats no attempt and
no reflection (and makes no model call for them). An attempt ended by an error or a model failure stops the
run (the next attempts depend on it); the same command retries it. The run directory is locked as eval's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.errors import LearnactError
from learnact.actions.transcript import ChatMessage, Turn
from learnact.engine.agents import Learns, method_spec
from learnact.engine.agents.prompts import fill, primitives_text, template
from learnact.engine.llm import (
    Backbone,
    CallLog,
    Ledger,
    LLMError,
    PriceTable,
    RecordingBackbone,
    Totals,
    chat_request,
)
from learnact.engine.records import (
    EndReason,
    EpisodeRecord,
    EpisodeSpec,
    MethodName,
    RunSettings,
    TokenUsage,
    episode_key,
)
from learnact.engine.rundir import ANOTHER, NOTES, RunDir, RunDirError, RunKind, read_model
from learnact.engine.runs.episode import run_episode
from learnact.engine.runs.evaluation import RunSplits
from learnact.engine.runs.executor import Worker, close_quietly
from learnact.engine.splits import Split
from learnact.envs import EnvSpec, ResetInfo, env_profile
from learnact.learner.reflexion import ROUNDS, Attempt, Note, PromptTemplates, Trajectory, reflexion, shown_notes

MAX_NOTES_BYTES = 5_000_000
log = logging.getLogger(__name__)


class ReflexionConfig(BaseModel):
    """A reflexion learning run (``config.json``): its identity, so a rerun resumes only the same run.

    :raises pydantic.ValidationError: for an unknown field or a value out of range (it names the field).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunSettings  # the agent of the attempts (its notes: none; each attempt gets those written so far)
    seed: int = Field(0, ge=0)
    train: tuple[str, ...]  # the split's training tasks, tried in this order
    rounds: int = Field(ROUNDS, ge=0, description="reflections per training task")


class NotesFile(BaseModel):
    """``notes.json``: the notes of a reflexion learning run with where each came from, and what they were
    learned on. ``complete`` once every training task is done."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: EnvSpec
    method: MethodName
    seed: int
    train: tuple[str, ...]
    rounds: int
    notes: tuple[Note, ...] = ()
    complete: bool = False

    def texts(self) -> tuple[str, ...]:
        """The notes an agent is shown."""
        return shown_notes(self.notes)


class AttemptRow(BaseModel):
    """One attempt at a training task, as the summary lists it."""

    model_config = ConfigDict(frozen=True)

    task: str
    attempt: int
    notes_shown: int
    success: bool
    progress: float
    steps: int
    ended: EndReason | None = None


class ReflexionSummary(BaseModel):
    """What a reflexion learning run did: every attempt, the notes, the model calls; ``stopped`` says why a
    run that is not ``complete`` stopped (run the same command to go on)."""

    model_config = ConfigDict(frozen=True)

    env: str
    method: MethodName
    seed: int
    train: tuple[str, ...]
    attempts: list[AttemptRow]
    notes: tuple[Note, ...]
    complete: bool
    stopped: str | None = None
    usage: TokenUsage


class NotesError(LearnactError):
    """The notes of the learning run ``path`` cannot be used: the message says why, the remedy what to do."""

    def __init__(self, path: Path, problem: str, remedy: str = "") -> None:
        self.path = path
        super().__init__(problem, remedy)


class _Stop(Exception):
    """An attempt or a reflection that did not end normally: the run stops here (``reason``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def read_notes(run: Path) -> NotesFile:
    """The notes of the learning run in the folder ``run`` (or the ``notes.json`` file itself).

    :raises NotesError: when there is none, or it cannot be read as one.
    """
    path, root = (run / NOTES, run) if run.is_dir() else (run, None)
    try:
        notes = read_model(path, NotesFile, MAX_NOTES_BYTES, root=root, what="a learning run's notes", remedy="")
    except RunDirError as exc:
        raise NotesError(run, exc.message, exc.remedy) from None
    if notes is None:
        raise NotesError(run, f"{run} holds no notes ({NOTES})", "give the run directory of a `learnact learn` run")
    return notes


def notes_for(run: Path, env: EnvSpec, method: str) -> NotesFile:
    """The notes of the learning run ``run``, checked to fit an evaluation of ``method`` on ``env``: learned by
    the same method on the same environment (the same PDDL domain file), and finished.

    :raises NotesError: when they cannot be read or do not fit.
    """
    notes = read_notes(run)
    if notes.method != method:
        raise NotesError(
            run,
            f"the notes in {run} were learned by {notes.method}, not {method}",
            f"evaluate with --method {notes.method}, or learn notes with `learnact learn --method {method}`",
        )
    if (notes.env.name, notes.env.pddl_domain) != (env.name, env.pddl_domain):
        learned_on = notes.env.name + (f" ({notes.env.pddl_domain})" if notes.env.pddl_domain else "")
        raise NotesError(
            run,
            f"the notes in {run} were learned on {learned_on}, not {env.name}",
            f"give the notes of a `learnact learn --env {env.name}` run",
        )
    if not notes.complete:
        raise NotesError(
            run,
            f"the learning run {run} did not finish",
            "run the same `learnact learn` command again to finish it",
        )
    return notes


def _trajectory(reset: ResetInfo, record: EpisodeRecord) -> Trajectory:
    steps = []
    for step in record.steps:
        if step.thought is not None:
            steps.append(Turn(step.thought, step.observation, thought=True))
        elif step.code:
            steps.append(Turn(step.code, step.observation))
        else:  # an answer holding no code: its first line, as the agent's history shows it
            first = next((line.strip() for line in (step.answer or "").splitlines() if line.strip()), "")
            steps.append(Turn(first, step.observation))
    ending = record.ended if record.ended in (EndReason.max_steps, EndReason.repeated_failure) else "other"
    return Trajectory(reset.goal, reset.observation, tuple(steps), fill(f"ending_{ending}", steps=len(steps)).strip())


def _written_notes(out: Path) -> tuple[Note, ...]:
    if not os.path.lexists(out / NOTES):
        return ()
    try:
        return read_notes(out).notes
    except NotesError as exc:
        raise RunDirError(out, exc.message, "remove it to write the notes again, or " + ANOTHER) from None


def _usage(out: Path) -> TokenUsage:
    totals = Totals()
    for record in CallLog(out).read():
        totals.add(record)
    return TokenUsage.model_validate(totals.model_dump(include=set(TokenUsage.model_fields)))


def run_reflexion(
    config: ReflexionConfig,
    out: Path,
    backbone: Backbone,
    split: Split | None = None,
    prices: PriceTable | None = None,
    on_attempt: Callable[[int, EpisodeRecord, int], None] = lambda index, record, notes: None,
    on_note: Callable[[Note], None] = lambda note: None,
) -> ReflexionSummary:
    """Learn notes by reflection on ``config.train`` (see :func:`learnact.learner.reflexion.reflexion`), with
    the run directory ``out``; resume the run already there. ``split`` is stored beside (``splits.json``).
    ``on_attempt(index, record, notes shown)`` is told of each new attempt, ``on_note`` of each new note.

    :raises RunDirBusy: when another process holds ``out``.
    :raises RunDirError: when ``out`` cannot be used, holds another run or unreadable notes, or a write fails.
    :raises SandboxUnavailable: when the sandbox cannot start.
    :raises LearnactError: when the environment cannot be built, or the method is not a reflexion method.
    """
    settings = config.run
    if method_spec(settings.method).learns is not Learns.notes or settings.model is None:
        raise LearnactError(f"the method {settings.method} does not learn by reflection with a model")
    run_dir = RunDir(out, RunKind.reflexion)
    with run_dir.opened(config):
        worker = Worker(settings)
        try:
            if split is not None:
                run_dir.write_splits(RunSplits(test_on_rest=False, train_from="seed", splits=(split,)))
            written = _written_notes(out)
            _write_notes(out, config, written, complete=False)  # an unfinished run says so from the start
            trials = _Trials(config, run_dir, worker, backbone, prices, on_attempt)
            notes, stopped = _reflect_on_every_task(config, out, trials, written, on_note)
            summary = ReflexionSummary(
                env=settings.env.name,
                method=settings.method,
                seed=config.seed,
                train=config.train,
                attempts=trials.rows,
                notes=notes,
                complete=stopped is None,
                stopped=stopped,
                usage=_usage(out),
            )
            run_dir.write_summary(summary)
        finally:
            close_quietly(worker)
    return summary


def _reflect_on_every_task(
    config: ReflexionConfig, out: Path, trials: _Trials, written: tuple[Note, ...], on_note: Callable[[Note], None]
) -> tuple[tuple[Note, ...], str | None]:
    """Run the reflexion loop over the training tasks, ``notes.json`` replaced after each new note and marked
    complete at the end; every note (those ``written`` before included), and why the run stopped (None: it
    did not)."""
    notes: list[Note] = list(written)

    def store(so_far: list[Note]) -> None:
        _write_notes(out, config, tuple(so_far), complete=False)
        notes[:] = so_far
        on_note(so_far[-1])

    env = trials.worker.env
    types = {t.id: t.type for t in env.tasks()}
    try:
        notes[:] = reflexion(
            config.train,
            trials.attempt,
            trials.reflect,
            _templates(),
            rounds=config.rounds,
            written=written,
            on_note=store,
            domain=env_profile(config.run.env.name).domain_text(types.get(config.train[0], "") if config.train else ""),
            primitives=primitives_text(env.primitives()),
        )
    except _Stop as stop:
        log.warning("%s: the learning run stopped: %s", out, stop.reason)
        return tuple(notes), stop.reason
    _write_notes(out, config, tuple(notes), complete=True)  # notes: every one, also those resumed
    return tuple(notes), None


class _Trials:
    """The attempts and reflections of one learning run, as the reflexion loop asks for them: an attempt
    already in ``episodes.jsonl`` is read back, a new one runs as an episode and is appended; ``rows`` lists
    every attempt in the order asked."""

    def __init__(
        self,
        config: ReflexionConfig,
        run_dir: RunDir,
        worker: Worker,
        backbone: Backbone,
        prices: PriceTable | None,
        on_attempt: Callable[[int, EpisodeRecord, int], None],
    ) -> None:
        self.config, self.run_dir, self.worker = config, run_dir, worker
        self.backbone, self.prices, self.on_attempt = backbone, prices, on_attempt
        self.calls = CallLog(run_dir.path)
        self.attempts: dict[str, list[EpisodeRecord]] = {}  # the finished attempts of each task, in order
        for record in run_dir.finished():
            if not record.status.retried:
                self.attempts.setdefault(record.task, []).append(record)
        self.resets: dict[str, ResetInfo] = {}
        self.rows: list[AttemptRow] = []

    def attempt(self, task: str, index: int, notes: tuple[str, ...]) -> Attempt:
        """Attempt ``index`` at ``task`` with ``notes`` shown.

        :raises _Stop: when a new attempt ended by an error or a model failure.
        """
        done = self.attempts.setdefault(task, [])
        if index < len(done):
            record = done[index]
        else:
            settings = self.config.run.model_copy(update={"notes": notes})
            spec = EpisodeSpec(run=settings, task=task, seed=self.config.seed)
            recording = RecordingBackbone(self.backbone, Ledger(self.prices, sink=self.calls.append))  # this attempt's
            record = run_episode(spec, env=self.worker.env, sandbox=self.worker.sandbox, backbone=recording)
            self.run_dir.append(record)
            if record.status.retried:
                raise _Stop(f"attempt {index + 1} at {task} ended by {record.status}: {record.error}")
            done.append(record)
            self.on_attempt(index, record, len(notes))
        self.rows.append(
            AttemptRow(
                task=task,
                attempt=index,
                notes_shown=len(notes),
                success=record.success,
                progress=record.progress,
                steps=len(record.steps),
                ended=record.ended,
            )
        )
        return Attempt(record.success, lambda: _trajectory(self._reset(task), record))

    def reflect(self, task: str, round: int, prompt: str) -> str:
        """The model's reflection ``round`` on ``task``, asked with ``prompt``.

        :raises _Stop: when the model gave no answer.
        """
        model, seed = self.config.run.model, self.config.seed
        assert model is not None  # run_reflexion refuses a run without a model
        request = chat_request(model, (ChatMessage(role="user", content=prompt),), seed=seed)
        label = f"{episode_key(task, seed)} reflection {round}"
        recording = RecordingBackbone(self.backbone, Ledger(self.prices, sink=self.calls.append), label)
        try:
            return recording.complete(request).text
        except LLMError as exc:
            raise _Stop(f"the reflection {round} on {task} got no answer: {exc}") from None

    def _reset(self, task: str) -> ResetInfo:
        """``task`` reset once, for the trajectories of its attempts."""
        if task not in self.resets:
            self.resets[task] = self.worker.env.reset(task)
        return self.resets[task]


def _templates() -> PromptTemplates:
    return PromptTemplates(reflection=template("reflect"), omitted=template("omitted"))


def _write_notes(out: Path, config: ReflexionConfig, notes: tuple[Note, ...], complete: bool) -> None:
    record = NotesFile(
        env=config.run.env,
        method=config.run.method,
        seed=config.seed,
        train=config.train,
        rounds=config.rounds,
        notes=notes,
        complete=complete,
    )
    RunDir(out, RunKind.reflexion).write(NOTES, record)


__all__ = [
    "NOTES",
    "NotesError",
    "NotesFile",
    "ReflexionConfig",
    "ReflexionSummary",
    "notes_for",
    "read_notes",
    "run_reflexion",
]
