"""The act, react and code_as_policy agents against a scripted OpenAI-compatible server (tests/llm_server.py): prompts,
parsing of untrusted answers, the episode loop through the real sandbox, llm_error records, the response
cache and the CLI. Never the network."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer, Status
from typer.testing import CliRunner

from learnact.actions.models import ActionSet, LearnedAction
from learnact.engine import EvalConfig, RunSettings, run_evaluation
from learnact.engine.agents import call_code, parse_answer, parse_program
from learnact.engine.agents.policy import PROGRAM_MAX_TOKENS
from learnact.engine.commands.cli import app
from learnact.engine.llm import CALLS, CachedBackbone, OpenAIBackbone, ResponseCache
from learnact.engine.records import Method, ModelSettings
from learnact.engine.rundir import EPISODES, differences
from learnact.envs import EnvSpec, make_env
from learnact.sandbox import SandboxConfig

pytestmark = pytest.mark.usefixtures("sandbox_image")

BLOCKS = EnvSpec(name="pddl/blockworld")
TASK = "blockworld-01"


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def expert_lines(task: str = TASK) -> list[str]:
    env = make_env(BLOCKS)
    env.reset(task)
    return [call_code(name, args) for name, args in env.expert_calls()]


def run(
    server: ScriptedServer, out: Path, method: Method = Method.act, tasks: tuple[str, ...] = (TASK,), **options: object
):
    settings = RunSettings(
        env=BLOCKS,
        method=method,
        max_steps=options.pop("max_steps", 30),
        sandbox=SandboxConfig(pool_size=1),
        model=ModelSettings(model="m", base_url=server.base_url),
        actions=options.pop("actions", None),
    )
    backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=2.0, max_retries=1)
    if "cache" in options:
        backbone = CachedBackbone(backbone, options.pop("cache"))
    return run_evaluation(EvalConfig(run=settings, tasks=tasks), out, backbone=backbone)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / EPISODES).read_text().splitlines()]


def prompts(server: ScriptedServer) -> list[str]:
    return [r.body["messages"][-1]["content"] for r in server.received]


# --- parsing untrusted answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ('```python\nPickup("b1")\n```', 'Pickup("b1")'),
        ("Action: Stack('b1', 'b2')", "Stack('b1', 'b2')"),
        ("I will pick up b1 now.\nPickup('b1')\nObservation: made up", "Pickup('b1')"),
        ("import os", "import os"),
        ("pick up the block", None),
        ("", None),
    ],
)
def test_answers_are_parsed_into_one_code_line(answer: str, code: str | None) -> None:
    assert parse_answer(answer).code == code


def test_a_think_line_is_a_thought_only_for_react() -> None:
    assert parse_answer("Think: b3 must go on b2\nPickup('b3')", thoughts=True).thought == "b3 must go on b2"
    assert parse_answer("Think: b3 must go on b2\nPickup('b3')").code == "Pickup('b3')"


# --- episodes ---------------------------------------------------------------------------------------


def test_act_solves_a_task_when_the_model_answers_the_experts_plan(tmp_path: Path) -> None:
    plan = expert_lines()
    with ScriptedServer([Answer(f"Action: {line}") for line in plan]) as server:
        summary = run(server, tmp_path)
    (record,) = records(tmp_path)
    assert summary.success_rate == 1.0 and record["success"] and record["ended"] == "done"
    assert [s["code"] for s in record["steps"]] == plan
    assert all(s["result"]["status"] == "ok" for s in record["steps"])
    assert record["usage"]["calls"] == len(plan) and record["usage"]["prompt_tokens"] == 10 * len(plan)
    assert summary.usage is not None and summary.usage.completion_tokens == 2 * len(plan)
    calls = [json.loads(line) for line in (tmp_path / CALLS).read_text().splitlines()]
    assert [c["response"]["text"] for c in calls] == [f"Action: {line}" for line in plan]
    assert all(c["episode"] == f"{TASK}#0" for c in calls)  # the episode's key: the task and its seed


def test_the_prompt_holds_the_instruction_demo_goal_and_a_window_of_history(tmp_path: Path) -> None:
    answers = (Answer(f"Pickup('n{i % 2}')") for i in itertools.count())  # alternating: never 5 alike
    with ScriptedServer(responder=lambda body: next(answers)) as server:
        run(server, tmp_path, max_steps=25)
    system = server.received[0].body["messages"][0]["content"]
    assert "Blocksworld" in system and "Pickup(block)" in system and "Preconditions:" in system
    env = make_env(BLOCKS)
    reset = env.reset(TASK)
    first, last = prompts(server)[0], prompts(server)[-1]
    assert "Here is an example" in first and "Action: Unstack('b2', 'b1')" in first  # the demonstration
    assert reset.goal in first and f"Observation: {reset.observation}" in first
    mine = last.split("Now it is your turn.")[1]
    assert mine.count("Action: Pickup('n") == 20  # the window: the last 20 of 24 steps
    assert "4 earlier steps are not shown" in mine


def test_bad_output_becomes_the_next_observation(tmp_path: Path) -> None:
    script = ["```python\nPickup('zz')\n```", "Sure! I think I will pick up a block.", "import os", "Pickup('b1'"]
    with ScriptedServer([Answer(t) for t in script], responder=lambda b: Answer("pick up")) as server:
        run(server, tmp_path, max_steps=4)
    (record,) = records(tmp_path)
    assert record["status"] == "finished" and record["ended"] == "max_steps"
    steps = record["steps"]
    assert steps[0]["code"] == "Pickup('zz')" and "not valid" in steps[0]["observation"]
    assert steps[1]["code"] == "" and "no line of Python" in steps[1]["observation"]
    assert steps[2]["result"]["status"] == "rejected" and "rejected" in steps[2]["observation"]
    assert steps[3]["result"] is None and "no line of Python" in steps[3]["observation"]
    assert "Observation: The code was rejected" in prompts(server)[3]


def test_react_thoughts_are_answered_ok_and_not_run(tmp_path: Path) -> None:
    plan = expert_lines()
    script = [Answer("Think: first the plan"), *(Answer(line) for line in plan)]
    with ScriptedServer(script) as server:
        summary = run(server, tmp_path, method=Method.react)
    (record,) = records(tmp_path)
    assert summary.success_rate == 1.0
    assert record["steps"][0]["thought"] == "first the plan" and record["steps"][0]["result"] is None
    assert record["steps"][0]["observation"] == "OK."
    assert "Think: first the plan\nObservation: OK." in prompts(server)[1]
    assert "Think:" in server.received[0].body["messages"][0]["content"]


def test_the_same_failing_action_five_times_stops_the_episode(tmp_path: Path) -> None:
    with ScriptedServer(responder=lambda body: Answer("Stack('b9', 'b1')")) as server:
        run(server, tmp_path)
    (record,) = records(tmp_path)
    assert record["ended"] == "repeated_failure" and len(record["steps"]) == 5 and len(server.received) == 5
    warned = ["fails again" in step["observation"] for step in record["steps"]]
    assert warned == [False, True, True, True, False]  # from the second failure in a row until the stop
    assert "This line failed 2 times in a row;" in prompts(server)[2]
    assert "written 5 times in a row; the episode stops" in record["steps"][4]["observation"]


def test_a_failing_line_is_warned_of_only_while_it_repeats(tmp_path: Path) -> None:
    script = ["Stack('b9', 'b1')", "Stack('b9', 'b1')", "Pickup('b9')", "Stack('b9', 'b1')"]
    with ScriptedServer([Answer(line) for line in script]) as server:
        run(server, tmp_path, max_steps=4)
    (record,) = records(tmp_path)
    warned = ["fails again" in step["observation"] for step in record["steps"]]
    assert warned == [False, True, False, False]  # another failing line breaks the run of failures


def test_a_model_that_keeps_failing_is_an_llm_error_and_the_run_goes_on(tmp_path: Path) -> None:
    plan = expert_lines("blockworld-02")
    with ScriptedServer([Status(500), Status(500), *(Answer(line) for line in plan)]) as server:
        summary = run(server, tmp_path, tasks=(TASK, "blockworld-02"))
    by_task = {r["task"]: r for r in records(tmp_path)}
    assert by_task[TASK]["status"] == "llm_error" and "500" in by_task[TASK]["error"]
    assert by_task["blockworld-02"]["success"]
    assert summary.llm_errors == 1 and summary.errors == 0


def test_a_rerun_with_the_cache_makes_no_request(tmp_path: Path) -> None:
    plan = expert_lines()
    cache = ResponseCache(tmp_path / "cache")
    with ScriptedServer([Answer(line) for line in plan]) as server:  # the cache is keyed by the server too
        first = run(server, tmp_path / "a", cache=cache)
        asked = len(server.received)
        second = run(server, tmp_path / "b", cache=cache)  # a new run directory
        assert len(server.received) == asked == len(plan)
    assert first.success_rate == second.success_rate == 1.0
    assert second.usage is not None and second.usage.cached_calls == len(plan)


def test_a_run_directory_never_mixes_models(tmp_path: Path) -> None:
    with ScriptedServer([Answer(line) for line in expert_lines()]) as server:
        run(server, tmp_path)
    settings = RunSettings(env=BLOCKS, method=Method.act, max_steps=30, model=ModelSettings(model="other"))
    assert "model" in differences(settings, settings.model_copy(update={"model": ModelSettings(model="m")}))


# --- the CLI ----------------------------------------------------------------------------------------


def test_eval_act_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedServer(responder=lambda body: Answer("Pickup('b3')")) as server:
        args = ["eval", "--env", "pddl/blockworld", "--tasks", "0", "--method", "act", "--model", "m"]
        args += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--json"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "act" and summary["usage"]["calls"] >= 1
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["model"]["model"] == "m" and config["run"]["max_steps"] == 30
    assert (out / CALLS).exists()


def test_a_model_that_fails_the_same_way_three_times_in_a_row_stops_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedServer(responder=lambda body: Status(503, "overloaded")) as server:
        args = ["eval", "--env", "pddl/blockworld", "--tasks", "0-4", "--seeds", "1", "--method", "act"]
        args += ["--model", "m", "--base-url", server.base_url, "--no-cache", "--workers", "1", "--out", str(out)]
        result = CliRunner().invoke(app, args, env={"LEARNACT_MODEL_RETRIES": "0", "COLUMNS": "300"})
    assert result.exit_code == 3, result.output
    assert "3 episodes in a row ended by the same model failure, so the run stopped" in result.stderr
    assert "HTTP 503 after 1 try" in result.stderr and "--model-retries" in result.stderr
    # Not five: the run stopped (the next episode may have begun its request when it did), and none was retried.
    assert len(server.received) <= 4
    assert [r["status"] for r in records(out)] == ["llm_error"] * 3


def test_the_model_timeout_is_one_flag(tmp_path: Path) -> None:
    with ScriptedServer(responder=lambda body: Answer("late", delay_s=30)) as server:
        args = ["eval", "--env", "pddl/blockworld", "--tasks", "0", "--seeds", "1", "--method", "act", "--model", "m"]
        args += ["--base-url", server.base_url, "--no-cache", "--out", str(tmp_path / "run")]
        args += ["--model-timeout", "1", "--model-retries", "0"]
        started = time.monotonic()
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert time.monotonic() - started < 20
    assert "no complete answer within 1 s after 1 try" in records(tmp_path / "run")[0]["error"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1", "http://user:pw@127.0.0.1/v1", "localhost:8000"])
def test_a_base_url_that_cannot_be_used_is_refused_before_anything_runs(tmp_path: Path, url: str) -> None:
    args = ["eval", "--env", "pddl/blockworld", "--method", "act", "--model", "m", "--base-url", url]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "base URL" in result.stderr and "--base-url" in result.stderr
    assert not (tmp_path / "run").exists()


def test_with_learned_actions_the_instruction_lists_them_first_and_asks_for_any_action() -> None:
    from learnact.actions.models import ActionSet, LearnedAction
    from learnact.engine.agents.prompts import instruction

    env = make_env(BLOCKS)
    code = 'def stack_on(block, target):\n    """Stack it."""\n    Pickup(block)\n    Stack(block, target)\n'
    actions = ActionSet(
        actions=(
            LearnedAction(name="stack_on", code=code, description="Stack a block.", example="stack_on('b1', 'b2')"),
        )
    )
    with_actions = instruction(False, env.name, "blockworld", env.primitives(), actions=actions)
    assert with_actions.index("stack_on(block, target)") < with_actions.index("Pickup(")
    assert "a single call of one action, learned or primitive, such as stack_on('b1', 'b2')" in with_actions
    plain = instruction(False, env.name, "blockworld", env.primitives())
    assert "a single call of one primitive action, such as" in plain and "learned" not in plain


def test_a_learned_action_call_works_only_when_every_primitive_call_inside_was_valid() -> None:
    """It acted when at least one was: a call that changed the state and then failed is told apart from one that
    changed nothing."""
    from learnact.actions.models import ActionSet, LearnedAction
    from learnact.engine.records import StepRecord
    from learnact.engine.runs.episode import learned_use
    from learnact.sandbox import ExecutionResult, ExecutionStatus
    from learnact.sandbox.result import PrimitiveCall

    def step(index: int, code: str, *valid: bool, status: str = "ok") -> StepRecord:
        calls = [PrimitiveCall(name="Pickup", args=["b1"], observation="o", valid=v) for v in valid]
        result = ExecutionResult(status=ExecutionStatus(status), calls=calls)
        return StepRecord(index=index, code=code, result=result, observation="o", duration_s=0.0)

    actions = ActionSet(actions=(LearnedAction(name="stack_on", code="def stack_on(a, b):\n    pass\n"),))
    steps = [
        step(0, "stack_on('b1', 'b2')", True, True),
        step(1, "stack_on('b2', 'b3')", True, False),  # the environment refused the second primitive call
        step(2, "stack_on('b2', 'b3')", status="error"),
        step(3, "Pickup('b1')", True),
        StepRecord(index=4, code="", result=None, observation="OK.", duration_s=0.0),  # a Think step
        step(5, "stack_on('b9', 'b9')"),  # returned before any primitive call: it did nothing
        step(6, "stack_on('b3', 'b4')", False, False),  # every primitive call refused: it did not act
    ]
    use = learned_use(steps, actions)
    assert use is not None and (use.code_steps, use.learned_steps, use.learned_ok, use.learned_acted) == (6, 5, 1, 2)
    assert use.describe() == (
        "learned actions: 5 of 6 test steps called one (83%); 1 of those worked (20%), 2 acted (at least one"
        " valid primitive call)"
    )
    assert learned_use(steps, None) is None


def test_eval_without_a_model_says_what_to_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "--env", "pddl/blockworld", "--method", "act", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.output and "--model local" in result.output


# --- code_as_policy ---------------------------------------------------------------------------------


def program_of(plan: list[str]) -> str:
    """A program that solves the task: a helper function holding the expert's plan lines, then its call."""
    body = "\n".join(f"    {line}" for line in plan)
    return f"def solve():\n{body}\n\n\ndef report():\n    print('done')\n\n\nsolve()\nreport()\n"


def test_code_as_policy_runs_one_program_that_solves_the_task(tmp_path: Path) -> None:
    plan = expert_lines()
    with ScriptedServer([Answer(program_of(plan))]) as server:
        summary = run(server, tmp_path, method=Method.code_as_policy)
    (record,) = records(tmp_path)
    assert summary.success_rate == 1.0 and record["success"] and record["progress"] == 1.0
    assert record["ended"] == "done" and len(record["steps"]) == 1 and len(server.received) == 1
    (step,) = record["steps"]
    assert step["code"] == program_of(plan) and step["result"]["status"] == "ok"
    assert [c["name"] for c in step["result"]["calls"]] == [line.split("(")[0] for line in plan]
    system, prompt = (m["content"] for m in server.received[0].body["messages"])
    assert "one complete Python program" in system and "Pickup(block)" in system
    assert "Program:\nUnstack('b2', 'b1')\nPutdown('b2')" in prompt  # the demonstration as a program
    reset = make_env(BLOCKS).reset(TASK)
    assert reset.goal in prompt and f"Initial state: {reset.observation}" in prompt
    assert "stop" not in server.received[0].body or not server.received[0].body["stop"]


def test_a_rejected_program_ends_the_episode_failed_not_crashed(tmp_path: Path) -> None:
    with ScriptedServer([Answer("import os\nos.system('ls')\n")]) as server:
        summary = run(server, tmp_path, method=Method.code_as_policy)
    (record,) = records(tmp_path)
    assert record["status"] == "finished" and not record["success"] and record["ended"] == "policy_end"
    assert summary.success_rate == 0.0 and summary.errors == 0 and len(server.received) == 1
    (step,) = record["steps"]
    assert step["result"]["status"] == "rejected" and "rejected" in step["observation"]


def test_a_program_that_fails_midway_is_recorded_with_its_progress(tmp_path: Path) -> None:
    plan = expert_lines()
    program = f"def first():\n    {plan[0]}\n\n\nfirst()\nraise ValueError('stop here')\n"
    with ScriptedServer([Answer(program)]) as server:
        run(server, tmp_path, method=Method.code_as_policy)
    (record,) = records(tmp_path)
    assert record["status"] == "finished" and not record["success"]
    assert record["steps"][0]["result"]["status"] == "error" and "ValueError" in record["steps"][0]["observation"]


@pytest.mark.parametrize(
    ("answer", "program"),
    [
        (
            "Here is my program:\n```python\ndef f():\n    Pickup('b1')\n\n\nf()\n```\nIt picks up b1.",
            "def f():\n    Pickup('b1')\n\n\nf()\n",
        ),
        ("Pickup('b1')\nStack('b1', 'b2')", "Pickup('b1')\nStack('b1', 'b2')\n"),
        ("```\n    Pickup('b1')\n", "Pickup('b1')\n"),
        ("", None),
        ("x = 1\n" * 10000, None),  # too long
    ],
)
def test_program_answers_are_extracted(answer: str, program: str | None) -> None:
    assert parse_program(answer) == program


def test_a_fenced_program_answer_is_run_without_its_prose(tmp_path: Path) -> None:
    plan = expert_lines()
    answer = f"Sure, here is the program.\n\n```python\n{program_of(plan)}```\n\nIt stacks the blocks as asked."
    with ScriptedServer([Answer(answer)]) as server:
        summary = run(server, tmp_path, method=Method.code_as_policy)
    (record,) = records(tmp_path)
    assert summary.success_rate == 1.0 and record["steps"][0]["code"] == program_of(plan)
    assert record["steps"][0]["answer"] == answer


def test_code_as_policy_without_a_program_or_an_answer(tmp_path: Path) -> None:
    with ScriptedServer([Answer("```python\n```"), Status(500), Status(500)]) as server:
        run(server, tmp_path, method=Method.code_as_policy, tasks=(TASK, "blockworld-02"))
    by_task = {r["task"]: r for r in records(tmp_path)}
    empty = by_task[TASK]
    assert empty["status"] == "finished" and not empty["success"] and empty["ended"] == "policy_end"
    assert empty["steps"][0]["result"] is None and "no program" in empty["steps"][0]["observation"]
    assert by_task["blockworld-02"]["status"] == "llm_error" and "500" in by_task["blockworld-02"]["error"]


def test_eval_code_as_policy_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "run"
    program = program_of(expert_lines())
    with ScriptedServer(responder=lambda body: Answer(f"```python\n{program}```")) as server:
        args = ["eval", "--env", "pddl/blockworld", "--tasks", "0", "--seeds", "1", "--method", "code_as_policy"]
        args += ["--model", "m"]
        args += ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--json"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "code_as_policy" and summary["success_rate"] == 1.0
    assert summary["usage"]["calls"] == 1 and len(server.received) == 1
    assert server.received[0].body["max_tokens"] == PROGRAM_MAX_TOKENS
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["method"] == "code_as_policy" and config["run"]["model"]["max_tokens"] == PROGRAM_MAX_TOKENS


# --- learnact: learned actions next to the primitives --------------------------------------------------

MOVE = LearnedAction(
    name="move_onto",
    code='def move_onto(block, target):\n    """Pick up a clear block from the table and stack it on target."""\n'
    "    Pickup(block)\n    Stack(block, target)\n",
    description="Picks up a clear block from the table and stacks it on a clear target block.",
    example="move_onto('b1', 'b3')",
    notes=("Only for a block that lies on the table.",),
    version=2,
)


def test_learned_actions_are_shown_loaded_and_called_in_one_step(tmp_path: Path) -> None:
    # blockworld-02: b1 onto b3, then b2 onto b1
    script = [Answer("move_onto('b1', 'b3')"), Answer("Action: move_onto('b2', 'b1')")]
    with ScriptedServer(script) as server:
        summary = run(
            server, tmp_path, method=Method.learnact, tasks=("blockworld-02",), actions=ActionSet(actions=(MOVE,))
        )
    (record,) = records(tmp_path)
    assert summary.success_rate == 1.0 and record["ended"] == "done" and len(record["steps"]) == 2
    first = record["steps"][0]["result"]
    assert first["status"] == "ok" and [c["name"] for c in first["calls"]] == ["Pickup", "Stack"]
    system = server.received[0].body["messages"][0]["content"]
    assert system.index("move_onto(block, target)") < system.index("Pickup(block)")  # learned actions first
    assert "Picks up a clear block from the table" in system and "Example: move_onto('b1', 'b3')" in system
    assert "Note: Only for a block that lies on the table." in system


def test_a_rejected_action_module_ends_the_episode_as_a_recorded_error(tmp_path: Path) -> None:
    unsafe = LearnedAction(name="peek", code='import os\n\n\ndef peek():\n    """List files."""\n    os.listdir(".")\n')
    with ScriptedServer([]) as server:
        summary = run(server, tmp_path, method=Method.learnact, actions=ActionSet(actions=(MOVE, unsafe)))
    (record,) = records(tmp_path)
    assert record["status"] == "error" and record["steps"] == [] and summary.errors == 1
    assert "learned actions could not be loaded" in record["error"] and "import" in record["error"]
    assert "actions:7:8: LA002" in record["error"]  # the finding, with its line in the loaded module
    assert server.received == []  # no model call for an episode that cannot run


def test_act_and_react_are_not_shown_learned_actions_nor_notes(tmp_path: Path) -> None:
    from learnact.engine.agents import PolicyContext, make_policy

    env = make_env(BLOCKS)
    reset = env.reset(TASK)
    model = ModelSettings(model="m")
    actions, notes = ActionSet(actions=(MOVE,)), ("a lesson",)
    for method, shown_actions, shown_notes in [
        (Method.act, False, False), (Method.react_reflexion, False, True), (Method.learnact, True, False)
    ]:  # fmt: skip
        context = PolicyContext(env, "blockworld", reset, object(), model, notes=notes, actions=actions)  # type: ignore[arg-type]
        policy = make_policy(method, context)
        assert ("move_onto(block, target)" in policy.system) is shown_actions  # type: ignore[attr-defined]
        assert ("- a lesson" in policy.system) is shown_notes  # type: ignore[attr-defined]
