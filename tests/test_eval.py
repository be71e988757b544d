"""The evaluation runner: episodes through the sandbox, run directories, resume, workers, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnact.engine.cli import app
from learnact.engine.evaluation import EvalConfig, run_evaluation
from learnact.engine.rundir import EPISODES
from learnact.envs.registry import EnvSpec, make_env, select_tasks
from learnact.sandbox.config import SandboxConfig

pytestmark = pytest.mark.usefixtures("sandbox_image")

BLOCKS = EnvSpec(name="pddl/blockworld")


def config(tasks: list[str], workers: int = 1) -> EvalConfig:
    return EvalConfig(env=BLOCKS, tasks=tasks, workers=workers, sandbox=SandboxConfig(pool_size=1))


def blockworld_tasks(selection: str) -> list[str]:
    return select_tasks(make_env(BLOCKS), selection)


def test_every_expert_step_is_code_run_in_the_sandbox(tmp_path: Path) -> None:
    summary = run_evaluation(config(blockworld_tasks("0")), tmp_path)
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


def test_a_rerun_resumes_and_runs_only_unfinished_episodes(tmp_path: Path) -> None:
    run_evaluation(config(blockworld_tasks("0")), tmp_path)
    ran: list[str] = []
    summary = run_evaluation(config(blockworld_tasks("0-2")), tmp_path, on_episode=lambda r: ran.append(r.task))
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


def test_ctrl_c_keeps_finished_episodes(tmp_path: Path) -> None:
    def interrupt(record: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(config(blockworld_tasks("0-3")), tmp_path, on_episode=interrupt)
    kept = (tmp_path / EPISODES).read_text().splitlines()
    assert 1 <= len(kept) < 4
    summary = run_evaluation(config(blockworld_tasks("0-3")), tmp_path)
    assert summary.episodes == 4 and summary.success_rate == 1.0


def test_several_workers_run_each_episode_once(tmp_path: Path) -> None:
    tasks = blockworld_tasks("0-3")
    summary = run_evaluation(config(tasks, workers=2), tmp_path)
    recorded = [json.loads(line)["task"] for line in (tmp_path / EPISODES).read_text().splitlines()]
    assert sorted(recorded) == sorted(tasks)
    assert [r.task for r in summary.results] == tasks and summary.success_rate == 1.0


def test_a_run_directory_of_another_run_is_refused(tmp_path: Path) -> None:
    run_evaluation(config(blockworld_tasks("0")), tmp_path)
    other = EvalConfig(env=EnvSpec(name="pddl/gripper"), tasks=["gripper-01"], sandbox=SandboxConfig(pool_size=1))
    with pytest.raises(ValueError, match="different env"):
        run_evaluation(other, tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "pddl/chess"], "unknown environment 'pddl/chess'; known: pddl/tyreworld"),
        (["--env", "pddl/blockworld", "--tasks", "99"], "outside 0-9"),
        (["--env", "pddl/blockworld", "--tasks", "castle"], "unknown task 'castle'"),
        (["--env", "pddl/blockworld", "--tasks", ","], "chooses no task"),
        (["--env", "pddl"], "--env pddl needs external files"),
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
    summary = run_evaluation(
        EvalConfig(env=spec, tasks=first_of_each_type, workers=2, sandbox=SandboxConfig(pool_size=1)), tmp_path
    )
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
