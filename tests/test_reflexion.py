"""Reflexion (act_reflexion, react_reflexion): the method (learner/reflexion.py) on its own, then `learnact learn`
through the real sandbox and a scripted OpenAI-compatible stand-in (tests/llm_server.py), the notes it stores,
resuming an interrupted run without repeating a model call, and `learnact eval --notes`. Never the network."""

from __future__ import annotations

import json
from pathlib import Path
from string import Template

import pytest
from llm_server import Answer, ScriptedServer, Status
from typer.testing import CliRunner

from learnact.actions.transcript import Turn
from learnact.engine.agents import call_code
from learnact.engine.commands.cli import app
from learnact.engine.llm import CALLS, OpenAIBackbone
from learnact.engine.records import Method, ModelSettings, RunSettings
from learnact.engine.rundir import EPISODES, SPLITS
from learnact.engine.runs.learning import NOTES, ReflexionConfig, run_reflexion
from learnact.engine.splits import split_tasks
from learnact.envs import EnvSpec, make_env
from learnact.learner.reflexion import (
    MAX_NOTE_CHARS,
    Attempt,
    Note,
    PromptTemplates,
    Trajectory,
    clean_reflection,
    reflection_prompt,
    reflexion,
)
from learnact.sandbox import SandboxConfig

BLOCKS = EnvSpec(name="pddl/blockworld")
TEMPLATES = PromptTemplates(
    reflection=Template("$domain\n$goal\nObservation: $initial\n$trajectory\n$ending\nWhy did it fail?"),
    omitted=Template("($count earlier steps are not shown.)"),
)
FAILED = Trajectory(
    goal="The goal is: b1 is on b2.",
    initial="b1 is on the table.",
    steps=(Turn("Stack('b1', 'b2')", "The action is not valid."), Turn("pick it up first", "OK.", thought=True)),
    ending="The attempt stopped after 2 steps.",
)


# --- the method -------------------------------------------------------------------------------------


def test_the_reflection_prompt_holds_the_failed_trajectory() -> None:
    prompt = reflection_prompt(FAILED, TEMPLATES, domain="Blocksworld.")
    assert prompt.startswith("Blocksworld.\nThe goal is: b1 is on b2.\nObservation: b1 is on the table.\n")
    assert "Action: Stack('b1', 'b2')\nObservation: The action is not valid.\nThink: pick it up first" in prompt
    assert "The attempt stopped after 2 steps.\nWhy did it fail?" in prompt


def test_a_long_trajectory_is_bounded_in_the_prompt() -> None:
    steps = tuple(Turn(f"Pickup('b{i}')", "x" * 5000) for i in range(100))
    prompt = reflection_prompt(Trajectory("goal", "start", steps, "end"), TEMPLATES, shown_steps=30, domain="")
    assert "(70 earlier steps are not shown.)" in prompt and "Pickup('b69')" not in prompt and "Pickup('b99')" in prompt
    assert len(prompt) < 30 * 2 * 700


@pytest.mark.parametrize(
    ("answer", "note"),
    [
        ("Reflection: I stacked b1 before picking it up.\n\nNext time, pick a block up first.",
         "I stacked b1 before picking it up. Next time, pick a block up first."),
        ("```\nPick up first.\n```", "Pick up first."),
        ("Pick up first.\nAction: Pickup('b1')\nObservation: You hold b1.", "Pick up first."),
        ("tab\there, escape \x1b[31m and \u202e", "tab here, escape [31m and"),
        ("   \n\n", ""),
    ],
)  # fmt: skip
def test_a_reflection_is_cleaned_into_one_paragraph(answer: str, note: str) -> None:
    assert clean_reflection(answer) == note


def test_a_long_reflection_is_cut_after_its_last_whole_sentence() -> None:
    answer = " ".join(f"Sentence number {i} says something useful." for i in range(100))
    note = clean_reflection(answer)
    assert len(note) <= MAX_NOTE_CHARS and note.endswith("useful.")
    assert len(clean_reflection("word " * 1000)) <= MAX_NOTE_CHARS


def scripted_attempts(successes: dict[tuple[str, int], bool]):
    """An attempt callable that succeeds where ``successes`` says, recording what it was called with."""
    calls: list[tuple[str, int, tuple[str, ...]]] = []

    def attempt(task: str, index: int, notes: tuple[str, ...]) -> Attempt:
        calls.append((task, index, notes))
        return Attempt(successes.get((task, index), False), lambda: FAILED)

    return attempt, calls


def test_a_failed_task_is_retried_with_the_reflections_so_far_up_to_the_round_limit() -> None:
    attempt, attempts = scripted_attempts({("t2", 1): True})
    asked: list[tuple[str, int, str]] = []

    def reflect(task: str, round: int, prompt: str) -> str:
        asked.append((task, round, prompt))
        return f"lesson {len(asked)}"

    notes = reflexion(["t1", "t2"], attempt, reflect, TEMPLATES, rounds=2, domain="")
    assert attempts == [
        ("t1", 0, ()), ("t1", 1, ("lesson 1",)), ("t1", 2, ("lesson 1", "lesson 2")),  # failed 3 times: 2 rounds
        ("t2", 0, ("lesson 1", "lesson 2")), ("t2", 1, ("lesson 1", "lesson 2", "lesson 3")),  # then succeeded
    ]  # fmt: skip
    assert [(n.task, n.round, n.text) for n in notes] == [
        ("t1", 1, "lesson 1"),
        ("t1", 2, "lesson 2"),
        ("t2", 1, "lesson 3"),
    ]
    assert all("Action: Stack('b1', 'b2')" in prompt for _, _, prompt in asked)


def test_notes_already_written_are_not_asked_for_again() -> None:
    attempt, _ = scripted_attempts({})
    written = [Note(task="t1", round=1, text="lesson 1")]
    asked: list[int] = []
    notes = reflexion(
        ["t1"], attempt, lambda t, r, p: asked.append(r) or "lesson 2", TEMPLATES, written=written, domain=""
    )
    assert asked == [2] and [n.text for n in notes] == ["lesson 1", "lesson 2"]


def test_a_reflection_without_a_lesson_ends_the_tasks_attempts() -> None:
    attempt, attempts = scripted_attempts({})
    notes = reflexion(["t1"], attempt, lambda t, r, p: "```\n```", TEMPLATES, domain="")
    assert len(attempts) == 1 and [n.text for n in notes] == [""]


# --- learnact learn through the sandbox ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def train_task() -> str:
    (task,) = split_tasks(make_env(BLOCKS).tasks(), 0, per_type=1).train
    return task


def expert_plan(task: str) -> list[str]:
    env = make_env(BLOCKS)
    env.reset(task)
    return [call_code(name, args) for name, args in env.expert_calls()]


def is_reflection(body: dict) -> bool:
    return body["messages"][0]["role"] == "user"


def system_of(body: dict) -> str:
    return body["messages"][0]["content"]


def learner(lessons: list[str], solve_after: int | None = None):
    """A stand-in model: reflections answer the next lesson; the agent fails (an invalid stack) until its
    instruction shows ``solve_after`` notes, then answers the expert's plan, step by step."""
    plan = expert_plan(train_task())
    replies = iter(lessons)

    def respond(body: dict) -> Answer:
        if is_reflection(body):
            return Answer(f"Reflection: {next(replies)}")
        shown = sum(lesson in system_of(body) for lesson in lessons)
        if solve_after is not None and shown >= solve_after:
            done = body["messages"][-1]["content"].split("Now it is your turn.")[1].count("\nAction: ")
            return Answer(plan[done] if done < len(plan) else plan[-1])
        return Answer("Stack('b9', 'b1')")

    return respond


def learn_args(server: ScriptedServer, out: Path, *more: str) -> list[str]:
    return [
        "learn", "--env", "pddl/blockworld", "--method", "act_reflexion", "--model", "m", "--base-url", server.base_url,
        "--train-per-type", "1", "--max-steps", "3", "--no-cache", "--out", str(out), *more,
    ]  # fmt: skip


@pytest.mark.usefixtures("sandbox_image")
def test_learn_reflects_on_each_failure_and_retries_with_the_notes(tmp_path: Path) -> None:
    out = tmp_path / "learn"
    lessons = ["Stack only a block you hold.", "Pick a block up before stacking it."]
    with ScriptedServer(responder=learner(lessons)) as server:
        result = CliRunner().invoke(app, learn_args(server, out))
    assert result.exit_code == 0, result.output
    task = train_task()
    reflections = [r.body for r in server.received if is_reflection(r.body)]
    agent = [r.body for r in server.received if not is_reflection(r.body)]
    assert len(reflections) == 2  # the round limit: 2 reflections, 3 attempts
    assert all("Action: Stack('b9', 'b1')" in b["messages"][0]["content"] for b in reflections)  # the trajectory
    assert make_env(BLOCKS).reset(task).goal in reflections[0]["messages"][0]["content"]
    # attempt 1 without notes, attempt 2 with the first, attempt 3 with both (3 steps each)
    assert [sum(lesson in system_of(b) for lesson in lessons) for b in agent] == [0] * 3 + [1] * 3 + [2] * 3
    notes = json.loads((out / NOTES).read_text())
    assert notes["complete"] and notes["method"] == "act_reflexion" and notes["env"]["name"] == "pddl/blockworld"
    assert [(n["task"], n["round"], n["text"]) for n in notes["notes"]] == [
        (task, 1, lessons[0]),
        (task, 2, lessons[1]),
    ]
    episodes = [json.loads(line) for line in (out / EPISODES).read_text().splitlines()]
    assert [e["task"] for e in episodes] == [task] * 3 and not any(e["success"] for e in episodes)
    calls = [json.loads(line) for line in (out / CALLS).read_text().splitlines()]
    assert len(calls) == len(server.received) == 11
    assert json.loads((out / SPLITS).read_text())["splits"][0]["train"] == [task]
    assert json.loads((out / "config.json").read_text())["rounds"] == 2


@pytest.mark.usefixtures("sandbox_image")
def test_a_task_solved_after_a_reflection_is_not_tried_again(tmp_path: Path) -> None:
    out = tmp_path / "learn"
    with ScriptedServer(responder=learner(["Unstack what lies on a block first."], solve_after=1)) as server:
        result = CliRunner().invoke(app, [*learn_args(server, out), "--max-steps", "10", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [(a["attempt"], a["notes_shown"], a["success"]) for a in summary["attempts"]] == [
        (0, 0, False),
        (1, 1, True),
    ]
    assert [n["text"] for n in summary["notes"]] == ["Unstack what lies on a block first."] and summary["complete"]
    assert sum(is_reflection(r.body) for r in server.received) == 1


@pytest.mark.usefixtures("sandbox_image")
def test_a_resumed_learning_run_repeats_no_model_call(tmp_path: Path) -> None:
    out = tmp_path / "learn"
    lessons = ["Stack only a block you hold.", "Pick a block up before stacking it."]
    # the second reflection fails: the run stops there; after the restart the model answers it
    reflections = iter([Answer(lessons[0]), Status(400), Answer(lessons[1])])

    def respond(body: dict) -> Answer | Status:
        return next(reflections) if is_reflection(body) else Answer("Stack('b9', 'b1')")

    with ScriptedServer(responder=respond) as server:  # one server: the same model for both runs
        stopped = CliRunner().invoke(app, [*learn_args(server, out), "--json"])
        before = [json.dumps(r.body, sort_keys=True) for r in server.received]
        assert stopped.exit_code == 3, stopped.output
        assert "the learning run stopped" in stopped.output and "run the same command" in stopped.output
        notes = json.loads((out / NOTES).read_text())
        assert not notes["complete"] and [n["text"] for n in notes["notes"]] == [lessons[0]]
        refused = CliRunner().invoke(app, [*eval_args("--method", "act_reflexion", "--notes", str(out)),
                                           "--out", str(tmp_path / "e")])  # fmt: skip
        assert refused.exit_code == 2 and "did not finish" in refused.output

        resumed = CliRunner().invoke(app, [*learn_args(server, out), "--json"])
        after = [json.dumps(r.body, sort_keys=True) for r in server.received][len(before) :]
    assert resumed.exit_code == 0, resumed.output
    # asked again: only the reflection that got no answer; then the third attempt (3 steps) with both notes
    assert len(after) == 1 + 3 and after[0] == before[-1] and not set(after[1:]) & set(before)
    summary = json.loads(resumed.stdout)
    assert [(a["attempt"], a["notes_shown"]) for a in summary["attempts"]] == [(0, 0), (1, 1), (2, 2)]
    assert [n["text"] for n in summary["notes"]] == lessons and summary["complete"]
    assert summary["usage"]["calls"] == len(before) + len(after)  # calls.jsonl: both runs, the failed call too


@pytest.mark.usefixtures("sandbox_image")
def test_an_interrupted_run_keeps_its_attempts_and_resumes_after_them(tmp_path: Path) -> None:
    out = tmp_path / "learn"
    task = train_task()
    settings = RunSettings(env=BLOCKS, method=Method.react_reflexion, max_steps=2, sandbox=SandboxConfig(pool_size=1),
                           model=ModelSettings(model="m"))  # fmt: skip
    config = ReflexionConfig(run=settings, seed=0, train=(task,), rounds=1)

    def stop_after_the_first(index: int, record: object, notes: int) -> None:
        raise KeyboardInterrupt

    with ScriptedServer(responder=lambda body: Answer("lesson" if is_reflection(body) else "Pickup('b9')")) as server:
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=2.0, max_retries=0)
        with pytest.raises(KeyboardInterrupt):
            run_reflexion(config, out, backbone, on_attempt=stop_after_the_first)
        assert len(server.received) == 2  # the first attempt's 2 steps, recorded before the interrupt
        summary = run_reflexion(config, out, backbone)
        assert len(server.received) == 2 + 1 + 2  # the reflection, then the second attempt
    assert summary.complete and [n.text for n in summary.notes] == ["lesson"]
    assert "Think:" in server.received[0].body["messages"][0]["content"]  # react_reflexion's agent
    assert "lesson" in server.received[-1].body["messages"][0]["content"]


# --- learnact eval --notes ----------------------------------------------------------------------------


def write_notes(run: Path, method: str = "act_reflexion", env: str = "pddl/blockworld") -> None:
    run.mkdir(parents=True, exist_ok=True)
    record = {
        "env": {"name": env}, "method": method, "seed": 0, "train": ["blockworld-07"], "rounds": 2, "complete": True,
        "notes": [{"task": "blockworld-07", "round": 1, "text": "Unstack the block on top before picking one up."}],
    }  # fmt: skip
    (run / NOTES).write_text(json.dumps(record))


def eval_args(*more: str) -> list[str]:
    return ["eval", "--env", "pddl/blockworld", "--tasks", "0", "--seeds", "1", "--model", "m", *more]


@pytest.mark.usefixtures("sandbox_image")
def test_eval_with_notes_shows_them_to_the_agent(tmp_path: Path) -> None:
    write_notes(tmp_path / "learned")
    out = tmp_path / "eval"
    with ScriptedServer(responder=lambda body: Answer("Pickup('b9')")) as server:
        args = eval_args("--method", "act_reflexion", "--notes", str(tmp_path / "learned"), "--max-steps", "2")
        result = CliRunner().invoke(app, [*args, "--base-url", server.base_url, "--no-cache", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(server.received) == 2
    assert all("- Unstack the block on top before picking one up." in system_of(r.body) for r in server.received)
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["notes"] == ["Unstack the block on top before picking one up."]
    assert config["run"]["trained_on"] == ["blockworld-07"]


@pytest.mark.parametrize(
    ("method", "env", "says"),
    [
        ("react_reflexion", "pddl/blockworld", "learned by act_reflexion, not react_reflexion"),
        ("act_reflexion", "pddl/gripper", "learned on pddl/blockworld, not pddl/gripper"),
    ],
)
def test_eval_refuses_notes_of_another_method_or_environment(tmp_path: Path, method: str, env: str, says: str) -> None:
    write_notes(tmp_path / "learned")
    args = ["eval", "--env", env, "--method", method, "--notes", str(tmp_path / "learned"), "--model", "m"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "eval")])
    assert result.exit_code == 2 and says in result.output
    assert not (tmp_path / "eval").exists()


def test_a_reflexion_method_without_notes_says_to_learn_first(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*eval_args("--method", "react_reflexion"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "learnact learn --method react_reflexion" in result.output
    assert "--notes" in result.output


def test_notes_for_a_method_that_uses_none_are_refused(tmp_path: Path) -> None:
    write_notes(tmp_path / "learned")
    result = CliRunner().invoke(app, [*eval_args("--method", "act", "--notes", str(tmp_path / "learned"))])
    assert result.exit_code == 2 and "uses no notes" in result.output


def test_learn_refuses_a_method_that_learns_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["learn", "--env", "pddl/blockworld", "--method", "act", "--model", "m"])
    assert result.exit_code == 2 and "act_reflexion" in result.output


@pytest.mark.parametrize("spread", [["--workers", "2"], ["--executor", "ray"]])
def test_reflexion_attempts_run_here_one_at_a_time(tmp_path: Path, spread: list[str]) -> None:
    args = ["learn", "--env", "pddl/blockworld", "--method", "act_reflexion", "--model", "m"]
    args += ["--base-url", "http://127.0.0.1:9", "--out", str(tmp_path / "run"), *spread]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "its attempts run here, one at a time" in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()
