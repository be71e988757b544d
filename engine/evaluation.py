"""Evaluation runs: many episodes over N workers, resumable, with results in a run directory."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from learnact.actions.errors import LearnactError
from learnact.engine.episode import EpisodeInterrupted, error_text, run_episode
from learnact.engine.llm import CALLS, Backbone, CallLog, Ledger, PriceTable, RecordingBackbone
from learnact.engine.records import RETRIED, EpisodeRecord, EpisodeSpec, RunSettings, Summary
from learnact.engine.rundir import ANOTHER, RunDir, RunDirError
from learnact.envs import Environment, make_env
from learnact.sandbox import Sandbox

log = logging.getLogger(__name__)


class EvalConfig(BaseModel):
    """An evaluation: the run's settings, the tasks selected and the number of workers (``config.json``).

    :raises pydantic.ValidationError: for an unknown field or a value out of range (it names the field).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: RunSettings
    tasks: tuple[str, ...]
    workers: int = Field(1, gt=0, description="episodes run in parallel, each with its own sandbox")

    @model_validator(mode="before")
    @classmethod
    def _settings_at_the_top(cls, data: Any) -> Any:
        """``config.json`` of learnact 0.1 held the run's settings beside the tasks: they are lifted."""
        if isinstance(data, dict) and "run" not in data and "env" in data:
            data = dict(data)
            data["run"] = {name: data.pop(name) for name in RunSettings.model_fields if name in data}
        return data

    def episode(self, task: str) -> EpisodeSpec:
        return EpisodeSpec(run=self.run, task=task)


class Worker:
    """One worker: its own environment and its own sandbox (with its warm pool), reused across episodes."""

    def __init__(self, settings: RunSettings) -> None:
        self.env: Environment = make_env(settings.env)
        self.sandbox = Sandbox(settings.sandbox)
        log.debug("worker started: environment %s, %s sandbox", self.env.name, settings.sandbox.backend)

    def close(self) -> None:
        self.sandbox.close()


def _close_quietly(worker: Worker) -> None:
    try:
        worker.close()
    except Exception as exc:  # a sandbox whose engine went away: its containers are swept at the next start
        log.warning("could not close a worker's sandbox (its containers are removed at the next start): %s", exc)


def _previous_run(run_dir: RunDir) -> EvalConfig | None:
    """The evaluation already in the run directory, None when there is none.

    :raises RunDirError: when its config cannot be read as one.
    """
    previous = run_dir.previous_config()
    if previous is None:
        return None
    try:
        return EvalConfig.model_validate(previous)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the config"
        raise RunDirError(
            run_dir.path,
            f"{run_dir.path / 'config.json'} is not a config this version of learnact reads ({where}: {first['msg']})",
            ANOTHER,
        ) from None


def _merged_tasks(previous: EvalConfig | None, tasks: Sequence[str]) -> tuple[str, ...]:
    """The union of every selection run in the folder, in the order they were first selected."""
    earlier = previous.tasks if previous is not None else ()
    return tuple(dict.fromkeys([*earlier, *tasks]))


def run_evaluation(
    config: EvalConfig,
    out: Path,
    on_episode: Callable[[EpisodeRecord], None] = lambda record: None,
    on_start: Callable[[int, int], None] = lambda finished, total: None,
    backbone: Backbone | None = None,
    prices: PriceTable | None = None,
) -> Summary:
    """Run the episodes of ``config`` not yet finished in ``out``; return the summary of the folder.

    One process at a time: the folder is locked for the whole run. The sandbox is started before
    anything is written, so a run that cannot start leaves no config behind.
    ``on_start(finished, total)`` is told how many of the selected episodes are already finished.
    ``backbone`` is the language model of a model method (``config.run.model`` names it); every call is
    appended to ``calls.jsonl`` in ``out`` and counted in the episode's and the summary's ``usage``.

    An episode that ends by an error (planner, environment, sandbox) is recorded as such and the run
    goes on; a later run retries it. Episodes that ran to their end, failed or not, are never rerun.
    The summary covers every task recorded in the folder (the latest record of each), whatever
    ``config.tasks`` selects, so it always agrees with ``episodes.jsonl``.

    Ctrl-C (KeyboardInterrupt) stops every episode at its next step boundary; finished episodes are kept
    in ``out``, unfinished ones are dropped, and the interrupt propagates. Running the same command again
    resumes.

    :raises RunDirBusy: when another process holds ``out`` (it names the holder's pid).
    :raises RunDirError: when ``out`` cannot be used, holds another run (other :class:`RunSettings`) or a
        config this version cannot read, or a write fails (e.g. a full disk).
    :raises SandboxUnavailable: when the sandbox cannot start.
    :raises LearnactError: when the environment cannot be built (see :func:`learnact.envs.make_env`), or
        for a model method without ``backbone`` or ``config.run.model``.
    """
    if config.run.method.uses_model and (backbone is None or config.run.model is None):
        raise LearnactError(f"the method {config.run.method.value} needs a language model", "give a {model}")
    run_dir = RunDir(out)
    run_dir.lock()
    all_workers: list[Worker] = []
    try:
        try:
            all_workers.append(Worker(config.run))
        except BaseException:
            run_dir.unlock(discard_if_unused=True)
            raise
        previous = _previous_run(run_dir)
        if previous is not None and previous.run != config.run:
            raise RunDirError(
                out,
                f"{out} holds a run with a different {', '.join(previous.run.differences(config.run))}",
                ANOTHER + " or the same settings to resume it",
            )
        all_tasks = _merged_tasks(previous, config.tasks)
        run_dir.write_config(config.model_copy(update={"tasks": all_tasks}))
        records = run_dir.latest()
        pending = [t for t in config.tasks if t not in records or records[t].status in RETRIED]
        on_start(len(config.tasks) - len(pending), len(config.tasks))
        log.info("%s: %d of %d episodes to run, %d worker(s)", out, len(pending), len(config.tasks), config.workers)
        types = {t.id: t.type for t in all_workers[0].env.tasks()}
        recording = (
            RecordingBackbone(backbone, Ledger(prices, sink=CallLog(out / CALLS).append))
            if backbone is not None and config.run.method.uses_model
            else None
        )
        _run_pending(config, run_dir, pending, types, all_workers, records, on_episode, recording)
        selected = set(all_tasks)
        order = [*all_tasks, *(t for t in records if t not in selected)]
        summary = Summary.of(config.run.env.name, config.run.method, [records[t] for t in order if t in records])
        run_dir.write_summary(summary)  # still under the lock: no other run writes it meanwhile
    finally:
        for worker in all_workers:
            _close_quietly(worker)
        run_dir.unlock()
    return summary


def _run_pending(
    config: EvalConfig,
    run_dir: RunDir,
    pending: list[str],
    types: dict[str, str],
    all_workers: list[Worker],
    records: dict[str, EpisodeRecord],
    on_episode: Callable[[EpisodeRecord], None],
    backbone: Backbone | None = None,
) -> None:
    free_workers: list[Worker] = list(all_workers)
    lock = threading.Lock()
    stop = threading.Event()

    def run_one(task: str) -> EpisodeRecord:
        with lock:
            worker = free_workers.pop() if free_workers else None
        if worker is None:
            try:
                worker = Worker(config.run)
            except Exception as exc:  # e.g. the Docker engine went away mid-run
                if stop.is_set():
                    raise EpisodeInterrupted(task) from exc
                record = EpisodeRecord(
                    task=task, type=types.get(task, "unknown"), env=config.run.env.name, method=config.run.method,
                    status="error", error=error_text(exc), success=False, progress=0.0, steps=[], duration_s=0.0,
                )  # fmt: skip
                run_dir.append(record)
                return record
            with lock:
                all_workers.append(worker)
        try:
            record = run_episode(
                config.episode(task), env=worker.env, sandbox=worker.sandbox, should_stop=stop.is_set, backbone=backbone
            )
        except BaseException:
            with lock:
                free_workers.append(worker)
            raise
        if record.status == "error":  # its sandbox or environment may be broken: start afresh
            with lock:
                all_workers.remove(worker)
            _close_quietly(worker)
        else:
            with lock:
                free_workers.append(worker)
        run_dir.append(record)
        return record

    executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="episode")
    try:
        futures: set[Future[EpisodeRecord]] = {executor.submit(run_one, t) for t in pending}
        while futures:
            finished, futures = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                record = future.result()
                records[record.task] = record
                outcome = f"ended by {record.error}" if record.status in RETRIED else f"success={record.success}"
                log.info("episode %s: %s, %d steps, %.1f s", record.task, outcome, len(record.steps), record.duration_s)
                on_episode(record)
    except BaseException:
        stop.set()
        executor.shutdown(wait=False, cancel_futures=True)
        with lock:
            running = list(all_workers)
        for worker in running:
            worker.env.interrupt()
        raise
    finally:
        executor.shutdown(wait=True)
