"""Episodes on a Ray cluster: the same EpisodeSpec in and EpisodeRecord out, on whichever node has room.

Why actors: an episode needs an environment and a sandbox whose warm pool hides the container start
(about a second on Docker); building both for every episode would cost more than an expert episode.
So the driver starts up to ``workers`` episode runners (Ray actors, each reserving ``cpus_per_episode``
CPUs on its node, so that a node runs no more sandboxes than its cores allow) and sends each one
episode at a time as an actor task; a runner builds its environment and sandbox on the node it lands
on and reuses them, as a thread of the local executor does. Records stream back as they finish and
the run directory is written here, on the driver, only.

What crosses to the nodes is JSON (the spec, then the record, validated again on the driver), and the
PDDL files of an external domain (read here, written to a temporary folder on the node): no episode
needs a path that exists only on the driver. ALFWorld games are too large to ship: their folder must
be at the same path on every node (the README says so).

Model methods: each runner builds the run's language model on its node from its :class:`ModelDescription`
(an OpenAI-compatible client, or the local GGUF loaded there) and keeps it, as it keeps its sandbox.
The API key never travels: the runner reads it from its node's environment. The response cache is the
node's (or a folder the nodes share). Every model call an episode made comes back with its record and
is checked (its episode, its model) and written to the run's ``calls.jsonl`` by the driver, so the call
log and the token totals are those of the local executor; the driver's prices travel with the description.

A runner that cannot start, a node without a Docker engine (or without the model's key), a runner
process that dies (killed, out of memory, its node lost): each becomes the record of the episode it
held, with :attr:`EpisodeStatus.error`, which a rerun retries; the runner is replaced and the run goes on.
Nothing here ever waits without a bound on a runner that is gone.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from learnact.actions.errors import LearnactError
from learnact.engine.llm import Ledger, ModelDescription
from learnact.engine.records import EpisodeRecord, EpisodeSpec, RunSettings
from learnact.engine.runs.episode import error_text
from learnact.engine.runs.episode_runner import (
    EpisodeOutcome,
    EpisodeRunner,
    NodeExecutor,
    NodeModel,
    StrayCalls,
    checked_outcome,
)
from learnact.engine.runs.executor import OnRecord, failed_record
from learnact.envs import EnvSpec, make_env
from learnact.envs.pddl.family import expand_problem_paths

try:
    import ray
    from ray.exceptions import RayError
except ImportError:  # the optional extra: refused with a remedy when asked for
    ray = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
MAX_SHIPPED_BYTES = 32 * 2**20  # PDDL files sent to every runner; beyond this, a shared path is the way
STOP_WAIT_S = 30.0  # after Ctrl-C: how long running episodes get to stop at a step boundary
CLOSE_WAIT_S = 60.0  # how long runners get to remove their sandboxes before they are killed
SIGNAL_POLL_S = 0.5  # the longest a stop signal waits to be handled while the driver waits on Ray
PENDING_WARNING_S = 60.0  # no runner placed for this long: say that the cluster has no room


class RayUnavailable(LearnactError):
    """Episodes cannot run on Ray: it is not installed, cannot be reached, has no room for an episode,
    or a model method was not told how its nodes build the model."""


def ray_module() -> Any:
    """The ``ray`` module.

    :raises RayUnavailable: when the optional extra is not installed.
    """
    if ray is None:
        raise RayUnavailable("the ray executor needs Ray, which is not installed", "pip install 'learnact[ray]'")
    return ray


def shipped_files(env: EnvSpec) -> dict[str, str]:
    """The files of ``env`` that travel with its episodes: an external PDDL domain and its problems,
    by the path the settings give (in the order of the problems); none for a built-in environment.

    :raises RayUnavailable: when one cannot be read, or they are larger than MAX_SHIPPED_BYTES together.
    """
    if env.pddl_domain is None:
        return {}
    files: dict[str, str] = {}
    for path in [env.pddl_domain, *expand_problem_paths(env.pddl_problems, env.pddl_domain)]:
        try:
            files[path] = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RayUnavailable(f"cannot read {path} to send it to the Ray nodes: {exc}") from None
    size = sum(len(text.encode()) for text in files.values())
    if size > MAX_SHIPPED_BYTES:
        raise RayUnavailable(
            f"the PDDL files of this run are {size} bytes, more than the {MAX_SHIPPED_BYTES} sent with its episodes",
            "run it with the local executor, or split {pddl_problems} over several runs",
        )
    return files


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _python_signal_handlers() -> dict[signal.Signals, Any]:
    """The Python handlers of the stop signals, when this is the main thread (else none)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}


def _reinstall(handlers: dict[signal.Signals, Any]) -> None:
    """``ray.init`` installs a C handler for SIGTERM that aborts the process (exit 134): no clean-up, no
    records kept. The Python handlers in place before it (the CLI's, or the default) are put back."""
    for signum, handler in handlers.items():
        if handler is not None:  # None: not set from Python, nothing to put back
            signal.signal(signum, handler)


class _DeferredSignals:
    """While the driver waits on Ray, a stop signal is only noted, then handled by its own handler right
    after the wait returns (within SIGNAL_POLL_S). Raised inside ``ray.wait``, the handler's exception
    would be turned by Ray into ``SystemExit(1)``: SIGTERM's status and Ctrl-C's KeyboardInterrupt lost."""

    def __init__(self) -> None:
        self._handlers = {signum: handler for signum, handler in _python_signal_handlers().items() if callable(handler)}
        self._pending: list[int] = []

    def __enter__(self) -> _DeferredSignals:
        for signum in self._handlers:
            signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signum)

    def raise_pending(self) -> None:
        """Run the handler of the first signal noted (which raises, for the CLI's stop signals)."""
        if self._pending:
            signum = self._pending[0]
            handler = self._handlers[signal.Signals(signum)]
            self._restore()
            handler(signum, None)

    def _restore(self) -> None:
        handlers, self._handlers = self._handlers, {}
        _reinstall(handlers)

    def __exit__(self, *exc_info: object) -> None:
        self._restore()


class RayExecutor(NodeExecutor):
    """Episodes on Ray: on the cluster at ``address`` (``auto``: the one this machine belongs to), or on a
    Ray instance started here when None (with ``num_cpus``: that many CPUs, else all). Each episode
    runner reserves ``cpus_per_episode`` CPUs of its node. ``model`` is how the runners build the
    language model of a model method on their nodes. A Ray that this executor started is shut down by
    :meth:`close`; one that was already running in this process (``ray.init`` by the caller) is left
    running.

    :raises RayUnavailable: when Ray is not installed, or ``cpus_per_episode`` is not positive.
    """

    def __init__(
        self,
        address: str | None = None,
        cpus_per_episode: float = 1.0,
        num_cpus: int | None = None,
        *,
        model: ModelDescription | None = None,
    ) -> None:
        super().__init__(model)
        ray_module()
        if cpus_per_episode <= 0:
            raise RayUnavailable(f"{cpus_per_episode:g} CPUs per episode", "give {ray_cpus_per_episode} above 0")
        self.address = address
        self.cpus_per_episode = cpus_per_episode
        self.num_cpus = num_cpus
        self._started_ray = False
        self._files: dict[str, str] = {}
        self._idle: list[Any] = []  # runners kept from an earlier run, ready for the next one

    def connect(self) -> None:
        """Join the cluster, or start a local Ray instance (once; later calls do nothing).

        :raises RayUnavailable: when Ray is not installed or the cluster cannot be reached.
        """
        ray = ray_module()
        if ray.is_initialized():
            return
        handlers = _python_signal_handlers()
        try:
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus if self.address is None else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            raise RayUnavailable(
                f"cannot start or join {where}: {exc}",
                "check {ray_address} (the head's host:port, or auto on a node of the cluster)",
            ) from None
        finally:
            _reinstall(handlers)
        self._started_ray = True
        log.info("ray: %s", "joined " + self.address if self.address else "started a local instance")

    def open(self, settings: RunSettings) -> None:
        """Connect, check that the cluster has a node with room for one episode, build the environment
        here (its tasks) and read the files that travel with the episodes.

        :raises RayUnavailable: for a model method without ``model`` (its description) or model settings, when
            Ray cannot be reached, when no node has ``cpus_per_episode`` CPUs, or when the files are too
            large to ship.
        :raises LearnactError: when the environment cannot be built (see :func:`learnact.envs.make_env`).
        """
        if self.lacks_model(settings):
            raise RayUnavailable(
                f"the method {settings.method} on Ray needs the run's model settings and how the nodes build the model",
                "give the RayExecutor a ModelDescription (the CLI does) and the run a ModelSettings",
            )
        self.tasks = make_env(settings.env).tasks()
        self._files = shipped_files(settings.env)
        self.connect()
        largest = max((node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]), default=0.0)
        if largest < self.cpus_per_episode:
            raise RayUnavailable(
                f"no node of the Ray cluster has {self.cpus_per_episode:g} CPUs for an episode "
                f"(the largest has {largest:g})",
                "lower {ray_cpus_per_episode} or add larger nodes",
            )
        self._settings = settings

    def close(self) -> None:
        """End the runners kept between runs (each removes its sandbox first), and Ray if started here."""
        self._settings = None
        _end_runners(self._idle)
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False

    def _dispatch(
        self, specs: Sequence[EpisodeSpec], workers: int, ledger: Ledger, model: NodeModel | None, on_record: OnRecord
    ) -> None:
        shipped = model.model_dump_json() if model is not None else ""
        _Dispatch(self, specs, workers, ledger, shipped).run(on_record)


class _Dispatch:
    """One run's runners and the episodes in flight: each runner holds at most one episode."""

    def __init__(
        self, executor: RayExecutor, specs: Sequence[EpisodeSpec], workers: int, ledger: Ledger, node_model: str
    ) -> None:
        self.executor = executor
        self.ledger = ledger
        self.node_model = node_model
        self.queue = deque(specs)
        self.size = min(workers, len(specs))
        self.runner_class = ray.remote(EpisodeRunner).options(
            num_cpus=executor.cpus_per_episode, max_restarts=0, max_task_retries=0, max_concurrency=2
        )
        self.files = ray.put(executor._files)  # once per run, fetched once per node
        self.types = {t.id: t.type for t in executor.tasks}
        self.starting: dict[Any, Any] = {}  # ready() reference → runner
        self.running: dict[Any, tuple[Any, EpisodeSpec]] = {}  # run() reference → runner, its episode
        self.runners: list[Any] = []  # every runner of this run that is alive

    def start_runner(self) -> None:
        runner = self.runner_class.remote()
        self.runners.append(runner)
        self.starting[runner.ready.remote()] = runner

    def give(self, runner: Any) -> None:
        """The next episode to ``runner``, or back to the executor's idle runners when none is left."""
        if self.queue:
            spec = self.queue.popleft()
            task_type = self.types.get(spec.task, "unknown")
            reference = runner.run.remote(spec.model_dump_json(), task_type, self.files, self.node_model)
            self.running[reference] = (runner, spec)
        else:
            self.runners.remove(runner)
            self.executor._idle.append(runner)

    def replace(self, runner: Any) -> None:
        """A runner that failed: killed, and another started when episodes are left."""
        self.runners.remove(runner)
        ray.kill(runner, no_restart=True)
        if self.queue:
            self.start_runner()

    def run(self, on_record: OnRecord) -> None:
        idle = self.executor._idle
        interrupted = False
        try:
            with _DeferredSignals() as signals:
                while idle and len(self.runners) < self.size:
                    runner = idle.pop()
                    self.runners.append(runner)
                    self.give(runner)
                while len(self.runners) < self.size:
                    self.start_runner()
                quiet_since = time.monotonic()
                while self.queue or self.running:
                    ready, _ = ray.wait([*self.starting, *self.running], num_returns=1, timeout=SIGNAL_POLL_S)
                    signals.raise_pending()
                    if not ready:
                        if not self.running and time.monotonic() - quiet_since >= PENDING_WARNING_S:
                            log.warning(
                                "no episode runner placed for %.0f s: the Ray cluster has no free %g CPUs",
                                time.monotonic() - quiet_since,
                                self.executor.cpus_per_episode,
                            )
                            quiet_since = time.monotonic()
                        continue
                    quiet_since = time.monotonic()
                    (done,) = ready
                    record = self._started(done) if done in self.starting else self._finished(done)
                    if record is not None:
                        on_record(record)
        except BaseException:
            interrupted = True
            self._stop()
            raise
        finally:
            unplaced = list(self.starting.values())  # no sandbox yet, and no episode left for them
            for runner in unplaced:
                ray.kill(runner, no_restart=True)
            placed = [runner for runner in self.runners if runner not in unplaced]
            if interrupted:  # a stopped runner refuses further episodes: every runner ends
                _end_runners([*placed, *idle])
                idle.clear()
            else:
                idle.extend(placed)

    def _started(self, reference: Any) -> EpisodeRecord | None:
        """A runner that is ready gets an episode; one that could not start (learnact missing on its
        node, its node lost) is replaced, and the episode it would have run is recorded as failed (so
        that a runner that can never start ends the run, episode by episode, rather than hanging it)."""
        runner = self.starting.pop(reference)
        try:
            log.debug("episode runner ready on %s", ray.get(reference))
        except RayError as exc:
            spec = self.queue.popleft() if self.queue else None
            self.replace(runner)
            if spec is not None:
                reason = f"its Ray episode runner could not start: {error_text(exc)}"
                return failed_record(spec, self.executor.task_type(spec.task), reason)
            return None
        self.give(runner)
        return None

    def _finished(self, reference: Any) -> EpisodeRecord:
        """The record of a finished episode, its model calls counted and logged first; the runner gets
        the next episode.

        :raises RunDirError: when the call log cannot be written.
        """
        runner, spec = self.running.pop(reference)
        try:
            outcome = self._outcome(reference, spec)
        except (RayError, ValidationError, StrayCalls) as exc:  # the runner died (killed, out of memory, its
            # node lost), or a bug in it
            log.warning("episode %s: its runner failed: %s", spec.task, exc)
            self.replace(runner)
            return failed_record(spec, self.executor.task_type(spec.task), f"its Ray worker failed: {error_text(exc)}")
        self.give(runner)
        if outcome.record is None:  # stopped: only by the driver, which is not waiting for it here
            return failed_record(spec, self.executor.task_type(spec.task), "its Ray worker stopped it")
        return outcome.record

    def _outcome(self, reference: Any, spec: EpisodeSpec) -> EpisodeOutcome:
        """What the runner sent back for ``spec`` (see :func:`checked_outcome`).

        :raises RayError: when the runner failed.
        :raises ValidationError: when what it sent is not an outcome.
        :raises StrayCalls: when it holds calls of another episode or model than ``spec``'s.
        :raises RunDirError: when the call log cannot be written.
        """
        return checked_outcome(ray.get(reference), spec, self.ledger)

    def _stop(self) -> None:
        """Stop the running episodes (they are dropped, the model calls they made are kept, as the local
        executor keeps them) and wait, boundedly, until they have."""
        for runner, _ in self.running.values():
            runner.stop.remote()
        if self.running:
            stopped, _ = ray.wait(list(self.running), num_returns=len(self.running), timeout=STOP_WAIT_S)
            for reference in stopped:
                try:
                    self._outcome(reference, self.running[reference][1])
                except (RayError, ValidationError, LearnactError) as exc:  # stopping goes on regardless
                    log.warning("the model calls of a stopped episode are not kept: %s", exc)
        self.running.clear()
        self.queue.clear()


def _end_runners(runners: list[Any]) -> None:
    """Let each runner remove its sandbox (boundedly: one that is gone does not answer), then end its
    process. Empties ``runners``."""
    closing = [runner.close.remote() for runner in runners]
    if closing:
        ray.wait(closing, num_returns=len(closing), timeout=CLOSE_WAIT_S)
    for runner in runners:
        ray.kill(runner, no_restart=True)
    runners.clear()
