"""Episodes on worker processes of this machine: every core busy, the run directory written here only.

Why: the episodes of one interpreter share its lock (issue 17: 16 threads keep 4.5 of 16 cores busy, and
the host's CPU per episode grows six-fold), so an expert run, whose every step is host work (planner,
checker, sandbox protocol), wants processes. A worker (``engine/runs/process_worker.py``) is started once per
executor, all of them at once, and keeps its environment, sandbox and model for every episode and every
run of the executor (the domains of a multi-domain run included), as Ray's runners do. Only JSON crosses:
the driver writes an order per episode to a worker's stdin, the worker answers with the episode's
:class:`EpisodeOutcome` on its stdout, which the driver validates (:func:`checked_outcome`), counts in
its ledger and hands to the run, which writes it.

A worker that dies (killed, out of memory), that sends something other than an outcome, or that cannot
start: the episode it held is recorded with :attr:`EpisodeStatus.error` (a rerun retries it), the worker is
replaced while episodes are left, and the others go on. Ctrl-C and SIGTERM reach the driver (the workers
ignore Ctrl-C): it sends ``stop`` to every busy worker, keeps the model calls of the stopped episodes,
drops their records, ends every worker (each removes its sandbox) and lets the interrupt propagate.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from pydantic import ValidationError

from learnact.actions.errors import LearnactError
from learnact.actions.text import visible
from learnact.engine.llm import Ledger, ModelDescription
from learnact.engine.records import EpisodeRecord, EpisodeSpec, RunSettings
from learnact.engine.runs.episode import error_text
from learnact.engine.runs.episode_runner import NodeExecutor, NodeModel, StrayCalls, checked_outcome
from learnact.engine.runs.executor import OnRecord, failed_record
from learnact.engine.runs.process_worker import RunOrder, StopOrder, WorkerLog, WorkerOrder, WorkerReady
from learnact.envs import make_env
from learnact.sandbox.backend import open_backend

log = logging.getLogger(__name__)
WORKER_MODULE = "learnact.engine.runs.process_worker"
MAX_LINE_BYTES = 64 * 2**20  # one episode's outcome; a longer line is a broken worker
MAX_LOG_BYTES = 2**16  # one line of a worker's stderr; a longer one is cut
POLL_S = 0.5  # the longest a stop signal waits to be handled while the driver waits for a worker
STOP_WAIT_S = 30.0  # after Ctrl-C: how long running episodes get to stop at a step boundary
EXIT_WAIT_S = 1.0  # a worker whose output ended: how long its exit status gets to arrive
CLOSE_WAIT_S = 60.0  # how long workers get to remove their sandboxes before they are killed


class WorkerFailed(LearnactError):
    """A worker process ended or broke its protocol while it held an episode."""


@dataclass(eq=False)
class _Worker:
    """One worker process, the episode it holds, and whether it said it is ready."""

    process: subprocess.Popen[bytes]
    ready: bool = False
    spec: EpisodeSpec | None = None
    started: float = field(default_factory=time.monotonic)

    def send(self, order: RunOrder | StopOrder) -> None:
        """:raises OSError: when the worker is gone (its stdin is closed)."""
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(WorkerOrder(order=order).model_dump_json().encode() + b"\n")
        stdin.flush()

    def how_it_ended(self) -> str:
        code = self.process.poll()
        if code is None:
            return "it broke the protocol"
        return f"it was killed by signal {-code}" if code < 0 else f"it exited with status {code}"


def _read_lines(worker: _Worker, events: queue.SimpleQueue[tuple[_Worker, bytes | None]]) -> None:
    """Every line ``worker`` writes, then None at its end (or at a line longer than MAX_LINE_BYTES)."""
    stdout = worker.process.stdout
    assert stdout is not None
    with stdout, contextlib.suppress(OSError, ValueError):
        while line := stdout.readline(MAX_LINE_BYTES + 1):
            if len(line) > MAX_LINE_BYTES or not line.endswith(b"\n"):
                break
            events.put((worker, line))
    events.put((worker, None))


def _relay_stderr(stderr: IO[bytes]) -> None:
    """Log a worker's log records here, through the driver's handlers; copy its other lines (a library's
    prints) to the driver's stderr, made visible."""
    with stderr, contextlib.suppress(OSError, ValueError):
        while line := stderr.readline(MAX_LOG_BYTES):
            text = line.decode("utf-8", errors="replace")
            try:
                entry = WorkerLog.model_validate_json(text)
            except ValidationError:
                sys.stderr.write(visible(text.rstrip("\n")) + "\n")
                continue
            logging.getLogger(entry.name).log(entry.level, "%s", entry.message)


class ProcessExecutor(NodeExecutor):
    """Episodes on worker processes of this machine, at most ``workers`` of a run at a time. ``model`` is how
    the workers build the language model of a model method (each its own: a local GGUF is loaded once per
    worker, which is why the command line runs model methods on threads unless told otherwise).
    """

    def __init__(self, model: ModelDescription | None = None) -> None:
        super().__init__(model)
        self._idle: list[_Worker] = []  # workers kept from an earlier run, ready for the next one
        self._events: queue.SimpleQueue[tuple[_Worker, bytes | None]] = queue.SimpleQueue()

    def open(self, settings: RunSettings) -> None:
        """List the environment's tasks and check, here, that its sandboxes can run.

        :raises LearnactError: for a model method without ``model`` (its description) or model settings, or when
            the environment cannot be built (see :func:`learnact.envs.make_env`).
        :raises SandboxUnavailable: when the sandbox cannot start.
        """
        if self.lacks_model(settings):
            raise LearnactError(
                f"the method {settings.method} on worker processes needs the run's model settings and how the"
                " workers build the model",
                "give the ProcessExecutor a ModelDescription (the CLI does) and the run a ModelSettings",
            )
        self.tasks = make_env(settings.env).tasks()
        open_backend(settings.sandbox).close()
        self._settings = settings

    def close(self) -> None:
        """End the workers kept between runs (each removes its sandbox first, all at once)."""
        self._settings = None
        _end(self._idle)

    def start_worker(self) -> _Worker:
        """A new worker process; its lines arrive on the executor's event queue."""
        level = logging.getLogger("learnact").getEffectiveLevel()
        process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "--log-level", str(level)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
        )
        assert process.stderr is not None
        threading.Thread(target=_relay_stderr, args=(process.stderr,), name="worker-log", daemon=True).start()
        worker = _Worker(process)
        threading.Thread(target=_read_lines, args=(worker, self._events), name="worker-lines", daemon=True).start()
        return worker

    def _dispatch(
        self, specs: Sequence[EpisodeSpec], workers: int, ledger: Ledger, model: NodeModel | None, on_record: OnRecord
    ) -> None:
        _Dispatch(self, specs, workers, ledger, model).run(on_record)


class _Dispatch:
    """One run's workers and the episodes in flight: each worker holds at most one episode."""

    def __init__(
        self,
        executor: ProcessExecutor,
        specs: Sequence[EpisodeSpec],
        workers: int,
        ledger: Ledger,
        model: NodeModel | None,
    ) -> None:
        self.executor = executor
        self.ledger = ledger
        self.model = model
        self.queue = deque(specs)
        self.size = min(workers, len(specs))
        self.types = {t.id: t.type for t in executor.tasks}
        self.workers: list[_Worker] = []  # this run's, alive

    def task_type(self, spec: EpisodeSpec) -> str:
        return self.types.get(spec.task, "unknown")

    def give(self, worker: _Worker) -> None:
        """The next episode to ``worker``, or back to the executor's idle workers when none is left. A worker
        that is gone cannot take it: the end of its output follows, which records the episode."""
        if not self.queue:
            self.workers.remove(worker)
            self.executor._idle.append(worker)
            return
        spec = self.queue.popleft()
        ahead = -(-len(self.queue) // self.size)  # its share of what is left, rounded up
        worker.spec = spec
        with contextlib.suppress(OSError):
            worker.send(RunOrder(spec=spec, task_type=self.task_type(spec), model=self.model, ahead=ahead))

    def failed(self, worker: _Worker, reason: str) -> EpisodeRecord | None:
        """``worker`` is broken: killed and replaced while episodes are left; the record of the episode it
        held (or, for a worker that never started, of the next one: a worker that can never start ends the
        run episode by episode rather than hanging it)."""
        self.workers.remove(worker)
        spec = worker.spec
        if spec is None and not worker.ready and self.queue:
            spec = self.queue.popleft()
            reason = f"its worker process could not start: {worker.how_it_ended()}"
        _kill(worker)
        if self.queue:
            self.workers.append(self.executor.start_worker())
        if spec is None:
            return None
        log.warning("episode %s: %s", spec.key, reason)
        return failed_record(spec, self.task_type(spec), reason)

    def run(self, on_record: OnRecord) -> None:
        idle = self.executor._idle
        interrupted = False
        try:
            while idle and len(self.workers) < self.size:
                worker = idle.pop()
                self.workers.append(worker)
                self.give(worker)
            while len(self.workers) < self.size:
                self.workers.append(self.executor.start_worker())
            while self.queue or any(worker.spec is not None for worker in self.workers):
                try:
                    worker, line = self.executor._events.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if worker not in self.workers:  # an idle worker of the executor that ended: not ours to mind
                    if line is None and worker in idle:
                        idle.remove(worker)
                    continue
                record = self.on_line(worker, line)
                if record is not None:
                    on_record(record)
        except BaseException as exc:
            interrupted = True
            self.stop(exc)
            raise
        finally:
            if interrupted:  # a stopped worker refuses further episodes: every worker ends
                _end([*self.workers, *idle])
                idle.clear()
            else:
                idle.extend(self.workers)
            self.workers.clear()

    def on_line(self, worker: _Worker, line: bytes | None) -> EpisodeRecord | None:
        """What a line of ``worker`` means: ready, an outcome, or (None, or not an outcome) its end.

        :raises RunDirError: when the call log cannot be written.
        """
        if line is None:  # its output closed: it is exiting, or a bug closed it (then it is killed)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=EXIT_WAIT_S)
            return self.failed(worker, f"its worker process ended: {worker.how_it_ended()}")
        if not worker.ready:
            try:
                WorkerReady.model_validate_json(line)
            except ValidationError as exc:
                return self.failed(worker, f"its worker process did not start properly: {error_text(exc)}")
            worker.ready = True
            log.debug("worker process %d ready in %.2f s", worker.process.pid, time.monotonic() - worker.started)
            self.give(worker)
            return None
        spec = worker.spec
        if spec is None:
            return self.failed(worker, "its worker process sent an outcome it was not asked for")
        try:
            outcome = checked_outcome(line, spec, self.ledger)
        except (ValidationError, StrayCalls) as exc:
            return self.failed(worker, f"its worker process failed: {error_text(exc)}")
        worker.spec = None
        self.give(worker)
        if outcome.record is None:  # stopped: only by the driver, which is not waiting for it here
            return failed_record(spec, self.task_type(spec), "its worker process stopped it")
        return outcome.record

    def stop(self, cause: BaseException) -> None:
        """Stop the running episodes (they are dropped; the model calls they made are kept, as the threads
        keep them) and wait, boundedly, until they have. A person who stopped the run (``cause``) hears what
        it waits for; an error says it itself."""
        busy = [worker for worker in self.workers if worker.spec is not None]
        for worker in busy:
            with contextlib.suppress(OSError):
                worker.send(StopOrder())
        if busy:
            level = logging.WARNING if isinstance(cause, (KeyboardInterrupt, SystemExit)) else logging.INFO
            abandoned = " (their model calls were abandoned)" if self.model is not None else ""
            log.log(level, "stopping: waiting for %d running episode(s) to end%s", len(busy), abandoned)
        deadline = time.monotonic() + STOP_WAIT_S
        while busy and (left := deadline - time.monotonic()) > 0:
            try:
                worker, line = self.executor._events.get(timeout=left)
            except queue.Empty:
                break
            if worker not in busy or worker.spec is None:
                continue
            if line is not None and worker.ready:
                try:
                    checked_outcome(line, worker.spec, self.ledger)
                except (ValidationError, LearnactError) as exc:  # stopping goes on regardless
                    log.warning("the model calls of a stopped episode are not kept: %s", exc)
            worker.spec = None
            busy.remove(worker)
        self.queue.clear()


def _kill(worker: _Worker) -> None:
    """End ``worker`` now (its sandbox processes are swept by the next start of their backend)."""
    with contextlib.suppress(OSError):
        worker.process.kill()
    worker.process.wait()
    if worker.process.stdin is not None:
        with contextlib.suppress(OSError):
            worker.process.stdin.close()


def _end(workers: list[_Worker]) -> None:
    """Let every worker remove its sandbox and exit (all at once: the end of its stdin says so), killing
    those that take longer than CLOSE_WAIT_S. Empties ``workers``."""
    for worker in workers:
        if worker.process.stdin is not None:
            with contextlib.suppress(OSError):
                worker.process.stdin.close()
    deadline = time.monotonic() + CLOSE_WAIT_S
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker process %d did not end in %.0f s: killed", worker.process.pid, CLOSE_WAIT_S)
            _kill(worker)
    workers.clear()
