"""Episodes on worker processes (`--executor processes`): the records and model calls of the threads, a
worker that dies or cannot start recorded and the run going on, one set of workers for every run of an
executor, and a worker that imports nothing a run does not use.

Every episode runs the real expert, or the act agent of the real OpenAI client against the scripted server
(tests/llm_server.py), through the real Docker sandbox, in real worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer
from typer.testing import CliRunner

from learnact.engine import EpisodeRecord, EvalConfig, RunSettings, run_evaluation
from learnact.engine.agents import call_code
from learnact.engine.commands.cli import app
from learnact.engine.llm import CallLog, ModelDescription, OpenAIBackbone
from learnact.engine.records import Method, ModelSettings
from learnact.engine.rundir import EPISODES
from learnact.engine.runs import process_executor
from learnact.engine.runs.process_executor import WORKER_MODULE, ProcessExecutor
from learnact.envs import EnvSpec, make_env, select_tasks
from learnact.sandbox import SandboxConfig

pytestmark = pytest.mark.usefixtures("sandbox_image")

BLOCKS = EnvSpec(name="pddl/blockworld")
# Imported by a worker only when its run uses them: the model client, the games, Ray, the local model,
# the planner's Python package (only its driver script is run), and the Docker SDK for another backend.
HEAVY = (
    "openai",
    "alfworld",
    "textworld",
    "ray",
    "llama_cpp",
    "up_fast_downward",
    "unified_planning",
    "scipy",
    "docker",
)


def settings(env: EnvSpec = BLOCKS, **changes: object) -> RunSettings:
    return RunSettings(env=env, sandbox=SandboxConfig(pool_size=1), **changes)


def tasks_of(env: EnvSpec, selection: str) -> tuple[str, ...]:
    return tuple(select_tasks(make_env(env), selection))


def records_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / EPISODES).read_text().splitlines()]


def played(record: EpisodeRecord | dict) -> tuple:
    """What an episode did, without its timings."""
    data = record if isinstance(record, dict) else record.model_dump(mode="json")
    steps = [(step["code"], step["observation"]) for step in data["steps"]]
    return data["task"], data["seed"], data["status"], data["success"], data["progress"], steps


def worker_pids() -> list[int]:
    """The worker processes this test process started and that are alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and WORKER_MODULE.encode() in command:
            found.append(int(entry.name))
    return found


def test_the_worker_imports_nothing_a_run_does_not_use() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {WORKER_MODULE}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert WORKER_MODULE in imported
    assert sorted(m for m in imported if m.split(".")[0] in HEAVY) == []


def test_processes_give_the_records_of_the_threads(tmp_path: Path) -> None:
    tasks = tasks_of(BLOCKS, "0-5")
    config = EvalConfig(run=settings(), tasks=tasks, workers=2)
    threads = run_evaluation(config, tmp_path / "threads")  # its own executor: threads, closed at the end
    with ProcessExecutor() as executor:
        processes = run_evaluation(config, tmp_path / "processes", executor=executor)
    assert processes.model_dump(exclude={"results"}) == threads.model_dump(exclude={"results"})
    by_task = {r["task"]: played(r) for r in records_of(tmp_path / "threads")}
    assert {r["task"]: played(r) for r in records_of(tmp_path / "processes")} == by_task
    assert worker_pids() == []  # closed: every worker ended


def test_one_set_of_workers_serves_every_run_of_the_executor_even_of_another_domain(tmp_path: Path) -> None:
    gripper = EnvSpec(name="pddl/gripper")
    with ProcessExecutor() as executor:
        first = run_evaluation(EvalConfig(run=settings(), tasks=tasks_of(BLOCKS, "0-3"), workers=2), tmp_path / "a",
                               executor=executor)  # fmt: skip
        workers = sorted(worker_pids())
        second = run_evaluation(EvalConfig(run=settings(gripper), tasks=tasks_of(gripper, "0-3"), workers=2),
                                tmp_path / "b", executor=executor)  # fmt: skip
        assert sorted(worker_pids()) == workers and len(workers) == 2
    assert first.success_rate == second.success_rate == 1.0
    assert {r["type"] for r in records_of(tmp_path / "b")} == {"gripper"}


def test_an_episode_whose_worker_dies_is_a_recorded_error_the_others_go_on_and_a_rerun_retries_it(
    tmp_path: Path,
) -> None:
    tasks = tasks_of(BLOCKS, "0-5")
    config = EvalConfig(run=settings(), tasks=tasks, workers=2)
    killed: list[int] = []

    def kill_one_worker(record: EpisodeRecord) -> None:
        if not killed:  # four episodes are still queued: both workers hold one
            killed.append(worker_pids()[0])
            os.kill(killed[0], signal.SIGKILL)

    with ProcessExecutor() as executor:
        summary = run_evaluation(config, tmp_path, on_episode=kill_one_worker, executor=executor)
        assert killed[0] not in worker_pids() and len(worker_pids()) == 2  # replaced
    (error,) = [r for r in records_of(tmp_path) if r["status"] == "error"]
    assert error["error"] == "its worker process ended: it was killed by signal 9"
    assert summary.episodes == 6 and summary.errors == 1
    assert sum(r.success for r in summary.results) == 5

    with ProcessExecutor() as executor:
        again: list[str] = []
        summary = run_evaluation(config, tmp_path, on_episode=lambda r: again.append(r.task), executor=executor)
    assert again == [error["task"]] and summary.errors == 0 and summary.success_rate == 1.0


def test_a_worker_that_cannot_start_records_failed_episodes_and_the_run_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_executor, "WORKER_MODULE", "learnact.engine.no_such_worker")
    with ProcessExecutor() as executor:
        summary = run_evaluation(EvalConfig(run=settings(), tasks=tasks_of(BLOCKS, "0-2"), workers=2), tmp_path,
                                 executor=executor)  # fmt: skip
    assert summary.errors == 3
    assert {r["error"] for r in records_of(tmp_path)} == {"its worker process could not start: it exited with status 1"}


class ExpertModel:
    """A responder for the scripted server that plays the expert's plan of the task a prompt is about (its
    goal, the one written last: a demonstration's comes before), one line per request of that task."""

    def __init__(self, tasks: tuple[str, ...]) -> None:
        env = make_env(BLOCKS)
        self.plans: dict[str, tuple[str, list[str]]] = {}
        for task in tasks:
            goal = env.reset(task).goal
            self.plans[goal] = (task, [call_code(name, args) for name, args in env.expert_calls()])
        self.asked: dict[str, int] = {}

    def __call__(self, body: dict) -> Answer:
        prompt = "\n".join(message["content"] for message in body["messages"])
        task, plan = self.plans[max(self.plans, key=prompt.rfind)]
        step = self.asked.get(task, 0)
        self.asked[task] = step + 1
        return Answer(plan[step] if step < len(plan) else "Pickup('b9')")


def test_act_on_processes_gives_the_records_and_calls_of_the_threads(tmp_path: Path) -> None:
    tasks = tasks_of(BLOCKS, "0-1")
    with ScriptedServer(responder=ExpertModel(tasks)) as server:
        identity = OpenAIBackbone("m", base_url=server.base_url).identity
        model = ModelSettings(model="m", base_url=server.base_url, backbone=identity)
        run = RunSettings(env=BLOCKS, method=Method.act, max_steps=10, sandbox=SandboxConfig(pool_size=1), model=model)
        config = EvalConfig(run=run, tasks=tasks, workers=2)
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=0)
        threads = run_evaluation(config, tmp_path / "threads", backbone=backbone)
        asked_by_threads = len(server.received)
        server.responder = ExpertModel(tasks)
        description = ModelDescription(model="m", base_url=server.base_url, cache=False, timeout_s=5.0, max_retries=0)
        with ProcessExecutor(model=description) as executor:
            processes = run_evaluation(config, tmp_path / "processes", backbone=backbone, executor=executor)
        assert len(server.received) == 2 * asked_by_threads
    assert processes == threads and threads.success_rate == 1.0 and threads.usage is not None
    assert threads.usage.calls == asked_by_threads == 2 + 4
    assert {r["task"]: played(r) for r in records_of(tmp_path / "processes")} == {
        r["task"]: played(r) for r in records_of(tmp_path / "threads")
    }

    def calls(out: Path) -> dict[str, list[str]]:
        """Each episode's model calls in order, less their start times and latencies."""
        by_episode: dict[str, list[str]] = {}
        for call in CallLog(out).read():
            by_episode.setdefault(call.episode, []).append(call.model_dump_json(exclude={"started", "latency_s"}))
        return by_episode

    assert calls(tmp_path / "processes") == calls(tmp_path / "threads")


def test_eval_runs_the_expert_on_processes_by_default_and_workers_on_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["-vv", "eval", "--env", "pddl/blockworld", "--tasks", "0-3", "--workers", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.count("worker process") >= 2 and "ready in" in result.stderr
    assert len(records_of(out)) == 4


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_workers_of_a_killed_command_end_by_themselves_and_remove_their_sandboxes(tmp_path: Path) -> None:
    from learnact.sandbox.config import CONTAINER_LABEL
    from learnact.sandbox.docker_backend import connect

    out = tmp_path / "run"
    killed = subprocess.Popen(
        [sys.executable, "-m", "learnact.engine.commands.cli", "eval", "--env", "pddl/blockworld", "--tasks", "0-9",
         "--workers", "2", "--executor", "processes", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / EPISODES).exists() or not (out / EPISODES).read_text():
        assert killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    workers = children_of(killed.pid)
    assert len(workers) == 2
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    deadline = time.monotonic() + 60  # the episode in progress stops at its next step: then each worker exits
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived its command"
        time.sleep(0.1)
    api = connect()
    try:
        for pid in workers:
            assert api.containers(all=True, filters={"label": f"{CONTAINER_LABEL}={pid}"}) == []
    finally:
        api.close()
