"""Where episodes run: the seam between an evaluation run and the machines that run its episodes.

An evaluation run (``engine/runs/evaluation.py``) owns the run directory: it decides which episodes are
pending, writes every finished record and the summary. An :class:`Executor` only turns self-contained
:class:`EpisodeSpec` s into :class:`EpisodeRecord` s and hands each back, in the calling thread, as soon as
it finishes; it never writes to the run directory. :class:`LocalExecutor` runs them on threads of this
process; ``engine/runs/ray_executor.py`` on a Ray cluster. An executor must never raise for one episode's
failure (its sandbox or environment broke, its worker died): that episode becomes a record with
the status :attr:`EpisodeStatus.error`, which a rerun retries.

An executor that runs episodes in other processes builds the run's language model there with
:func:`learnact.engine.llm.make_backbone` from the run's :class:`ModelDescription` (JSON, and never the API
key, which is read from the environment of the machine that builds the model: a key must never travel with
work that is serialised, logged or stored), checking that it is the run's (its recorded identity).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from enum import Enum

from learnact.engine.llm import Backbone
from learnact.engine.records import EndReason, EpisodeRecord, EpisodeSpec, EpisodeStatus, RunSettings
from learnact.engine.runs.episode import EpisodeInterrupted, error_text, run_episode
from learnact.envs import Environment, TaskInfo, make_env
from learnact.sandbox import Sandbox

log = logging.getLogger(__name__)
OnRecord = Callable[[EpisodeRecord], None]


class ExecutorName(str, Enum):
    """Where episodes run: threads of this process, worker processes of this machine
    (``engine/runs/process_executor.py``), or a Ray cluster (the ``ray`` extra)."""

    threads = "threads"
    processes = "processes"
    ray = "ray"

    def __str__(self) -> str:
        return self.value


def default_executor(uses_model: bool) -> ExecutorName:
    """The faster executor of this machine for a method. Without a model every step is host work (planner,
    checker, sandbox protocol) that threads serialise on the interpreter's lock: processes. A model
    method's episodes mostly wait on the model, a server's (threads cost less than processes and their
    start-up) or the local model of this process, which every worker process would load again (its memory
    multiplied, its cores contended): threads.
    """
    return ExecutorName.threads if uses_model else ExecutorName.processes


def failed_record(spec: EpisodeSpec, task_type: str, reason: str) -> EpisodeRecord:
    """The record of an episode that could not run at all (no sandbox, a dead worker): :attr:`EpisodeStatus.error`."""
    return EpisodeRecord(
        task=spec.task,
        seed=spec.seed,
        type=task_type,
        env=spec.run.env.name,
        method=spec.run.method,
        status=EpisodeStatus.error,
        error=reason,
        success=False,
        progress=0.0,
        steps=[],
        duration_s=0.0,
        ended=EndReason.error,
    )


class Executor(ABC):
    """Runs episodes and hands back their records as they finish.

    ``open`` is called once per evaluation run, before the run directory is written, and must fail there
    when no episode of these settings can run; ``run`` may be called after it; ``close`` releases every
    sandbox, process and connection the executor holds (an executor is also a context manager).
    """

    def __init__(self) -> None:
        self.tasks: list[TaskInfo] = []  # the tasks of the environment of the settings last opened

    @abstractmethod
    def open(self, settings: RunSettings) -> None:
        """Get ready to run episodes of ``settings`` and list their environment's ``tasks``.

        :raises LearnactError: when episodes of ``settings`` cannot run with this executor (the subclass
            says which: a sandbox that cannot start, an environment that cannot be built, a cluster that
            cannot be reached).
        """

    @abstractmethod
    def run(
        self, specs: Sequence[EpisodeSpec], workers: int, on_record: OnRecord, backbone: Backbone | None = None
    ) -> None:
        """Run ``specs``, at most ``workers`` at a time, calling ``on_record`` in this thread as each ends.

        An exception from ``on_record``, a KeyboardInterrupt or a SystemExit (SIGTERM) stops the episodes
        still running (they are dropped, not recorded) and propagates once they have stopped.

        :raises KeyboardInterrupt: (and any exception of ``on_record``) after stopping the running episodes.
        """

    @abstractmethod
    def close(self) -> None:
        """Release what the executor holds; it may be opened again afterwards."""

    def task_type(self, task: str) -> str:
        return next((t.type for t in self.tasks if t.id == task), "unknown")

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Worker:
    """One worker: its own environment and its own sandbox (with its warm pool), reused across episodes."""

    def __init__(self, settings: RunSettings) -> None:
        self.env: Environment = make_env(settings.env)
        self.sandbox = Sandbox(settings.sandbox)
        log.debug("worker started: environment %s, %s sandbox", self.env.name, settings.sandbox.backend)

    def close(self) -> None:
        self.sandbox.close()


def close_quietly(worker: Worker) -> None:
    try:
        worker.close()
    except Exception as exc:  # a sandbox whose engine went away: its containers are swept at the next start
        log.warning("could not close a worker's sandbox (its containers are removed at the next start): %s", exc)


class LocalExecutor(Executor):
    """Episodes on threads of this process, each thread borrowing a :class:`Worker` (environment and
    sandbox) that is reused by the next episode, unless its episode ended by an error."""

    def __init__(self) -> None:
        super().__init__()
        self._settings: RunSettings | None = None
        self._workers: list[Worker] = []

    def open(self, settings: RunSettings) -> None:
        """Start the first worker, so that a sandbox or an environment that cannot start fails here.

        :raises SandboxUnavailable: when the sandbox cannot start.
        :raises LearnactError: when the environment cannot be built (see :func:`learnact.envs.make_env`).
        """
        if self._settings != settings:
            self.close()
        if not self._workers:
            self._workers.append(Worker(settings))
        self._settings = settings
        self.tasks = self._workers[0].env.tasks()

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            close_quietly(worker)
        self._settings = None

    def run(
        self, specs: Sequence[EpisodeSpec], workers: int, on_record: OnRecord, backbone: Backbone | None = None
    ) -> None:
        """See :meth:`Executor.run`; Ctrl-C stops every episode at its next step boundary.

        :raises RuntimeError: when the executor was not opened.
        """
        if self._settings is None:
            raise RuntimeError("open the executor before running episodes")
        settings = self._settings
        all_workers = self._workers
        free_workers: list[Worker] = list(all_workers)
        lock = threading.Lock()
        stop = threading.Event()

        def run_one(spec: EpisodeSpec) -> EpisodeRecord:
            with lock:
                worker = free_workers.pop() if free_workers else None
            if worker is None:
                try:
                    worker = Worker(settings)
                except Exception as exc:  # e.g. the Docker engine went away mid-run
                    if stop.is_set():
                        raise EpisodeInterrupted(spec.task) from exc
                    return failed_record(spec, self.task_type(spec.task), error_text(exc))
                with lock:
                    all_workers.append(worker)
            try:
                record = run_episode(
                    spec, env=worker.env, sandbox=worker.sandbox, should_stop=stop.is_set, backbone=backbone
                )
            except BaseException:
                with lock:
                    free_workers.append(worker)
                raise
            if record.status is EpisodeStatus.error:  # its sandbox or environment may be broken: start afresh
                with lock:
                    all_workers.remove(worker)
                close_quietly(worker)
            else:
                with lock:
                    free_workers.append(worker)
            return record

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="episode")
        try:
            futures: set[Future[EpisodeRecord]] = {pool.submit(run_one, spec) for spec in specs}
            while futures:
                finished, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    on_record(future.result())
        except BaseException as exc:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            if backbone is not None:
                backbone.abort()  # a model call in flight ends now, not when a hung server answers
            with lock:
                running = [worker for worker in all_workers if worker not in free_workers]
            if running:  # a person who stopped the run hears what it waits for; an error says it itself
                log.log(
                    logging.WARNING if isinstance(exc, (KeyboardInterrupt, SystemExit)) else logging.INFO,
                    "stopping: waiting for %d running episode(s) to end (%sa sandbox execution ends within its"
                    " timeout)",
                    len(running),
                    "their model calls were abandoned; " if backbone is not None else "",
                )
            for worker in running:
                worker.env.interrupt()
            raise
        finally:
            pool.shutdown(wait=True)
