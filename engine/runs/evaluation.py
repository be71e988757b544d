"""Evaluation runs: many episodes over N workers, resumable, with results in a run directory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.errors import LearnactError
from learnact.engine.agents import method_spec
from learnact.engine.llm import Backbone, CallLog, Ledger, PriceTable, RecordingBackbone
from learnact.engine.llm.base import ModelFailure
from learnact.engine.records import EpisodeRecord, EpisodeSpec, EpisodeStatus, RunSettings, Summary, episode_key
from learnact.engine.rundir import RunDir
from learnact.engine.runs.executor import Executor, LocalExecutor
from learnact.engine.splits import Split, split_tasks
from learnact.envs import TaskInfo

log = logging.getLogger(__name__)
T = TypeVar("T")
STOP_AFTER_SAME_MODEL_FAILURES = 3  # episodes in a row ended by one model failure (same text): the run stops


class EvalConfig(BaseModel):
    """An evaluation: the run's settings (its identity), the tasks selected, the seeds each task runs with
    (``--seeds N``: 0..N-1) and the number of workers (``config.json``).

    :raises pydantic.ValidationError: for an unknown field or a value out of range (it names the field).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunSettings
    tasks: tuple[str, ...]
    seeds: tuple[Annotated[int, Field(ge=0)], ...] = Field((0,), min_length=1, description="repetitions")
    workers: int = Field(1, gt=0, description="episodes run in parallel, each with its own sandbox")

    def episode(self, task: str, seed: int = 0) -> EpisodeSpec:
        return EpisodeSpec(run=self.run, task=task, seed=seed)


def _merged(earlier: Sequence[T], now: Sequence[T]) -> tuple[T, ...]:
    """The union of every selection (tasks, seeds) run in the folder, in the order first selected."""
    return tuple(dict.fromkeys([*earlier, *now]))


class RunSplits(BaseModel):
    """``splits.json``: per seed, the training tasks (``train``: those of the learning run whose notes or
    actions the run uses when it names them, else the seed's split) and the tasks evaluated with that
    seed so far (``test``: the selection, less the training tasks with ``test_on_rest``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test_on_rest: bool
    train_from: Literal["learning_run", "seed"]
    splits: tuple[Split, ...]


def _splits(
    settings: RunSettings, all_tasks: Sequence[TaskInfo], tasks: Sequence[str], seeds: Sequence[int]
) -> RunSplits:
    """The split of every seed of a run over ``tasks`` (the selection), drawn from all of the env's tasks."""
    splits = []
    for seed in seeds:
        train = settings.trained_on or split_tasks(all_tasks, seed).train
        test = tuple(t for t in tasks if not (settings.test_on_rest and t in train))
        splits.append(Split(seed=seed, train=train, test=test))
    return RunSplits(
        test_on_rest=settings.test_on_rest,
        train_from="learning_run" if settings.trained_on else "seed",
        splits=tuple(splits),
    )


def run_evaluation(
    config: EvalConfig,
    out: Path,
    on_episode: Callable[[EpisodeRecord], None] = lambda record: None,
    on_start: Callable[[int, int], None] = lambda finished, total: None,
    backbone: Backbone | None = None,
    prices: PriceTable | None = None,
    executor: Executor | None = None,
) -> Summary:
    """Run the episodes of ``config`` not yet finished in ``out``; return the summary of the folder.

    One process at a time: the folder is locked for the whole run. The episodes run on ``executor``
    (default: a :class:`LocalExecutor`, closed at the end; one passed in is opened for this run and left
    for the caller to close). It is opened (the sandbox started, the cluster joined) before anything is
    written, so a run that cannot start leaves no config behind.
    An episode is a task and a seed: every selected task runs with every seed of ``config.seeds`` (with
    ``config.run.test_on_rest``, less the seed's training tasks: ``config.run.trained_on`` when given, else
    :func:`split_tasks` of the environment's tasks and the seed); ``splits.json`` records each seed's split.
    ``on_start(finished, total)`` is told how many of the selected episodes are already finished.
    ``backbone`` is the language model of a model method (``config.run.model`` names it); every call is
    appended to ``calls.jsonl`` in ``out`` and counted in the episode's and the summary's ``usage`` (an
    executor that builds the model on other machines, as Ray's does, sends their calls there instead).

    An episode that ends by an error (planner, environment, sandbox) is recorded as such and the run
    goes on; a later run retries it. Episodes that ran to their end, failed or not, are never rerun.
    The tasks and seeds of every run in the folder are merged in ``config.json``. The summary covers every
    episode recorded in the folder (the latest record of each task and seed), whatever ``config`` selects,
    so it always agrees with ``episodes.jsonl``.

    Ctrl-C (KeyboardInterrupt) stops every episode at its next step boundary; finished episodes are kept
    in ``out``, unfinished ones are dropped, and the interrupt propagates. Running the same command again
    resumes.

    :raises RunDirBusy: when another process holds ``out`` (it names the holder's pid).
    :raises RunDirError: when ``out`` cannot be used, holds another run (other :class:`RunSettings`) or a
        config this version cannot read, or a write fails (e.g. a full disk).
    :raises SandboxUnavailable: when the sandbox cannot start.
    :raises LearnactError: when the environment cannot be built (see :func:`learnact.envs.make_env`), or
        for a model method without ``backbone`` or ``config.run.model``, or when ``executor`` cannot run
        these episodes (see its ``open``).
    """
    if method_spec(config.run.method).uses_model and (backbone is None or config.run.model is None):
        raise LearnactError(f"the method {config.run.method} needs a language model", "give a {model}")
    run_dir = RunDir(out)
    own_executor = executor is None
    executor = executor or LocalExecutor()
    try:
        with run_dir.opened(config, identity=lambda c: c.run, merge=_merged_selections) as merged:
            executor.open(config.run)
            recording = (
                RecordingBackbone(backbone, Ledger(prices, sink=CallLog(out).append))
                if backbone is not None and method_spec(config.run.method).uses_model
                else None
            )
            summary = _Evaluation(config, run_dir, executor, recording).run(merged, on_start, on_episode)
    finally:
        if own_executor:
            executor.close()
    return summary


@dataclass
class _Evaluation:
    """One evaluation in its locked run folder: the episodes of ``config`` run on ``executor`` (the model's calls
    counted by ``recording``; None for a method without a model), each record written as it comes back."""

    config: EvalConfig
    run_dir: RunDir
    executor: Executor
    recording: RecordingBackbone | None
    records: dict[tuple[str, int], EpisodeRecord] = field(default_factory=dict)  # the latest of each episode
    failing: tuple[str | None, int] = (None, 0)  # the model failure of the latest episodes, and how many in a row

    def run(
        self, merged: EvalConfig, on_start: Callable[[int, int], None], on_episode: Callable[[EpisodeRecord], None]
    ) -> Summary:
        """The episodes of ``config`` not yet in the folder, run; the summary of every selection (``merged``).

        :raises RunDirError: when a write fails.
        :raises ModelUnavailable: when episodes in a row end by the same model failure.
        """
        config, run_dir, env_tasks = self.config, self.run_dir, self.executor.tasks
        run_dir.write_splits(_splits(config.run, env_tasks, merged.tasks, merged.seeds))
        selected = _splits(config.run, env_tasks, config.tasks, config.seeds)
        wanted = [(task, split.seed) for split in selected.splits for task in split.test]
        self.records = records = run_dir.latest()
        pending = [
            config.episode(task, seed)
            for task, seed in wanted
            if (task, seed) not in records or records[task, seed].status.retried
        ]
        on_start(len(wanted) - len(pending), len(wanted))
        log.info("%s: %d of %d episodes to run, %d worker(s)", run_dir.path, len(pending), len(wanted), config.workers)

        def finished(record: EpisodeRecord) -> None:
            self._keep(record)  # before on_episode hears of it: an interrupted run keeps every episode it told of
            on_episode(record)

        self.executor.run(pending, config.workers, finished, self.recording)
        summary = _summary(merged, records)
        run_dir.write_summary(summary)  # still under the lock: no other run writes it meanwhile
        return summary

    def _keep(self, record: EpisodeRecord) -> None:
        """Write ``record``; stop the run when it is the STOP_AFTER_SAME_MODEL_FAILURES-th episode in a row
        ended by the same model failure.

        :raises ModelUnavailable: then.
        """
        self.run_dir.append(record)
        self.records[record.task, record.seed] = record
        if record.status is EpisodeStatus.llm_error and record.error is not None:
            reason, count = self.failing
            self.failing = (record.error, count + 1 if reason == record.error else 1)
            if self.failing[1] >= STOP_AFTER_SAME_MODEL_FAILURES:
                raise ModelUnavailable(record.error, self.failing[1])
        else:
            self.failing = (None, 0)
        outcome = f"ended by {record.error}" if record.status.retried else f"success={record.success}"
        key = episode_key(record.task, record.seed)
        log.info("episode %s: %s, %d steps, %.1f s", key, outcome, len(record.steps), record.duration_s)


def _merged_selections(previous: EvalConfig, config: EvalConfig) -> EvalConfig:
    """``config`` with the tasks and seeds of the same run already in the folder merged in."""
    return config.model_copy(
        update={"tasks": _merged(previous.tasks, config.tasks), "seeds": _merged(previous.seeds, config.seeds)}
    )


def _summary(merged: EvalConfig, records: dict[tuple[str, int], EpisodeRecord]) -> Summary:
    """The summary of every episode recorded: the config's tasks and seeds in order, then any other."""
    order = [(task, seed) for seed in merged.seeds for task in merged.tasks]
    listed = set(order)
    order += [key for key in records if key not in listed]
    return Summary.of(merged.run.env.name, merged.run.method, [records[k] for k in order if k in records])


class ModelUnavailable(ModelFailure):
    """``count`` episodes in a row ended by the same model failure ``reason``: the run stops there instead of
    spending the same wait on every remaining episode."""

    def __init__(self, reason: str, count: int) -> None:
        self.reason, self.count = reason, count
        super().__init__(
            f"{count} episodes in a row ended by the same model failure, so the run stopped: {reason}",
            "fix the model server or its options ({model_timeout}, {model_retries}), then run the same command"
            " to resume",
        )
