"""A worker process of the local executor: ``python -m learnact.engine.runs.process_worker``.

Why a process: the episodes of one interpreter share its lock, so threads leave most cores idle (issue
17: 16 threads keep 4.5 of 16 cores busy). Why this entry point and not :mod:`multiprocessing`: a fresh
interpreter started by ``subprocess`` (``posix_spawn``/``vfork``, never a ``fork`` of the threaded driver)
that imports only this module and what a run uses. ``multiprocessing``'s ``spawn`` would import the
driver's ``__main__`` (the whole command line) in every worker and pickle what crosses its pipes.

The worker holds one :class:`EpisodeRunner` (environment, sandbox with its warm pool, the run's model) for
all the episodes it is sent. It speaks JSON lines: on stdin a :class:`WorkerOrder` each (an episode to run,
or stop), on its private stdout first a :class:`WorkerReady`, then one :class:`EpisodeOutcome` per
episode, in order. Its log records go to stderr as :class:`WorkerLog` lines, which the driver logs; anything
else it or a library prints goes to stderr too, and the driver copies it to its own. The end of stdin (the driver closed
it, or died) stops the episode in progress and ends the worker once its sandbox is removed. Ctrl-C reaches
the whole process group: the worker ignores it, its driver decides and sends ``stop``.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import signal
import sys
import threading
from typing import Annotated, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field

from learnact.engine.records import EpisodeSpec
from learnact.engine.runs.episode_runner import EpisodeRunner, NodeModel

log = logging.getLogger(__name__)


class RunOrder(BaseModel):
    """Run this episode; ``ahead`` is how many more the driver expects to send this worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["run"] = "run"
    spec: EpisodeSpec
    task_type: str
    model: NodeModel | None = None
    ahead: int = Field(ge=0)


class StopOrder(BaseModel):
    """End the episode in progress at its next step boundary and refuse later ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["stop"] = "stop"


class WorkerOrder(BaseModel):
    """One line the driver writes to a worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: Annotated[RunOrder | StopOrder, Field(discriminator="op")]


class WorkerReady(BaseModel):
    """The worker's first line: it has started and waits for episodes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ready: Literal[True] = True
    pid: int


class WorkerLog(BaseModel):
    """A log record of the worker, a line on its stderr: the driver logs it through its own handlers (its
    level, its terminal's format, untrusted text made visible), as if its own thread had logged it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    level: int
    name: str = Field(pattern=r"^learnact(\.|$)")
    message: str


class _ToDriver(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = WorkerLog(level=record.levelno, name=record.name, message=record.getMessage()).model_dump_json()
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never end the worker
            self.handleError(record)


def _read_orders(stdin: TextIO, runner: EpisodeRunner, orders: queue.SimpleQueue[RunOrder | None]) -> None:
    """Hand each episode to the main thread and act on ``stop`` at once; at the end of stdin, stop."""
    for line in stdin:
        order = WorkerOrder.model_validate_json(line).order
        if isinstance(order, StopOrder):
            runner.stop()
        else:
            orders.put(order)
    runner.stop()
    orders.put(None)


def serve(stdin: TextIO, protocol: TextIO) -> None:
    """Run the episodes ordered on ``stdin``, each outcome a line on ``protocol``, until stdin ends."""
    runner = EpisodeRunner()
    orders: queue.SimpleQueue[RunOrder | None] = queue.SimpleQueue()
    threading.Thread(target=_read_orders, args=(stdin, runner, orders), name="orders", daemon=True).start()
    protocol.write(WorkerReady(pid=os.getpid()).model_dump_json() + "\n")
    protocol.flush()
    try:
        while (order := orders.get()) is not None:
            model_json = order.model.model_dump_json() if order.model is not None else ""
            outcome = runner.run(order.spec.model_dump_json(), order.task_type, {}, model_json, ahead=order.ahead)
            protocol.write(outcome + "\n")
            protocol.flush()
    finally:
        runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a worker process of learnact's local executor")
    parser.add_argument("--log-level", type=int, default=logging.WARNING)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # prints, and the planner's and sandboxes' output
    logging.getLogger("learnact").addHandler(_ToDriver())
    logging.getLogger("learnact").setLevel(args.log_level)
    serve(sys.stdin, protocol)


if __name__ == "__main__":
    main()
