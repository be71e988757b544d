"""Episodes on Ray (`--executor ray`): the same records as the local executor, resume, failures recorded;
model methods with the model built on the node, the same call log, the key never shipped.

One local Ray instance (2 CPUs) serves the whole module; every episode runs the real expert, or an agent
of the real OpenAI client against the scripted server (tests/llm_server.py), through the real Docker
sandbox on an episode runner of that instance.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer, Status
from typer.testing import CliRunner

from learnact.engine import EpisodeRecord, EvalConfig, RunSettings, run_evaluation
from learnact.engine.agents import call_code
from learnact.engine.commands.cli import app
from learnact.engine.llm import CALLS, CachedBackbone, CallLog, ModelDescription, OpenAIBackbone, ResponseCache
from learnact.engine.records import Method, ModelSettings
from learnact.engine.rundir import EPISODES
from learnact.engine.runs.executor import LocalExecutor
from learnact.envs import EnvSpec, make_env, select_tasks
from learnact.sandbox import SandboxConfig
from learnact.sandbox.config import CONTAINER_LABEL
from learnact.sandbox.docker_backend import connect

if os.environ.get("CI") == "true":  # CI installs the ray extra: its absence is a failure there
    import ray
else:
    ray = pytest.importorskip("ray")

from learnact.engine.runs.ray_executor import RayExecutor, RayUnavailable  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("sandbox_image")]

BLOCKS = EnvSpec(name="pddl/blockworld")
DATA = Path(__file__).parent / "data/pddl"
# Two blocks, each to be on the other: no plan exists (the planner says so in well under a second).
UNSOLVABLE = """(define (problem cycle) (:domain blocksworld-4ops)
(:objects b1 b2)
(:init (arm-empty) (on-table b1) (on-table b2) (clear b1) (clear b2))
(:goal (and (on b1 b2) (on b2 b1))))
"""


KEY_VARIABLE = "LEARNACT_RAY_TEST_KEY"
KEY = f"sk-ray-test-{secrets.token_hex(16)}"  # the API key the nodes hold in their environment


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """A Ray instance of 2 CPUs for the module; executors find it running and leave it so. Its nodes (this
    machine) have the model's key in their environment, as a cluster's nodes would."""
    before = os.environ.get(KEY_VARIABLE)
    os.environ[KEY_VARIABLE] = KEY
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, logging_level="WARNING")
    yield
    ray.shutdown()
    if before is None:
        del os.environ[KEY_VARIABLE]
    else:
        os.environ[KEY_VARIABLE] = before


def settings(env: EnvSpec = BLOCKS, **sandbox: object) -> RunSettings:
    return RunSettings(env=env, sandbox=SandboxConfig(pool_size=1, **sandbox))  # type: ignore[arg-type]


def tasks_of(env: EnvSpec, selection: str) -> list[str]:
    return select_tasks(make_env(env), selection)


def recorded(out: Path) -> list[EpisodeRecord]:
    return [EpisodeRecord.model_validate_json(line) for line in (out / EPISODES).read_text().splitlines()]


def what_happened(record: EpisodeRecord) -> tuple:
    """Everything an episode did, less its timings: its steps, and its model calls' tokens and cost."""
    steps = [
        (s.code, s.observation, s.result.status if s.result else None, s.result.calls if s.result else None)
        for s in record.steps
    ]
    outcome = (record.status, record.success, record.progress, record.ended, record.usage)
    return (record.task, record.type, record.env, *outcome, steps)


def runner_pids() -> set[int]:
    """The processes of this Ray instance's episode runners alive now."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::EpisodeRunner"):
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def gone(pids: set[int], within_s: float = 30.0) -> bool:
    """Whether none of ``pids`` is an episode runner any more (``ray.kill`` returns before the process ends)."""
    deadline = time.monotonic() + within_s
    while runner_pids() & pids:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def containers_of(pids: set[int]) -> list[str]:
    api = connect()
    try:
        found = api.containers(all=True, filters={"label": CONTAINER_LABEL})
    finally:
        api.close()
    return [c["Id"] for c in found if c.get("Labels", {}).get(CONTAINER_LABEL, "") in {str(p) for p in pids}]


def test_ray_gives_the_records_of_the_local_executor_and_leaves_no_sandbox_behind(tmp_path: Path) -> None:
    config = EvalConfig(run=settings(), tasks=tasks_of(BLOCKS, "0-5"), workers=2)
    local = run_evaluation(config, tmp_path / "local")
    runners: set[int] = set()
    with RayExecutor() as executor:
        on_ray = run_evaluation(
            config, tmp_path / "ray", executor=executor, on_episode=lambda _: runners.update(runner_pids())
        )
    assert on_ray == local
    assert on_ray.success_rate == 1.0 and on_ray.episodes == 6
    by_task = {r.task: what_happened(r) for r in recorded(tmp_path / "local")}
    assert {r.task: what_happened(r) for r in recorded(tmp_path / "ray")} == by_task
    assert all(record.steps for record in recorded(tmp_path / "ray"))
    assert runners and gone(runners)  # the runners ran, and are gone
    assert containers_of(runners) == []


def test_the_runners_of_one_executor_serve_its_next_run_with_other_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gripper = EnvSpec(name="pddl/gripper")
    started: list[list[str]] = []  # per run, the runners that became ready during it (each logs where it runs)
    seen: set[int] = set()
    caplog.set_level(logging.DEBUG, logger="learnact.engine.runs.ray_executor")
    with RayExecutor() as executor:
        for env in (BLOCKS, gripper):
            caplog.clear()
            config = EvalConfig(run=settings(env), tasks=tasks_of(env, "0-2"), workers=2)
            summary = run_evaluation(
                config, tmp_path / env.name, executor=executor, on_episode=lambda _: seen.update(runner_pids())
            )
            started.append(
                [r.getMessage() for r in caplog.records if r.getMessage().startswith("episode runner ready")]
            )
            assert summary.success_rate == 1.0 and summary.episodes == 3
            assert {r.env for r in recorded(tmp_path / env.name)} == {env.name}
    assert len(started[0]) == 2 and started[1] == []  # no runner started for the second run
    assert seen and gone(seen)


def test_external_pddl_files_travel_with_the_episodes(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    shutil.copytree(DATA / "tyreworld", folder / "problems")
    shutil.copy(DATA / "tyreworld.pddl", folder / "domain.pddl")
    env = EnvSpec(name="pddl", pddl_domain=str(folder / "domain.pddl"), pddl_problems=(str(folder / "problems"),))
    tasks = tasks_of(env, "0-1")
    local: list[EpisodeRecord] = []
    with LocalExecutor() as executor:
        executor.open(settings(env))
        executor.run([EvalConfig(run=settings(env), tasks=tasks).episode(t) for t in tasks], 1, local.append)
    on_ray: list[EpisodeRecord] = []
    with RayExecutor() as executor:
        executor.open(settings(env))  # the files are read here ...
        shutil.rmtree(folder)  # ... so that the runners never need this path
        executor.run([EvalConfig(run=settings(env), tasks=tasks).episode(t) for t in tasks], 2, on_ray.append)
    assert sorted(map(what_happened, on_ray)) == sorted(map(what_happened, local))
    assert all(r.success for r in on_ray) and len(on_ray) == 2


def test_an_interrupted_run_keeps_what_finished_and_a_rerun_runs_only_the_rest(tmp_path: Path) -> None:
    config = EvalConfig(run=settings(), tasks=tasks_of(BLOCKS, "0-4"), workers=2)

    def interrupt(record: EpisodeRecord) -> None:
        raise KeyboardInterrupt

    with RayExecutor() as executor, pytest.raises(KeyboardInterrupt):
        run_evaluation(config, tmp_path, executor=executor, on_episode=interrupt)
    kept = {r.task for r in recorded(tmp_path)}
    assert 1 <= len(kept) < 5
    ran: list[str] = []
    with RayExecutor() as executor:
        summary = run_evaluation(config, tmp_path, executor=executor, on_episode=lambda r: ran.append(r.task))
    assert sorted(ran) == sorted(set(config.tasks) - kept)  # finished episodes are never resubmitted
    assert summary.episodes == 5 and summary.success_rate == 1.0
    assert len(recorded(tmp_path)) == 5


def test_a_task_that_raises_in_the_worker_is_a_recorded_failure_that_a_rerun_retries(tmp_path: Path) -> None:
    problems = tmp_path / "problems"
    problems.mkdir()
    (problems / "cycle.pddl").write_text(UNSOLVABLE)
    shutil.copy(DATA / "blockworld/problem1.pddl", problems / "problem1.pddl")
    env = EnvSpec(name="pddl", pddl_domain=str(DATA / "blockworld.pddl"), pddl_problems=(str(problems),))
    config = EvalConfig(run=settings(env), tasks=("cycle", "problem1"), workers=2)
    with RayExecutor() as executor:
        summary = run_evaluation(config, tmp_path / "run", executor=executor)
    rows = {r.task: r for r in summary.results}
    assert rows["cycle"].status == "error" and rows["cycle"].success is False and rows["cycle"].error
    assert rows["problem1"].status == "finished" and rows["problem1"].success
    ran: list[str] = []
    with RayExecutor() as executor:
        run_evaluation(config, tmp_path / "run", executor=executor, on_episode=lambda r: ran.append(r.task))
    assert ran == ["cycle"]


def test_a_node_whose_sandbox_cannot_start_records_failed_episodes_and_the_run_ends(tmp_path: Path) -> None:
    # The driver never starts a sandbox with Ray: each runner finds it cannot, as on a node without Docker.
    run = settings(image="learnact-sandbox-absent:none")
    config = EvalConfig(run=run, tasks=tasks_of(BLOCKS, "0-2"), workers=2)
    with RayExecutor() as executor:
        summary = run_evaluation(config, tmp_path, executor=executor)
    assert summary.episodes == 3 and summary.errors == 3
    assert all("learnact-sandbox-absent:none" in (r.error or "") for r in summary.results)


def test_an_episode_whose_runner_dies_is_a_recorded_failure_and_the_run_goes_on(tmp_path: Path) -> None:
    config = EvalConfig(run=settings(), tasks=tasks_of(BLOCKS, "0,9,1,2"), workers=1)
    killed: list[int] = []

    def kill_the_runner(record: EpisodeRecord) -> None:
        if not killed:  # the runner already holds the next episode (blockworld-10: 26 steps)
            killed.extend(runner_pids())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    with RayExecutor() as executor:
        summary = run_evaluation(config, tmp_path, executor=executor, on_episode=kill_the_runner)
    assert killed
    statuses = {r.task: r.status for r in summary.results}
    assert statuses == {"blockworld-01": "finished", "blockworld-10": "error", "blockworld-02": "finished",
                        "blockworld-03": "finished"}  # fmt: skip
    assert "worker" in (next(r.error for r in summary.results if r.status == "error") or "").lower()
    with RayExecutor() as executor:
        again = run_evaluation(config, tmp_path, executor=executor)
    assert again.errors == 0 and again.success_rate == 1.0


# --- model methods --------------------------------------------------------------------------------

MODEL_TASKS = ("blockworld-01", "blockworld-02")


class ExpertModel:
    """A responder for the scripted server that plays the expert's plan of the task a prompt is about (its
    goal, the one written last: a demonstration's comes before), one line per request of that task (act),
    or the whole plan as a program (code_as_policy); ``failing`` tasks get a server error."""

    def __init__(self, program: bool = False, failing: tuple[str, ...] = ()) -> None:
        env = make_env(BLOCKS)
        self.plans: dict[str, tuple[str, list[str]]] = {}
        for task in MODEL_TASKS:
            goal = env.reset(task).goal
            self.plans[goal] = (task, [call_code(name, args) for name, args in env.expert_calls()])
        self.program, self.failing = program, failing
        self.asked: dict[str, int] = {}

    def __call__(self, body: dict) -> Answer | Status:
        prompt = "\n".join(message["content"] for message in body["messages"])
        goal = max(self.plans, key=prompt.rfind)
        task, plan = self.plans[goal]
        if task in self.failing:
            return Status(500)
        if self.program:
            return Answer("def solve():\n" + "".join(f"    {line}\n" for line in plan) + "\n\nsolve()\n")
        step = self.asked.get(task, 0)
        self.asked[task] = step + 1
        return Answer(plan[step] if step < len(plan) else "Pickup('b9')")


def model_settings(server: ScriptedServer, method: Method) -> RunSettings:
    identity = OpenAIBackbone("m", base_url=server.base_url).identity
    model = ModelSettings(model="m", base_url=server.base_url, backbone=identity)
    return RunSettings(env=BLOCKS, method=method, max_steps=10, sandbox=SandboxConfig(pool_size=1), model=model)


def on_the_driver(server: ScriptedServer, cache: Path) -> CachedBackbone:
    """The backbone the driver opens (as the CLI does): the local executor calls it, Ray's never does."""
    backbone = OpenAIBackbone("m", base_url=server.base_url, api_key=KEY, timeout_s=5.0, max_retries=0)
    return CachedBackbone(backbone, ResponseCache(cache))


def description(server: ScriptedServer, cache: Path) -> ModelDescription:
    """How the nodes build the run's model: the key's variable, never the key."""
    return ModelDescription(
        model="m", base_url=server.base_url, api_key_env=KEY_VARIABLE, cache_dir=str(cache), timeout_s=5.0,
        max_retries=0,
    )  # fmt: skip


def calls_of(out: Path) -> list[tuple]:
    """Every model call of the run, in order within each episode, less its start time and latency."""
    return sorted(
        (record.episode, index, record.model_dump_json(exclude={"started", "latency_s"}))
        for index, record in enumerate(CallLog(out).read())
    )


def in_order(calls: list[tuple]) -> list[tuple]:
    """The calls, numbered within each episode rather than in the file (episodes run in parallel)."""
    by_episode: dict[str, list[str]] = {}
    for episode, _, call in calls:
        by_episode.setdefault(episode, []).append(call)
    return sorted(by_episode.items())


def test_act_on_ray_gives_the_records_and_calls_of_the_local_executor_and_a_rerun_is_served_by_the_cache(
    tmp_path: Path,
) -> None:
    with ScriptedServer(responder=ExpertModel()) as server:
        config = EvalConfig(run=model_settings(server, Method.act), tasks=MODEL_TASKS, workers=2)
        local = run_evaluation(config, tmp_path / "local", backbone=on_the_driver(server, tmp_path / "local-cache"))
        asked_locally = len(server.received)
        server.responder = ExpertModel()
        with RayExecutor(model=description(server, tmp_path / "node-cache")) as executor:
            driver = on_the_driver(server, tmp_path / "driver-cache")
            on_ray = run_evaluation(config, tmp_path / "ray", backbone=driver, executor=executor)
            asked_on_ray = len(server.received) - asked_locally
            again = run_evaluation(config, tmp_path / "rerun", backbone=driver, executor=executor)
        assert len(server.received) == asked_locally + asked_on_ray  # the rerun asked nothing
        assert len(driver.cache) == 0  # the driver's backbone was never called: the nodes' was
        ray_requests = server.received[asked_locally:]
    assert on_ray == local and local.success_rate == 1.0 and local.usage is not None
    assert local.usage.calls == asked_locally == asked_on_ray == 2 + 4 and local.usage.cached_calls == 0
    by_task = sorted(map(what_happened, recorded(tmp_path / "local")))
    assert sorted(map(what_happened, recorded(tmp_path / "ray"))) == by_task
    assert in_order(calls_of(tmp_path / "ray")) == in_order(calls_of(tmp_path / "local"))
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in ray_requests)  # read on the node
    assert again.usage is not None and again.usage.cached_calls == again.usage.calls == 6
    codes = {r.task: [step.code for step in r.steps] for r in recorded(tmp_path / "local")}
    assert {r.task: [step.code for step in r.steps] for r in recorded(tmp_path / "rerun")} == codes
    assert all(call.cached for call in CallLog(tmp_path / "rerun").read())


def test_code_as_policy_and_a_failing_model_on_ray_as_on_the_local_executor(tmp_path: Path) -> None:
    with ScriptedServer(responder=ExpertModel(program=True, failing=("blockworld-02",))) as server:
        config = EvalConfig(run=model_settings(server, Method.code_as_policy), tasks=MODEL_TASKS, workers=2)
        local = run_evaluation(config, tmp_path / "local", backbone=on_the_driver(server, tmp_path / "local-cache"))
        with RayExecutor(model=description(server, tmp_path / "node-cache")) as executor:
            on_ray = run_evaluation(
                config, tmp_path / "ray", backbone=on_the_driver(server, tmp_path / "c"), executor=executor
            )
    assert on_ray == local
    statuses = {r.task: r.status for r in recorded(tmp_path / "ray")}
    assert statuses == {"blockworld-01": "finished", "blockworld-02": "llm_error"}  # a model failure, as locally
    assert on_ray.llm_errors == 1 and on_ray.success_rate == 0.5
    assert sorted(map(what_happened, recorded(tmp_path / "ray"))) == sorted(
        map(what_happened, recorded(tmp_path / "local"))
    )
    calls = calls_of(tmp_path / "ray")
    assert in_order(calls) == in_order(calls_of(tmp_path / "local"))
    assert [json.loads(call)["error"] is not None for episode, _, call in calls] == [False, True]


def test_the_api_key_is_read_on_the_node_and_never_serialised_by_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped: list[bytes] = []  # every argument of every Ray call and object the run makes, as Ray pickles it

    def remote(method: ray.actor.ActorMethod, *args: object, **kwargs: object) -> object:
        values = [v for v in [*args, *kwargs.values()] if not isinstance(v, ray.ObjectRef)]
        shipped.append(ray.cloudpickle.dumps(values))
        return method._remote(args, kwargs)

    put = ray.put

    def put_and_keep(value: object, **options: object) -> object:
        shipped.append(ray.cloudpickle.dumps(value))
        return put(value, **options)

    monkeypatch.setattr(ray.actor.ActorMethod, "remote", remote)
    monkeypatch.setattr(ray, "put", put_and_keep)
    with ScriptedServer(responder=ExpertModel(program=True)) as server:
        config = EvalConfig(run=model_settings(server, Method.code_as_policy), tasks=MODEL_TASKS[:1])
        with RayExecutor(model=description(server, tmp_path / "node-cache")) as executor:
            summary = run_evaluation(
                config, tmp_path / "run", backbone=on_the_driver(server, tmp_path / "c"), executor=executor
            )
        (request,) = server.received
    assert summary.success_rate == 1.0
    assert request.headers["authorization"] == f"Bearer {KEY}"  # the node's environment gave it
    assert any(b"blockworld-01" in blob and KEY_VARIABLE.encode() in blob for blob in shipped)  # spec, description
    assert not any(KEY.encode() in blob for blob in shipped)
    assert KEY not in (tmp_path / "run" / CALLS).read_text() + (tmp_path / "run" / "config.json").read_text()


def test_a_node_without_the_key_records_failed_episodes_and_asks_nothing(tmp_path: Path) -> None:
    with ScriptedServer(responder=ExpertModel()) as server:
        config = EvalConfig(run=model_settings(server, Method.act), tasks=MODEL_TASKS, workers=2)
        unset = {"api_key_env": "LEARNACT_RAY_TEST_KEY_NOT_SET"}
        nowhere = description(server, tmp_path / "cache").model_copy(update=unset)
        with RayExecutor(model=nowhere) as executor:
            summary = run_evaluation(
                config, tmp_path / "run", backbone=on_the_driver(server, tmp_path / "c"), executor=executor
            )
        assert server.received == []
    assert summary.errors == 2
    assert all(
        "LEARNACT_RAY_TEST_KEY_NOT_SET" in (r.error or "") and "not set" in (r.error or "") for r in summary.results
    )


def test_a_model_method_without_a_model_description_is_refused_before_anything_runs(tmp_path: Path) -> None:
    run = RunSettings(env=BLOCKS, method=Method.act, model=ModelSettings(model="m"))
    with pytest.raises(RayUnavailable, match="how the nodes build the model"), RayExecutor() as executor:
        executor.open(run)


def test_eval_act_on_ray_on_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedServer(responder=ExpertModel()) as server:
        args = ["eval", "--env", "pddl/blockworld", "--tasks", "0", "--method", "act", "--seeds", "1", "--model", "m"]
        args += ["--base-url", server.base_url, "--api-key-env", KEY_VARIABLE, "--cache-dir", str(tmp_path / "cache")]
        result = CliRunner().invoke(app, [*args, "--executor", "ray", "--out", str(out), "--json"])
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.received)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["success_rate"] == 1.0 and summary["usage"]["calls"] == 2
    assert [call.request.seed for call in CallLog(out).read()] == [0, 0]


def test_learnact_scores_its_candidates_on_ray(tmp_path: Path) -> None:
    from test_learnact import TASK, StandIn

    out = tmp_path / "run"
    with ScriptedServer(responder=StandIn()) as server:
        args = ["learn", "--method", "learnact", "--env", "pddl/blockworld", "--model", "m", "--seed", "2"]
        args += ["--train-per-type", "1", "--samples", "1", "--out", str(out), "--base-url", server.base_url]
        args += ["--api-key-env", KEY_VARIABLE, "--cache-dir", str(tmp_path / "cache"), "--executor", "ray"]
        learned = CliRunner().invoke(app, [*args, "--workers", "2"])
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.received)
    assert learned.exit_code == 0, learned.output
    scoring = sorted((out / "score").glob("round-*/candidate-*"))
    assert scoring, "no candidate was scored"
    for folder in scoring:  # each candidate scored by the act agent on the nodes, its calls sent back here
        config = json.loads((folder / "config.json").read_text())
        assert config["workers"] == 2 and config["tasks"] == [TASK]
        calls = CallLog(folder).read()
        assert calls and all(call.request.model == "m" for call in calls)
    assert "round 1: best candidate 2, score 3.000" in learned.stderr  # as on the local executor (test_learnact)


def test_no_node_with_room_for_an_episode_is_an_error_not_a_hang() -> None:
    with pytest.raises(RayUnavailable, match="no node of the Ray cluster has 64 CPUs"):
        with RayExecutor(cpus_per_episode=64) as executor:
            executor.open(settings())


def test_eval_executor_ray_on_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["eval", "--env", "pddl/gripper", "--tasks", "0-1", "--executor", "ray", "--workers", "2"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    assert ray.is_initialized()  # the module's instance: the command did not shut down what it did not start


def test_sigterm_stops_the_runners_keeps_what_finished_and_exits_143(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "learnact.engine.commands.cli", "eval", "--env", "pddl/barman",
               "--executor", "ray", "--workers", "2", "--out", str(out), "--json"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runners: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while not ((out / EPISODES).exists() and (out / EPISODES).read_text().count("\n") >= 1):
            assert process.poll() is None and time.monotonic() < deadline, (
                process.stderr.read() if process.stderr else ""
            )
            runners |= runner_pids()
            time.sleep(0.2)
        runners |= runner_pids()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    kept = recorded(out)
    assert 1 <= len(kept) < 20 and all(r.status == "finished" for r in kept)
    assert runners and gone(runners)
    assert containers_of(runners) == []
