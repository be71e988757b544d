"""The evaluation runner: episodes through the sandbox, run directories, resume, workers, errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnact.engine import EvalConfig, RunDirError, RunSettings, run_evaluation
from learnact.engine.commands.cli import app
from learnact.engine.records import EndReason, EpisodeRecord, EpisodeStatus
from learnact.engine.rundir import EPISODES, FORMAT
from learnact.engine.runs.executor import Executor, LocalExecutor
from learnact.engine.runs.process_executor import ProcessExecutor
from learnact.envs import EnvSpec, make_env, select_tasks
from learnact.sandbox import SandboxConfig

pytestmark = pytest.mark.usefixtures("sandbox_image")

BLOCKS = EnvSpec(name="pddl/blockworld")


def settings(env: EnvSpec = BLOCKS, **changes: object) -> RunSettings:
    return RunSettings(env=env, sandbox=SandboxConfig(pool_size=1), **changes)


def config(tasks: list[str], workers: int = 1) -> EvalConfig:
    return EvalConfig(run=settings(), tasks=tasks, workers=workers)


def blockworld_tasks(selection: str) -> list[str]:
    return select_tasks(make_env(BLOCKS), selection)


@pytest.fixture(params=["threads", "processes"])
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """Each executor of this machine, serving every run of its test, closed at the end."""
    with LocalExecutor() if request.param == "threads" else ProcessExecutor() as chosen:
        yield chosen


def test_every_expert_step_is_code_run_in_the_sandbox(tmp_path: Path, executor: Executor) -> None:
    summary = run_evaluation(config(blockworld_tasks("0")), tmp_path, executor=executor)
    record = json.loads((tmp_path / EPISODES).read_text().splitlines()[0])
    assert summary.success_rate == 1.0 and record["success"] is True and record["progress"] == 1.0
    for step in record["steps"]:
        assert step["result"]["status"] == "ok"
        (call,) = step["result"]["calls"]
        assert step["code"] == f"{call['name']}({', '.join(repr(a) for a in call['args'])})"
        assert step["observation"] == call["observation"]


def test_eval_json_prints_only_the_summary_and_writes_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["eval", "--env", "pddl/blockworld", "--tasks", "0-1", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["env"] == "pddl/blockworld" and summary["method"] == "expert"
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    assert summary["per_type"]["blockworld"]["episodes"] == 2
    assert [r["task"] for r in summary["results"]] == blockworld_tasks("0-1")
    assert all(r["steps"] > 0 for r in summary["results"])
    assert json.loads((out / "summary.json").read_text()) == summary
    assert json.loads((out / "config.json").read_text())["tasks"] == blockworld_tasks("0-1")


def test_a_rerun_resumes_and_runs_only_unfinished_episodes(tmp_path: Path, executor: Executor) -> None:
    run_evaluation(config(blockworld_tasks("0")), tmp_path, executor=executor)
    ran: list[str] = []
    summary = run_evaluation(
        config(blockworld_tasks("0-2")), tmp_path, on_episode=lambda r: ran.append(r.task), executor=executor
    )
    assert sorted(ran) == blockworld_tasks("1-2")
    assert summary.episodes == 3
    assert len((tmp_path / EPISODES).read_text().splitlines()) == 3


def test_a_torn_last_line_from_a_killed_run_is_dropped_and_its_episode_rerun(tmp_path: Path) -> None:
    run_evaluation(config(blockworld_tasks("0-1")), tmp_path)
    lines = (tmp_path / EPISODES).read_text().splitlines()
    (tmp_path / EPISODES).write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    ran: list[str] = []
    run_evaluation(config(blockworld_tasks("0-1")), tmp_path, on_episode=lambda r: ran.append(r.task))
    assert ran == blockworld_tasks("1")
    assert [json.loads(line)["task"] for line in (tmp_path / EPISODES).read_text().splitlines()] == (
        blockworld_tasks("0-1")
    )


def test_records_written_when_statuses_were_plain_strings_read_back_and_a_rerun_retries_the_error(
    tmp_path: Path,
) -> None:
    first, second = blockworld_tasks("0-1")
    run_evaluation(config([first]), tmp_path)
    # An episode ended by an error, as learnact wrote it before its status and end reason were enumerations.
    earlier = (
        f'{{"task":"{second}","seed":0,"type":"blockworld","env":"pddl/blockworld","method":"expert",'
        '"status":"error","error":"PlannerError: found no plan","success":false,"progress":0.0,"steps":[],'
        '"duration_s":0.5,"ended":"error","usage":null,"learned":null}'
    )
    with (tmp_path / EPISODES).open("a", encoding="utf-8") as episodes:
        episodes.write(earlier + "\n")
    record = EpisodeRecord.model_validate_json(earlier)
    assert record.status is EpisodeStatus.error and record.ended is EndReason.error
    assert json.loads(record.model_dump_json()) == json.loads(earlier)  # written back as the same strings

    ran: list[str] = []
    summary = run_evaluation(config([first, second]), tmp_path, on_episode=lambda r: ran.append(r.task))
    assert ran == [second]
    assert summary.errors == 0 and [r.status for r in summary.results] == [EpisodeStatus.finished] * 2
    assert [(r["task"], r["status"], r["ended"]) for r in records_of(tmp_path)] == [
        (first, "finished", "done"),
        (second, "error", "error"),
        (second, "finished", "done"),
    ]


def test_ctrl_c_keeps_finished_episodes(tmp_path: Path, executor: Executor) -> None:
    def interrupt(record: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(config(blockworld_tasks("0-3"), workers=2), tmp_path, on_episode=interrupt, executor=executor)
    kept = (tmp_path / EPISODES).read_text().splitlines()
    assert 1 <= len(kept) < 4
    summary = run_evaluation(config(blockworld_tasks("0-3")), tmp_path, executor=executor)
    assert summary.episodes == 4 and summary.success_rate == 1.0


def test_several_workers_run_each_episode_once(tmp_path: Path, executor: Executor) -> None:
    tasks = blockworld_tasks("0-3")
    summary = run_evaluation(config(tasks, workers=2), tmp_path, executor=executor)
    recorded = [json.loads(line)["task"] for line in (tmp_path / EPISODES).read_text().splitlines()]
    assert sorted(recorded) == sorted(tasks)
    assert [r.task for r in summary.results] == tasks and summary.success_rate == 1.0


def test_a_run_directory_of_another_run_is_refused(tmp_path: Path) -> None:
    run_evaluation(config(blockworld_tasks("0")), tmp_path)
    other = EvalConfig(run=settings(EnvSpec(name="pddl/gripper")), tasks=["gripper-01"])
    with pytest.raises(RunDirError, match="different env"):
        run_evaluation(other, tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "pddl/chess"], "unknown environment 'pddl/chess'; known: pddl/tyreworld"),
        (["--env", "pddl/blockworld", "--tasks", "99"], "outside 0-9"),
        (["--env", "pddl/blockworld", "--tasks", "castle"], "unknown task 'castle'"),
        (["--env", "pddl/blockworld", "--tasks", ","], "chooses no task"),
        (["--env", "pddl"], "the environment 'pddl' needs external files; give --pddl-domain and --pddl-problems"),
        (["--env", "alfworld", "--alfworld-data", "/nonexistent"], "/nonexistent"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["eval", *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_the_alfworld_expert_solves_games_of_every_type_through_the_sandbox_with_two_workers(
    alfworld_data: Path, tmp_path: Path
) -> None:
    spec = EnvSpec(name="alfworld", alfworld_data=str(alfworld_data), split="valid_seen")
    env = make_env(spec)
    first_of_each_type = list({t.type: t.id for t in reversed(env.tasks())}.values())
    summary = run_evaluation(EvalConfig(run=settings(spec), tasks=first_of_each_type, workers=2), tmp_path)
    assert sorted(summary.per_type) == ["clean", "cool", "examine", "heat", "put", "puttwo"]
    assert summary.success_rate == 1.0 and summary.progress_rate == 1.0
    record = json.loads((tmp_path / EPISODES).read_text().splitlines()[0])
    assert all(step["result"]["status"] == "ok" for step in record["steps"])
    assert record["steps"][0]["result"]["calls"][0]["observation"] == record["steps"][0]["observation"]


def test_external_benchmark_files_are_evaluated_through_the_sandbox(tmp_path: Path) -> None:
    data = Path(__file__).parent / "data/pddl"
    problems = [data / "tyreworld/p01.pddl", data / "tyreworld/p10.pddl"]
    result = CliRunner().invoke(
        app,
        ["eval", "--env", "pddl", "--pddl-domain", str(data / "tyreworld.pddl"), "--pddl-problems",
         str(problems[0]), "--pddl-problems", str(problems[1]), "--out", str(tmp_path / "run"), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["env"] == "pddl" and summary["episodes"] == 2 and summary["success_rate"] == 1.0
    assert [r["task"] for r in summary["results"]] == ["p01", "p10"]


# --- runs that survive their own failures -------------------------------------------------------------

DATA = Path(__file__).parent / "data/pddl"
# Two blocks, each to be on the other: no plan exists (the planner says so in well under a second).
UNSOLVABLE = """(define (problem cycle) (:domain blocksworld-4ops)
(:objects b1 b2)
(:init (arm-empty) (on-table b1) (on-table b2) (clear b1) (clear b2))
(:goal (and (on b1 b2) (on b2 b1))))
"""
SOLVABLE = UNSOLVABLE.replace("(on b2 b1)", "(on-table b2)")


def eval_cli(*args: str):
    return CliRunner().invoke(app, ["eval", *args])


def records_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / EPISODES).read_text().splitlines()]


@pytest.mark.parametrize("executor_name", ["threads", "processes"])
def test_an_unsolvable_problem_is_a_recorded_error_the_run_goes_on_and_a_rerun_retries_only_it(
    tmp_path: Path, executor_name: str
) -> None:
    problems = tmp_path / "problems"
    problems.mkdir()
    (problems / "cycle.pddl").write_text(UNSOLVABLE)
    out = tmp_path / "run"
    args = ["--env", "pddl", "--pddl-domain", str(DATA / "blockworld.pddl"), "--pddl-problems",
            str(DATA / "blockworld/problem1.pddl"), str(problems / "cycle.pddl"),
            str(DATA / "blockworld/problem10.pddl"), "--out", str(out), "--json",
            "--executor", executor_name]  # fmt: skip
    result = eval_cli(*args)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    summary = json.loads(result.stdout)
    assert summary["episodes"] == 3 and summary["errors"] == 1
    assert [(r["task"], r["status"], r["success"]) for r in summary["results"]] == [
        ("problem1", "finished", True),
        ("cycle", "error", False),
        ("problem10", "finished", True),
    ]
    (error,) = [r["error"] for r in summary["results"] if r["error"]]
    assert error.startswith("PlannerError: ") and "found no plan" in error
    assert "1 episode ended by an error" in result.stderr
    assert [r["task"] for r in records_of(out)] == ["problem1", "cycle", "problem10"]

    again = eval_cli(*args)  # the error episode is retried; the finished ones are not
    assert again.exit_code == 3, again.output
    assert [r["task"] for r in records_of(out)] == ["problem1", "cycle", "problem10", "cycle"]
    assert json.loads(again.stdout)["episodes"] == 3

    (problems / "cycle.pddl").write_text(SOLVABLE)  # fixed: the retry finishes and the run is clean
    fixed = eval_cli(*args)
    assert fixed.exit_code == 0, fixed.output
    summary = json.loads(fixed.stdout)
    assert summary["errors"] == 0 and summary["success_rate"] == 1.0
    assert json.loads((out / "summary.json").read_text()) == summary


def test_an_episode_that_ran_and_failed_its_task_is_not_rerun(tmp_path: Path) -> None:
    short = EvalConfig(run=settings(max_steps=1), tasks=blockworld_tasks("0"))
    first = run_evaluation(short, tmp_path)
    assert first.success_rate == 0.0 and first.errors == 0
    assert first.results[0].status == "finished"
    ran: list[str] = []
    run_evaluation(short, tmp_path, on_episode=lambda r: ran.append(r.task))
    assert ran == []


def test_an_exception_of_the_environment_is_recorded_with_its_steps(tmp_path: Path, monkeypatch) -> None:
    from learnact.envs.pddl import PddlEnv

    def broken(self, name, args):
        raise RuntimeError("the simulator broke")

    monkeypatch.setattr(PddlEnv, "_perform", broken)
    summary = run_evaluation(config(blockworld_tasks("0-1")), tmp_path)
    assert summary.episodes == 2 and summary.errors == 2
    record = records_of(tmp_path)[0]
    assert record["status"] == "error" and record["error"] == "RuntimeError: the simulator broke"
    assert record["type"] == "blockworld"


def test_on_start_counts_the_finished_episodes_of_a_resumed_run(tmp_path: Path) -> None:
    run_evaluation(config(blockworld_tasks("0-1")), tmp_path)
    started: list[tuple[int, int]] = []
    run_evaluation(
        config(blockworld_tasks("0-2")), tmp_path, on_start=lambda done, total: started.append((done, total))
    )
    assert started == [(2, 3)]


def test_without_a_terminal_progress_is_printed_as_plain_lines(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = eval_cli("--env", "pddl/blockworld", "--tasks", "0-1", "--out", str(out))
    assert first.exit_code == 0, first.output
    assert "pddl/blockworld · expert: 2 episodes\n" in first.stderr
    assert "pddl/blockworld · expert: 2/2 episodes" in first.stderr
    resumed = eval_cli("--env", "pddl/blockworld", "--tasks", "0-2", "--out", str(out))
    assert "3 episodes, 2 already finished" in resumed.stderr
    assert "pddl/blockworld · expert: 3/3 episodes" in resumed.stderr


# --- the run directory: one process at a time, shards, and what cannot be a run directory ------------


def test_shards_into_one_directory_are_summarised_together(tmp_path: Path) -> None:
    run_evaluation(config(blockworld_tasks("0-1")), tmp_path)
    summary = run_evaluation(config(blockworld_tasks("2-3")), tmp_path)
    assert [r.task for r in summary.results] == blockworld_tasks("0-3")
    assert summary.episodes == 4
    assert json.loads((tmp_path / "summary.json").read_text())["episodes"] == 4
    assert json.loads((tmp_path / "config.json").read_text())["tasks"] == blockworld_tasks("0-3")
    again = run_evaluation(config(blockworld_tasks("1")), tmp_path)  # a narrower selection: same summary
    assert again.episodes == 4 and len(records_of(tmp_path)) == 4


def test_the_summary_counts_recorded_episodes_only_after_an_interrupted_shard(tmp_path: Path) -> None:
    def interrupt(record: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(config(blockworld_tasks("0-3")), tmp_path, on_episode=interrupt)
    recorded = [r["task"] for r in records_of(tmp_path)]
    summary = run_evaluation(config(blockworld_tasks("4")), tmp_path)
    assert [r.task for r in summary.results] == [
        t for t in blockworld_tasks("0-4") if t in recorded + blockworld_tasks("4")
    ]
    assert json.loads((tmp_path / "config.json").read_text())["tasks"] == blockworld_tasks("0-4")


@pytest.mark.parametrize(
    ("change", "field"),
    [({"max_steps": 5}, "max_steps"), ({"env": EnvSpec(name="pddl/gripper")}, "env")],
)
def test_a_run_directory_refuses_another_run_clearly(tmp_path: Path, change: dict, field: str) -> None:
    run_evaluation(config(blockworld_tasks("0")), tmp_path)
    other = EvalConfig(run=settings(**{"env": BLOCKS, **change}), tasks=blockworld_tasks("0"))
    with pytest.raises(
        RunDirError, match=f"holds an evaluation run \\(learnact eval\\) with a different {field}; use another `out`"
    ) as caught:
        run_evaluation(other, tmp_path)
    assert caught.value.path == tmp_path
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--max-steps", "5", "--out", str(tmp_path))
    assert result.exit_code == 2 and "different max_steps" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


HOLD_LOCK = """
import sys, time
from pathlib import Path
from learnact.engine.rundir import RunDir
RunDir(Path(sys.argv[1])).lock()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_process_on_a_locked_run_directory_fails_fast_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        started = time.monotonic()
        result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--out", str(out))
        assert result.exit_code == 2, result.output
        assert f"{out} is in use by another learnact eval (pid {holder.pid})" in result.stderr
        assert time.monotonic() - started < 10
        assert not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the lock of the killed holder: the directory is usable at once.
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output


def eval_process(out: Path, tasks: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "learnact.engine.commands.cli", "eval", "--env", "pddl/blockworld", "--tasks", tasks,
         "--out", str(out), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_concurrent_evals_on_one_directory_run_each_episode_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first, second = eval_process(out, "0-9"), eval_process(out, "0-9")
    results = [(p.wait(timeout=300), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    (_, _, refused) = next(r for r in results if r[0] == 2)
    assert "is in use by another learnact eval (pid " in refused and "Traceback" not in refused
    assert sorted(r["task"] for r in records_of(out)) == sorted(blockworld_tasks("0-9"))


def test_a_killed_run_leaves_no_lock_behind_and_its_rerun_completes(tmp_path: Path) -> None:
    from learnact.sandbox.config import CONTAINER_LABEL
    from learnact.sandbox.docker_backend import connect

    out = tmp_path / "run"
    killed = eval_process(out, "0-9")
    deadline = time.monotonic() + 120
    while not (out / EPISODES).exists():
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert (out / ".lock").read_text() == f"{killed.pid} eval\n"  # what a stale lock looks like
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0-9", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["episodes"] == 10
    assert sorted(r["task"] for r in records_of(out)) == sorted(blockworld_tasks("0-9"))
    api = connect()  # the killed run's containers were swept by the rerun's sandbox
    try:
        assert api.containers(all=True, filters={"label": f"{CONTAINER_LABEL}={killed.pid}"}) == []
    finally:
        api.close()


def test_out_that_is_a_file_or_inside_one_is_a_one_line_error(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    for out, message in [(a_file, "is a file, not a directory"), (a_file / "run", "is inside")]:
        result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--out", str(out))
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_an_unwritable_out_is_a_one_line_error(tmp_path: Path) -> None:
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--out", "/proc/learnact-run")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot create the run directory /proc/learnact-run")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "(Invalid JSON: key must"),
        (b"[1, 2]", "(Input should be an object)"),
        (b"\xff\xfe\x00", "(Invalid JSON"),
    ],
)
def test_a_corrupt_config_is_a_one_line_error(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"kind": "evaluation", "format": FORMAT}))
    (tmp_path / "config.json").write_bytes(content)
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--out", str(tmp_path))
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert (tmp_path / "config.json").read_bytes() == content


def test_a_full_disk_is_a_one_line_error_and_leaves_no_torn_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def full_for_episodes(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(EPISODES):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_for_episodes)
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0-1", "--out", str(tmp_path), "--json")
    assert result.exit_code == 2, result.output
    assert "No space left on device (the disk is full)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert (tmp_path / EPISODES).read_text() == ""


def test_without_a_docker_engine_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    out = tmp_path / "run"
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--out", str(out))
    assert result.exit_code == 4 and "no Docker engine answers" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


# --- smaller things a user hits -------------------------------------------------------------------------


def test_pddl_problems_take_several_paths_after_one_flag_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "tyreworld"
    folder.mkdir()
    for name in ("domain.pddl", "p10.pddl", "p01.pddl"):
        source = DATA / ("tyreworld.pddl" if name == "domain.pddl" else f"tyreworld/{name}")
        (folder / name).write_text(source.read_text())
    glob = sorted(str(p) for p in folder.glob("*.pddl"))  # what the shell makes of `folder/*.pddl`
    for problems in (glob, [str(folder)]):
        out = tmp_path / f"run-{len(problems)}"
        result = eval_cli("--env", "pddl", "--pddl-domain", str(folder / "domain.pddl"), "--pddl-problems",
                          *problems, "--out", str(out), "--max-steps", "1", "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert [r["task"] for r in json.loads(result.stdout)["results"]] == ["p01", "p10"]
        config = json.loads((out / "config.json").read_text())
        assert config["run"]["env"]["pddl_problems"] == [str(folder / "p01.pddl"), str(folder / "p10.pddl")]


def test_stray_arguments_without_pddl_problems_are_a_usage_error(tmp_path: Path) -> None:
    result = eval_cli("--env", "pddl/blockworld", "stray.pddl", "--out", str(tmp_path))
    assert result.exit_code == 2 and "unexpected argument stray.pddl" in result.stderr


def test_errors_keep_their_quotes_and_are_not_wrapped(tmp_path: Path) -> None:
    result = eval_cli("--env", "pddl", "--pddl-domain", str(DATA / "blockworld.pddl"),
                      "--pddl-problems", str(DATA / "tyreworld/p01.pddl"), "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith(f"the domain file {DATA / 'blockworld.pddl'} defines 'blocksworld-4ops'")
    assert len(line) > 80


def test_workers_far_above_the_cores_warn(tmp_path: Path) -> None:
    workers = 2 * (os.cpu_count() or 1) + 1
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--workers", str(workers), "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"warning: --workers {workers} is far above the" in result.stderr


# --- run identity ------------------------------------------------------------


def test_a_config_this_version_cannot_read_is_a_one_line_error(tmp_path: Path) -> None:
    unknown = {"run": {"env": {"name": "pddl/blockworld"}, "temperature": 0.7}, "tasks": []}
    (tmp_path / "run.json").write_text(json.dumps({"kind": "evaluation", "format": FORMAT}))
    (tmp_path / "config.json").write_text(json.dumps(unknown))
    result = eval_cli("--env", "pddl/blockworld", "--tasks", "0", "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "is not a config this version of learnact reads as an evaluation run" in line
    assert "(run.temperature: Extra inputs" in line
    assert line.endswith("use another --out") and "Traceback" not in result.output


def test_very_verbose_logs_the_sandbox_lifecycle(tmp_path: Path) -> None:
    quiet = CliRunner().invoke(app, ["eval", "--env", "pddl/blockworld", "--tasks", "0", "--out", str(tmp_path / "a")])
    assert quiet.exit_code == 0, quiet.output
    assert "removed sandbox container" not in quiet.stderr
    loud = CliRunner().invoke(
        app, ["-vv", "eval", "--env", "pddl/blockworld", "--tasks", "0", "--out", str(tmp_path / "b")]
    )
    assert loud.exit_code == 0, loud.output
    assert "DEBUG" in loud.stderr and "learnact.sandbox.docker_backend: removed sandbox container" in loud.stderr
    assert f"INFO learnact.engine.runs.evaluation: episode {blockworld_tasks('0')[0]}#0: success=True" in loud.stderr
