"""Evaluation runs: many episodes over N workers, resumable, with results in a run directory."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from pydantic import BaseModel, Field

from learnact.engine.episode import EpisodeInterrupted, error_text, run_episode
from learnact.engine.records import EpisodeRecord, EpisodeSpec, Method, Summary
from learnact.engine.rundir import RunDir, RunDirError
from learnact.envs.base import Environment
from learnact.envs.registry import EnvSpec, make_env
from learnact.sandbox import Sandbox
from learnact.sandbox.config import SandboxConfig


class EvalConfig(BaseModel):
    env: EnvSpec
    method: Method = "expert"
    tasks: list[str]
    max_steps: int = Field(100, gt=0)
    workers: int = Field(1, gt=0)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)

    def episode(self, task: str) -> EpisodeSpec:
        return EpisodeSpec(env=self.env, task=task, method=self.method, max_steps=self.max_steps, sandbox=self.sandbox)


# Settings that make two runs different; a run directory resumes only the same run. The task
# selection is not one of them: runs over other tasks (shards) add their episodes to the same folder.
SAME_RUN_FIELDS = ("env", "method", "max_steps", "sandbox")


class Worker:
    """One worker: its own environment and its own sandbox (with its warm pool), reused across episodes."""

    def __init__(self, config: EvalConfig) -> None:
        self.env: Environment = make_env(config.env)
        self.sandbox = Sandbox(config.sandbox)

    def close(self) -> None:
        self.sandbox.close()


def _close_quietly(worker: Worker) -> None:
    try:
        worker.close()
    except Exception:  # a sandbox whose engine went away: its containers are swept at the next start
        pass


def _merged_tasks(previous: dict | None, tasks: list[str]) -> list[str]:
    """The union of every selection run in the folder, in the order they were first selected."""
    earlier = previous.get("tasks") if previous is not None else None
    if not isinstance(earlier, list):
        earlier = []
    return list(dict.fromkeys([t for t in earlier if isinstance(t, str)] + tasks))


def run_evaluation(
    config: EvalConfig,
    out: Path,
    on_episode: Callable[[EpisodeRecord], None] = lambda record: None,
    on_start: Callable[[int, int], None] = lambda finished, total: None,
) -> Summary:
    """Run the episodes of ``config`` not yet finished in ``out``; return the summary of the folder.

    One process at a time: the folder is locked for the whole run (RunDirBusy names the holder). The
    sandbox is started before anything is written, so a run that cannot start leaves no config behind.
    ``on_start(finished, total)`` is told how many of the selected episodes are already finished.

    An episode that ends by an error (planner, environment, sandbox) is recorded as such and the run
    goes on; a later run retries it. Episodes that ran to their end, failed or not, are never rerun.
    The summary covers every task recorded in the folder (the latest record of each), whatever
    ``config.tasks`` selects, so it always agrees with ``episodes.jsonl``.

    Ctrl-C (KeyboardInterrupt) stops every episode at its next step boundary; finished episodes are kept
    in ``out``, unfinished ones are dropped, and the interrupt propagates. Running the same command again
    resumes.
    """
    run_dir = RunDir(out)
    run_dir.lock()
    all_workers: list[Worker] = []
    try:
        try:
            all_workers.append(Worker(config))
        except BaseException:
            run_dir.unlock(discard_if_unused=True)
            raise
        previous = run_dir.previous_config()
        if previous is not None:
            current = config.model_dump(mode="json")
            differing = [f for f in SAME_RUN_FIELDS if previous.get(f) != current.get(f)]
            if differing:
                raise RunDirError(
                    f"{out} holds a run with a different {', '.join(differing)}; "
                    "use another --out or the same settings to resume it"
                )
        all_tasks = _merged_tasks(previous, config.tasks)
        run_dir.write_config(config.model_copy(update={"tasks": all_tasks}))
        records = run_dir.latest()
        pending = [t for t in config.tasks if t not in records or records[t].status == "error"]
        on_start(len(config.tasks) - len(pending), len(config.tasks))
        types = {t.id: t.type for t in all_workers[0].env.tasks()}
        _run_pending(config, run_dir, pending, types, all_workers, records, on_episode)
        selected = set(all_tasks)
        order = all_tasks + [t for t in records if t not in selected]
        summary = Summary.of(config.env.name, config.method, [records[t] for t in order if t in records])
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
) -> None:
    free_workers: list[Worker] = list(all_workers)
    lock = threading.Lock()
    stop = threading.Event()

    def run_one(task: str) -> EpisodeRecord:
        with lock:
            worker = free_workers.pop() if free_workers else None
        if worker is None:
            try:
                worker = Worker(config)
            except Exception as exc:  # e.g. the Docker engine went away mid-run
                if stop.is_set():
                    raise EpisodeInterrupted(task) from exc
                record = EpisodeRecord(
                    task=task, type=types.get(task, "unknown"), env=config.env.name, method=config.method,
                    status="error", error=error_text(exc), success=False, progress=0.0, steps=[], duration_s=0.0,
                )  # fmt: skip
                run_dir.append(record)
                return record
            with lock:
                all_workers.append(worker)
        try:
            record = run_episode(config.episode(task), env=worker.env, sandbox=worker.sandbox, should_stop=stop.is_set)
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
