"""Seeds and splits of an evaluation: every task repeated with seeds 0..N-1, the seed in every model request,
one run directory keyed by (task, seed) that resumes per episode, the training split of each seed
(``--test-on-rest``, ``splits.json``), and summaries with per-seed rates and their mean ± std. Also the model
options `eval` shares with `learn` (engine/commands/common.py). Real sandbox and planner; models come from the
scripted OpenAI-protocol stand-in (tests/llm_server.py). Never the network."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer, Status
from typer.testing import CliRunner

from learnact.engine import EvalConfig, RunDirError, RunSettings, run_evaluation
from learnact.engine.agents import call_code
from learnact.engine.commands.cli import app
from learnact.engine.llm import CALLS, CachedBackbone, OpenAIBackbone, ResponseCache
from learnact.engine.records import Method, ModelSettings, mean_and_std
from learnact.engine.rundir import EPISODES, SPLITS
from learnact.engine.splits import split_tasks
from learnact.envs import EnvSpec, make_env, select_tasks
from learnact.sandbox import SandboxConfig

BLOCKS = EnvSpec(name="pddl/blockworld")
TASK = "blockworld-01"


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
        "OPENAI_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)


def blockworld_tasks(selection: str) -> list[str]:
    return select_tasks(make_env(BLOCKS), selection)


def expert_lines(task: str = TASK) -> list[str]:
    env = make_env(BLOCKS)
    env.reset(task)
    return [call_code(name, args) for name, args in env.expert_calls()]


def program_of(lines: list[str]) -> str:
    body = "\n".join(f"    {line}" for line in lines)
    return f"def solve():\n{body}\n\n\nsolve()\n"


def model_settings(server: ScriptedServer, method: Method = Method.act, **changes: object) -> RunSettings:
    return RunSettings(
        env=BLOCKS,
        method=method,
        max_steps=changes.pop("max_steps", 2),
        sandbox=SandboxConfig(pool_size=1),
        model=ModelSettings(model="m", base_url=server.base_url),
        **changes,
    )


def backbone(server: ScriptedServer) -> OpenAIBackbone:
    return OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=0)


def records_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / EPISODES).read_text().splitlines()]


def expert_config(tasks: list[str], seeds: tuple[int, ...], **changes: object) -> EvalConfig:
    run = RunSettings(env=BLOCKS, sandbox=SandboxConfig(pool_size=1), **changes)
    return EvalConfig(run=run, tasks=tasks, seeds=seeds)


# --- the seed reaches the model -----------------------------------------------------------------------


@pytest.mark.parametrize("method", [Method.act, Method.code_as_policy])
@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_each_seed_is_the_seed_of_its_episodes_model_requests(tmp_path: Path, method: Method) -> None:
    with ScriptedServer(responder=lambda body: Answer("Pickup('b3')")) as server:
        config = EvalConfig(run=model_settings(server, method), tasks=(TASK,), seeds=(0, 1, 2))
        summary = run_evaluation(config, tmp_path, backbone=backbone(server))
    sent = sorted(r.body["seed"] for r in server.received)
    per_episode = 2 if method is Method.act else 1  # act: one request a step; code_as_policy: one program
    assert sent == [seed for seed in (0, 1, 2) for _ in range(per_episode)]
    assert sorted((r["task"], r["seed"]) for r in records_of(tmp_path)) == [(TASK, 0), (TASK, 1), (TASK, 2)]
    assert [s.seed for s in summary.per_seed] == [0, 1, 2] and summary.episodes == 3
    calls = [json.loads(line) for line in (tmp_path / CALLS).read_text().splitlines()]
    assert sorted({(c["episode"], c["request"]["seed"]) for c in calls}) == [
        (f"{TASK}#0", 0),
        (f"{TASK}#1", 1),
        (f"{TASK}#2", 2),
    ]
    for record in records_of(tmp_path):  # two seeds of one task never share their token counts
        assert record["usage"]["calls"] == per_episode


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_the_response_cache_keeps_the_seeds_apart(tmp_path: Path) -> None:
    """The prompts of one task are the same for every seed: only the seed keeps seed 1 from reading seed 0's
    answer out of the cache. A rerun in a new directory asks nothing."""
    cache = ResponseCache(tmp_path / "cache")
    with ScriptedServer(responder=lambda body: Answer(f"Pickup('b{body['seed'] + 1}')")) as server:
        settings = model_settings(server, Method.code_as_policy)
        for out in ("first", "again"):
            config = EvalConfig(run=settings, tasks=(TASK,), seeds=(0, 1, 2))
            run_evaluation(config, tmp_path / out, backbone=CachedBackbone(backbone(server), cache))
    assert sorted(r.body["seed"] for r in server.received) == [0, 1, 2]
    programs = {r["seed"]: r["steps"][0]["code"].strip() for r in records_of(tmp_path / "again")}
    assert programs == {0: "Pickup('b1')", 1: "Pickup('b2')", 2: "Pickup('b3')"}


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_a_failed_seed_is_retried_alone_on_resume(tmp_path: Path) -> None:
    tasks = blockworld_tasks("0-1")

    def seed_1_fails(body: dict) -> Answer | Status:
        return Status(500, "down") if body["seed"] == 1 else Answer("Pickup('b3')")

    with ScriptedServer(responder=seed_1_fails) as server:
        config = EvalConfig(run=model_settings(server, max_steps=1), tasks=tasks, seeds=(0, 1))
        first = run_evaluation(config, tmp_path, backbone=backbone(server))
    assert first.llm_errors == 2 and [s.llm_errors for s in first.per_seed] == [0, 2]
    with ScriptedServer(responder=lambda body: Answer("Pickup('b3')")) as server:
        ran: list[tuple[str, int]] = []
        again = run_evaluation(
            config, tmp_path, backbone=backbone(server), on_episode=lambda r: ran.append((r.task, r.seed))
        )
    assert sorted(ran) == [(t, 1) for t in tasks]
    assert {r.body["seed"] for r in server.received} == {1}
    assert again.llm_errors == 0 and again.episodes == 4


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_more_seeds_later_run_only_the_missing_episodes(tmp_path: Path) -> None:
    tasks = blockworld_tasks("0-1")
    run_evaluation(expert_config(tasks, (0,)), tmp_path)
    ran: list[tuple[str, int]] = []
    summary = run_evaluation(
        expert_config(tasks, (0, 1, 2)), tmp_path, on_episode=lambda r: ran.append((r.task, r.seed))
    )
    assert sorted(ran) == sorted((t, s) for t in tasks for s in (1, 2))
    assert json.loads((tmp_path / "config.json").read_text())["seeds"] == [0, 1, 2]
    # The expert is deterministic: every seed solves every task, so the spread is 0.
    assert [(s.seed, s.episodes, s.success_rate) for s in summary.per_seed] == [(0, 2, 1.0), (1, 2, 1.0), (2, 2, 1.0)]
    assert (summary.success_mean, summary.success_std, summary.progress_std) == (1.0, 0.0, 0.0)
    assert [(r.task, r.seed) for r in summary.results] == [(t, s) for s in (0, 1, 2) for t in tasks]
    narrower = run_evaluation(expert_config(tasks[:1], (1,)), tmp_path, on_episode=lambda r: ran.append(r))
    assert len(ran) == 4 and narrower == summary  # nothing left to run; the summary covers the folder


# --- mean ± std over seeds ---------------------------------------------------------------------------


def test_mean_and_std_use_the_sample_deviation() -> None:
    assert mean_and_std([1.0, 0.0, 1.0]) == pytest.approx((2 / 3, statistics.stdev([1.0, 0.0, 1.0])))
    assert mean_and_std([1.0, 0.0, 1.0])[1] == pytest.approx(3**-0.5)  # not the population's 0.4714
    assert mean_and_std([0.4]) == (0.4, 0.0) and mean_and_std([]) == (0.0, 0.0)


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_per_seed_rates_and_their_spread_from_known_outcomes(tmp_path: Path) -> None:
    plan = expert_lines()
    solving, partial = program_of(plan), program_of(plan[:1])

    def solves_except_on_seed_1(body: dict) -> Answer:
        return Answer(partial if body["seed"] == 1 else solving, prompt_tokens=100, completion_tokens=20)

    with ScriptedServer(responder=solves_except_on_seed_1) as server:
        config = EvalConfig(run=model_settings(server, Method.code_as_policy), tasks=(TASK,), seeds=(0, 1, 2))
        summary = run_evaluation(config, tmp_path, backbone=backbone(server))
    progress = {r["seed"]: r["progress"] for r in records_of(tmp_path)}
    assert [s.success_rate for s in summary.per_seed] == [1.0, 0.0, 1.0]
    assert 0.0 <= progress[1] < 1.0 == progress[0] == progress[2]
    assert summary.success_mean == pytest.approx(2 / 3) and summary.success_std == pytest.approx(3**-0.5)
    assert summary.progress_mean == pytest.approx(statistics.mean(progress.values()))
    assert summary.progress_std == pytest.approx(statistics.stdev(progress.values()))
    assert summary.success_rate == pytest.approx(2 / 3)  # pooled over the episodes of every seed
    assert [(s.usage.prompt_tokens, s.usage.completion_tokens) for s in summary.per_seed] == [(100, 20)] * 3
    assert summary.usage is not None and summary.usage.prompt_tokens == 300


# --- splits -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_test_on_rest_leaves_out_each_seeds_training_tasks_and_stores_the_splits(tmp_path: Path) -> None:
    env_tasks = make_env(BLOCKS).tasks()
    selected = blockworld_tasks("0-5")
    summary = run_evaluation(expert_config(selected, (0, 1), test_on_rest=True), tmp_path)
    trains = {seed: split_tasks(env_tasks, seed).train for seed in (0, 1)}
    assert trains[0] != trains[1] and all(len(train) == 3 for train in trains.values())
    ran = {(r["task"], r["seed"]) for r in records_of(tmp_path)}
    expected = {(t, s) for s in (0, 1) for t in selected if t not in trains[s]}
    assert ran == expected and summary.episodes == len(expected) < 2 * len(selected)
    stored = json.loads((tmp_path / SPLITS).read_text())
    assert stored["test_on_rest"] is True and stored["train_from"] == "seed"
    assert [(s["seed"], tuple(s["train"])) for s in stored["splits"]] == [(0, trains[0]), (1, trains[1])]
    assert [s["test"] for s in stored["splits"]] == [[t for t in selected if t not in trains[s]] for s in (0, 1)]


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_test_on_rest_leaves_out_the_learning_runs_training_tasks(tmp_path: Path) -> None:
    selected = blockworld_tasks("0-3")
    trained_on = (selected[1], selected[2])
    run_evaluation(expert_config(selected, (0, 1), test_on_rest=True, trained_on=trained_on), tmp_path)
    ran = sorted((r["task"], r["seed"]) for r in records_of(tmp_path))
    assert ran == sorted((t, s) for s in (0, 1) for t in (selected[0], selected[3]))
    stored = json.loads((tmp_path / SPLITS).read_text())
    assert stored["train_from"] == "learning_run"
    assert all(tuple(s["train"]) == trained_on for s in stored["splits"])


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_testing_on_all_tasks_still_records_the_split_and_test_on_rest_is_part_of_the_identity(
    tmp_path: Path,
) -> None:
    selected = blockworld_tasks("0-1")
    run_evaluation(expert_config(selected, (0,)), tmp_path)
    stored = json.loads((tmp_path / SPLITS).read_text())
    assert stored["test_on_rest"] is False and stored["splits"][0]["test"] == selected
    assert tuple(stored["splits"][0]["train"]) == split_tasks(make_env(BLOCKS).tasks(), 0).train
    with pytest.raises(RunDirError, match="test_on_rest"):
        run_evaluation(expert_config(selected, (0,), test_on_rest=True), tmp_path)


# --- run directories of the version before seeds --------------------------------------------------------


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_a_run_directory_written_before_seeds_resumes_as_seed_0(tmp_path: Path) -> None:
    tasks = blockworld_tasks("0-1")
    run_evaluation(expert_config(tasks[:1], (0,)), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["seeds"]
    del config["run"]["test_on_rest"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    (old,) = records_of(tmp_path)
    del old["seed"]
    (tmp_path / EPISODES).write_text(json.dumps(old) + "\n")
    ran: list[tuple[str, int]] = []
    summary = run_evaluation(expert_config(tasks, (0,)), tmp_path, on_episode=lambda r: ran.append((r.task, r.seed)))
    assert ran == [(tasks[1], 0)] and summary.episodes == 2 and [s.seed for s in summary.per_seed] == [0]


def test_model_settings_hold_no_seed_of_their_own() -> None:
    for seed in (None, 4):
        with pytest.raises(ValueError, match="seed"):
            ModelSettings.model_validate({"model": "m", "seed": seed})


# --- the CLI ----------------------------------------------------------------------------------------------


def eval_args(out: Path, *more: str) -> list[str]:
    return ["eval", "--env", "pddl/blockworld", "--tasks", "0", "--out", str(out), *more]


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_cli_seeds_default_to_one_for_the_expert_and_the_json_summary_has_the_spread(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, eval_args(tmp_path / "one", "--json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "one" / "config.json").read_text())["seeds"] == [0]
    result = CliRunner().invoke(app, eval_args(tmp_path / "two", "--seeds", "2", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"per_seed", "success_mean", "success_std", "progress_mean", "progress_std", "per_type"} <= set(summary)
    assert [(s["seed"], s["episodes"], s["success_rate"]) for s in summary["per_seed"]] == [(0, 1, 1.0), (1, 1, 1.0)]
    assert [(r["task"], r["seed"]) for r in summary["results"]] == [(TASK, 0), (TASK, 1)]
    assert json.loads((tmp_path / "two" / "summary.json").read_text()) == summary


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_cli_model_method_runs_three_seeds_and_shows_them_with_their_spread(tmp_path: Path) -> None:
    out = tmp_path / "run"
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"m": {"input_per_1m": 1_000_000, "output_per_1m": 0}}))  # $1 a prompt token
    with ScriptedServer(responder=lambda body: Answer("Pickup('b3')", prompt_tokens=10)) as server:
        args = eval_args(out, "--method", "act", "--model", "m", "--base-url", server.base_url, "--max-steps", "1")
        args += ["--no-cache", "--temperature", "0.5", "--max-tokens", "33", "--price-file", str(prices)]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(r.body["seed"] for r in server.received) == [0, 1, 2]
    assert {(r.body["temperature"], r.body["max_tokens"]) for r in server.received} == {(0.5, 33)}
    assert "per seed" in result.stdout and "mean ± std" in result.stdout and "$10.0000" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["usage"]["cost_usd"] == pytest.approx(30.0)
    model = json.loads((out / "config.json").read_text())["run"]["model"]
    assert model["temperature"] == 0.5 and model["max_tokens"] == 33
    assert model["backbone"] == f"openai-compatible {server.base_url}"


@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.docker
def test_cli_azure_endpoint_and_api_version_reach_the_azure_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
    out = tmp_path / "run"
    with ScriptedServer(responder=lambda body: Answer("Pickup('b3')")) as server:
        endpoint = server.base_url.removesuffix("/v1")
        args = eval_args(out, "--method", "act", "--model", "deploy", "--seeds", "1", "--max-steps", "1")
        args += ["--azure-endpoint", endpoint, "--api-version", "2024-06-01", "--no-cache"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (request,) = server.received
    assert request.path == "/openai/deployments/deploy/chat/completions?api-version=2024-06-01"
    assert request.headers["api-key"] == "azure-key"
    model = json.loads((out / "config.json").read_text())["run"]["model"]
    assert model["base_url"] is None and model["backbone"] == f"azure-openai {endpoint} 2024-06-01"


@pytest.mark.parametrize(
    ("more", "message"),
    [
        (
            ["--method", "act", "--model", "m", "--model-path", "x.gguf"],
            "--model-path is a GGUF file for --model local",
        ),
        (["--method", "act", "--model", "local", "--base-url", "http://x"], "--base-url: for a model on a server"),
        (["--method", "act", "--model", "m", "--api-key-env", "NO_SUCH_VARIABLE_HERE"], "NO_SUCH_VARIABLE_HERE"),
        (["--method", "act", "--model", "m", "--base-url", "http://x", "--price-file", "missing.json"], "price file"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_cli_refuses_model_options_that_do_not_fit(tmp_path: Path, more: list[str], message: str) -> None:
    result = CliRunner().invoke(app, eval_args(tmp_path / "run", *more))
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()
