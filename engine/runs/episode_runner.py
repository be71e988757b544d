"""An episode runner: what a worker outside the driver's process holds and does, shared by Ray's actors
(``engine/runs/ray_executor.py``) and the local worker processes (``engine/runs/process_worker.py``), and the
driver's side that both executors share (:class:`NodeExecutor`).

A runner keeps one environment, one sandbox and the run's model for all the episodes it is sent (building
them costs more than an expert episode), rebuilding them only when the run settings change. It takes an
:class:`EpisodeSpec` as JSON and gives back an :class:`EpisodeOutcome` as JSON: the record and every model
call the episode made, which the driver checks (:func:`checked_outcome`) before it counts or writes them.
The model is built from a :class:`ModelDescription` in :meth:`EpisodeRunner._model`, the one place a worker
builds it; the API key is read from the worker's environment, never sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from learnact.actions.errors import LearnactError
from learnact.engine.agents import method_spec
from learnact.engine.llm import (
    Backbone,
    CallRecord,
    Ledger,
    ModelDescription,
    Price,
    PriceTable,
    RecordingBackbone,
    make_backbone,
)
from learnact.engine.records import EpisodeRecord, EpisodeSpec, EpisodeStatus, ModelSettings, RunSettings
from learnact.engine.runs.episode import EpisodeInterrupted, error_text, run_episode
from learnact.engine.runs.executor import Executor, OnRecord, Worker, close_quietly, failed_record
from learnact.envs import EnvSpec

log = logging.getLogger(__name__)


class NodeModel(BaseModel):
    """What a runner builds the run's model from: its description, and the driver's prices, so that the cost of
    each call and the episode's usage are what the local executor would record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: ModelDescription
    prices: dict[str, Price]


def node_model(settings: RunSettings, description: ModelDescription | None, ledger: Ledger) -> NodeModel | None:
    """What a runner builds ``settings``' model from (the description and the driver's ``ledger`` prices); None
    for a method that uses no model or a run given no description."""
    if not method_spec(settings.method).uses_model or description is None:
        return None
    return NodeModel(description=description, prices=ledger.prices.prices)


class NodeExecutor(Executor):
    """An executor whose episodes run in runners outside this process, each building the run's model from
    ``model`` (its description): the check that a model method can be run so, and the driver's side of a run.
    """

    def __init__(self, model: ModelDescription | None = None) -> None:
        super().__init__()
        self.model = model
        self._settings: RunSettings | None = None  # those opened, None while closed

    def lacks_model(self, settings: RunSettings) -> bool:
        """Whether ``settings``' method uses a model that the runners cannot build: no description of it, or
        no model settings in the run."""
        return method_spec(settings.method).uses_model and (self.model is None or settings.model is None)

    def run(
        self, specs: Sequence[EpisodeSpec], workers: int, on_record: OnRecord, backbone: Backbone | None = None
    ) -> None:
        """See :meth:`Executor.run`: up to ``workers`` runners, one episode each at a time. Runners left from an
        earlier run of this executor are used first; they stay for the next run unless it is interrupted.

        ``backbone`` is the driver's: its ledger (a :class:`RecordingBackbone`'s) counts and logs the calls the
        episodes made in the runners; it is never called.

        :raises RuntimeError: when the executor was not opened.
        :raises RunDirError: when the ledger's call log cannot be written.
        """
        if self._settings is None:
            raise RuntimeError("open the executor before running episodes")
        ledger = backbone.ledger if isinstance(backbone, RecordingBackbone) else Ledger()
        if specs:
            self._dispatch(specs, workers, ledger, node_model(self._settings, self.model, ledger), on_record)

    @abstractmethod
    def _dispatch(
        self, specs: Sequence[EpisodeSpec], workers: int, ledger: Ledger, model: NodeModel | None, on_record: OnRecord
    ) -> None:
        """Run ``specs`` as :meth:`run` says, the runners building ``model`` and ``ledger`` counting their calls."""


class EpisodeOutcome(BaseModel):
    """What a runner sends back for one episode: its record (None: the run was stopped before it ended)
    and every model call it made, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record: EpisodeRecord | None
    calls: tuple[CallRecord, ...] = ()


class StrayCalls(LearnactError):
    """A runner sent back model calls of another episode or another model than the episode's."""


def local_env(env: EnvSpec, files: dict[str, str], folder: Path) -> EnvSpec:
    """``env`` with its shipped files written under ``folder`` and its paths pointing there. Each file
    keeps its name (a problem's name is its task id), in a subfolder of its own."""
    if not files:
        return env
    local: list[str] = []
    for index, (path, text) in enumerate(files.items()):
        target = folder / str(index) / Path(path).name
        target.parent.mkdir(parents=True)
        target.write_text(text, encoding="utf-8")
        local.append(str(target))
    return env.model_copy(update={"pddl_domain": local[0], "pddl_problems": tuple(local[1:])})


class EpisodeRunner:
    """One environment and one sandbox (and the run's model, for a model method), running the episodes
    sent to it one at a time, kept from one episode to the next while their run settings stay the same (a
    runner may serve several runs of one executor). ``stop`` and ``close`` come on a second thread while
    ``run`` runs."""

    def __init__(self) -> None:
        self._settings_json = ""  # the run settings the worker and the shipped files are for
        self._local: RunSettings | None = None  # those settings, with the shipped files' paths on this node
        self._folder = Path(tempfile.mkdtemp(prefix="learnact-episodes-"))
        self._worker: Worker | None = None
        self._model_json = ""  # the model settings and NodeModel the backbone was built from
        self._backbone: Backbone | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def ready(self) -> str:
        """Where the runner landed (for the driver's log)."""
        return f"{socket.gethostname()} pid {os.getpid()}"

    def run(
        self, spec_json: str, task_type: str, files: dict[str, str], model_json: str, ahead: int | None = None
    ) -> str:
        """Run one episode and return its :class:`EpisodeOutcome` as JSON; an episode that cannot start
        (no sandbox, no model on this node) is recorded as such (:attr:`EpisodeStatus.error`), like one that fails
        on its way; one stopped by :meth:`stop` has no record, only the calls it made. ``files`` are the
        run's shipped files, ``model_json`` its :class:`NodeModel` (empty for the expert); ``ahead``, when
        known, how many more episodes this runner expects after this one (its warm pool starts no more).

        :raises pydantic.ValidationError: for a spec or a model that is not one (a bug of the driver).
        """
        spec = EpisodeSpec.model_validate_json(spec_json)
        if self._stop.is_set():
            return EpisodeOutcome(record=None).model_dump_json()
        settings_json = spec.run.model_dump_json()
        if settings_json != self._settings_json or self._local is None:
            self._drop_worker()
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder.mkdir()
            self._local = spec.run.model_copy(update={"env": local_env(spec.run.env, files, self._folder)})
            self._settings_json = settings_json
        worker = self._worker
        if worker is None:
            try:
                worker = Worker(self._local)
            except Exception as exc:  # no Docker engine on this node, the sandbox image missing, ...
                return EpisodeOutcome(record=failed_record(spec, task_type, error_text(exc))).model_dump_json()
            with self._lock:
                self._worker = worker
        if ahead is not None:
            worker.sandbox.expect(1 + ahead)
        calls: list[CallRecord] = []
        recording: RecordingBackbone | None = None
        if method_spec(spec.run.method).uses_model and spec.run.model is not None:
            node_model = NodeModel.model_validate_json(model_json)
            try:
                backbone = self._model(spec.run.model, node_model)
            except LearnactError as exc:  # no key on this node, another model file, the local extra missing
                reason = f"the model could not be built on {socket.gethostname()}: {error_text(exc)}"
                return EpisodeOutcome(record=failed_record(spec, task_type, reason)).model_dump_json()
            ledger = Ledger(PriceTable(node_model.prices, replace=True), sink=calls.append)
            recording = RecordingBackbone(backbone, ledger)
        # A library's prints go to stderr: Ray copies a runner's stdout into the driver's, where --json
        # keeps the summary alone.
        try:
            with contextlib.redirect_stdout(sys.stderr):
                record = run_episode(
                    spec, env=worker.env, sandbox=worker.sandbox, should_stop=self._stop.is_set, backbone=recording
                )
        except EpisodeInterrupted:
            return EpisodeOutcome(record=None, calls=tuple(calls)).model_dump_json()
        if record.status is EpisodeStatus.error:  # its sandbox or environment may be broken: start afresh
            self._drop_worker()
        return EpisodeOutcome(record=record, calls=tuple(calls)).model_dump_json()

    def _model(self, settings: ModelSettings, node_model: NodeModel) -> Backbone:
        """The run's model on this node, built for the first model episode of these settings and kept.

        :raises LearnactError: when it cannot be built here (see :func:`make_backbone`).
        """
        key = settings.model_dump_json() + node_model.model_dump_json()
        if key != self._model_json or self._backbone is None:
            self._drop_model()
            self._backbone = make_backbone(node_model.description, settings.backbone)
            self._model_json = key
            log.debug("episode runner: model %s built", self._backbone.identity)
        return self._backbone

    def stop(self) -> None:
        """End the running episode at its next step boundary (a planner and a model call now); refuse later
        ones."""
        self._stop.set()
        with self._lock:
            worker, backbone = self._worker, self._backbone
        if worker is not None:
            worker.env.interrupt()
        if backbone is not None:  # a model call in flight ends now, not when a hung server answers
            backbone.abort()

    def close(self) -> None:
        """Remove the sandbox's containers and the shipped files, and close the model."""
        self._drop_worker()
        self._drop_model()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _drop_model(self) -> None:
        backbone, self._backbone, self._model_json = self._backbone, None, ""
        if backbone is not None:
            try:
                backbone.close()
            except Exception as exc:  # closing must never hide what the runner was doing
                log.warning("could not close the model on this node: %s", exc)

    def _drop_worker(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            close_quietly(worker)


def checked_outcome(text: str | bytes, spec: EpisodeSpec, ledger: Ledger) -> EpisodeOutcome:
    """What a runner sent back for ``spec``, read and checked here; its calls go to ``ledger``.

    :raises ValidationError: when ``text`` is not an outcome.
    :raises StrayCalls: when it holds calls of another episode or model than ``spec``'s, or another record.
    :raises RunDirError: when the ledger's call log cannot be written.
    """
    outcome = EpisodeOutcome.model_validate_json(text)
    model = spec.run.model
    for call in outcome.calls:
        if call.episode != spec.key or (model is not None and model.backbone not in (None, call.backbone)):
            raise StrayCalls(f"the runner of {spec.key} sent a call of {call.episode} by {call.backbone}")
    if outcome.record is not None and (outcome.record.task, outcome.record.seed) != (spec.task, spec.seed):
        raise StrayCalls(f"the runner of {spec.key} sent the record of {outcome.record.task}")
    for call in outcome.calls:
        ledger.record(call)
    return outcome
