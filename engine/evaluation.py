"""Evaluation runs: many episodes over N workers, resumable, with results in a run directory."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from pydantic import BaseModel, Field

from learnact.engine.episode import run_episode
from learnact.engine.records import EpisodeRecord, EpisodeSpec, Method, Summary
from learnact.engine.rundir import RunDir
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
        return EpisodeSpec(
            env=self.env, task=task, method=self.method, max_steps=self.max_steps, sandbox=self.sandbox
        )


# Settings that make two runs different; a run directory resumes only the same run.
SAME_RUN_FIELDS = ("env", "method", "max_steps", "sandbox")


class Worker:
    """One worker: its own environment and its own sandbox (with its warm pool), reused across episodes."""

    def __init__(self, config: EvalConfig) -> None:
        self.env: Environment = make_env(config.env)
        self.sandbox = Sandbox(config.sandbox)

    def close(self) -> None:
        self.sandbox.close()


def run_evaluation(
    config: EvalConfig,
    out: Path,
    on_episode: Callable[[EpisodeRecord], None] = lambda record: None,
) -> Summary:
    """Run the episodes of ``config`` not yet in ``out``; return the summary of all of them.

    Ctrl-C (KeyboardInterrupt) stops every episode at its next step boundary; finished episodes are kept
    in ``out``, unfinished ones are dropped, and the interrupt propagates. Running the same command again
    resumes.
    """
    run_dir = RunDir(out)
    run_dir.claim(config, SAME_RUN_FIELDS)
    wanted = set(config.tasks)
    done = {r.task: r for r in run_dir.finished() if r.task in wanted}
    pending = [t for t in config.tasks if t not in done]

    free_workers: list[Worker] = []
    all_workers: list[Worker] = []
    lock = threading.Lock()
    stop = threading.Event()

    def run_one(task: str) -> EpisodeRecord:
        with lock:
            worker = free_workers.pop() if free_workers else None
        if worker is None:
            worker = Worker(config)
            with lock:
                all_workers.append(worker)
        try:
            record = run_episode(
                config.episode(task), env=worker.env, sandbox=worker.sandbox, should_stop=stop.is_set
            )
        finally:
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
                done[record.task] = record
                on_episode(record)
    except BaseException:
        stop.set()
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        executor.shutdown(wait=True)
        for worker in all_workers:
            worker.close()
    summary = Summary.of(config.env.name, config.method, [done[t] for t in config.tasks])
    run_dir.write_summary(summary)
    return summary
