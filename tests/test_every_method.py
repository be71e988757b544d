"""Every method runs on every domain: `learnact eval`, through the CLI as a user runs it, with act, react,
code_as_policy, act_reflexion, react_reflexion and learnact on the four PDDL domains and ALFWorld (one task, a
few steps each), against the scripted OpenAI-compatible stand-in (tests/llm_server.py). The stand-in answers
the domain's own primitives (the expert's first calls on the task), so the static check and the Docker sandbox
run them on the real environment. The reflexion methods use the notes of a `learnact learn` run made against
the stand-in; learnact uses a library of one learned action written with the library API. Never the network."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer
from typer.testing import CliRunner

from learnact.actions.library import Library, Origin, VersionDraft
from learnact.engine.agents import call_code
from learnact.engine.agents.prompts import demonstration
from learnact.engine.commands.cli import app
from learnact.engine.records import Method
from learnact.engine.rundir import EPISODES, SUMMARY
from learnact.engine.runs.learning import NOTES
from learnact.envs import EnvSpec, PrimitiveSpec, env_profile, make_env, select_tasks

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("sandbox_image")]

METHODS = (
    Method.act,
    Method.react,
    Method.code_as_policy,
    Method.act_reflexion,
    Method.react_reflexion,
    Method.learnact,
)
DOMAINS = ("pddl/tyreworld", "pddl/blockworld", "pddl/barman", "pddl/gripper", "alfworld")
STEPS = 3  # steps per episode (fewer where the expert solves the task sooner)
ALFWORLD_SPLIT = "valid_seen"  # the split the test data has (evaluation's default, valid_unseen, is not there)
LESSON = "Check what the last observation says before the next call."
THOUGHT = "I will begin with the first step of the plan."


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@dataclass(frozen=True)
class Domain:
    """One domain's first task and what the expert does there: its first STEPS calls, as code, with the
    observations the environment answered."""

    env: str
    options: tuple[str, ...]  # the CLI's environment options
    task: str
    type: str
    goal: str
    primitives: tuple[PrimitiveSpec, ...]
    lines: tuple[str, ...]
    calls: tuple[tuple[str, list], ...]
    observations: tuple[str, ...]
    solved: bool  # whether these calls reach the goal


_domains: dict[str, Domain] = {}


@pytest.fixture
def domain(request: pytest.FixtureRequest) -> Domain:
    env_name: str = request.param
    if env_name not in _domains:
        options: tuple[str, ...] = ()
        spec = EnvSpec(name=env_name)
        if env_name.startswith("alfworld"):
            data = request.getfixturevalue("alfworld_data")
            options = ("--alfworld-data", str(data), "--split", ALFWORLD_SPLIT)
            spec = EnvSpec(name=env_name, alfworld_data=str(data), split=ALFWORLD_SPLIT)
        env = make_env(spec)
        (task,) = select_tasks(env, "0")
        task_type = next(t.type for t in env.tasks() if t.id == task)
        reset = env.reset(task)
        calls, observations, solved = [], [], False
        for name, args in env.expert_calls():  # ALFWorld's expert chooses each call after the last one ran
            outcome = env.call(name, args)
            calls.append((name, args))
            observations.append(outcome.observation)
            solved = outcome.success
            if outcome.done or len(calls) == STEPS:
                break
        _domains[env_name] = Domain(
            env=env_name, options=options, task=task, type=task_type, goal=reset.goal,
            primitives=tuple(env.primitives()), lines=tuple(call_code(n, a) for n, a in calls), calls=tuple(calls),
            observations=tuple(observations), solved=solved,
        )  # fmt: skip
    return _domains[env_name]


def learned_action(domain: Domain) -> tuple[str, str, str]:
    """A learned action for the domain: its expert's first primitive, performed and checked. Returns the
    action's name, its code and the agent's call of it on the task."""
    first, args = domain.calls[0]
    spec = next(p for p in domain.primitives if p.name == first)
    params = ", ".join(p.name for p in spec.params)
    name = f"checked_{first}"
    call = call_code(name, args)
    code = (
        f"def {name}({params}):\n"
        f'    """Perform {first}({params}) and return what was observed; refuse when an argument is empty.\n'
        f"    Example: {call}\n"
        f'    """\n'
        f"    for given in ({params}{',' if len(spec.params) == 1 else ''}):\n"
        f"        if not str(given).strip():\n"
        f'            raise ValueError("every argument of {first} must name something")\n'
        f"    return {first}({params})\n"
    )
    return name, code, call


THINKING = (Method.react, Method.react_reflexion)  # the methods that may write Think: steps
REFLECTING = (Method.act_reflexion, Method.react_reflexion)  # the methods shown notes of reflection


def answers(method: Method, domain: Domain) -> list[str]:
    """What the stand-in answers an evaluation of ``method``, request by request."""
    lines = list(domain.lines)
    if method is Method.code_as_policy:
        body = "\n".join(f"    {line}" for line in lines[:-1])
        return [f"```python\ndef opening():\n{body}\n\n\nopening()\n{lines[-1]}\n```"]
    if method in THINKING:
        return [f"Think: {THOUGHT}", *lines[: STEPS - 1]]
    if method is Method.learnact:
        return [learned_action(domain)[2], *lines[1:]]
    return lines


def eval_args(method: Method, domain: Domain, server: ScriptedServer, out: Path, *more: str) -> list[str]:
    return [
        "eval", "--env", domain.env, *domain.options, "--tasks", "0", "--method", method.value, "--seeds", "1",
        "--max-steps", str(STEPS), "--model", "m", "--base-url", server.base_url, "--no-cache", "--out", str(out),
        "--json", *more,
    ]  # fmt: skip


def notes_run(method: Method, domain: Domain, out: Path) -> Path:
    """A finished `learnact learn` run of ``method`` on the domain: one training task per type, one step per
    attempt, one reflection (the stand-in's LESSON) after the failed first attempt."""

    def respond(body: dict) -> Answer:
        # a reflection request is a single user message; the agent's has its instruction as system message
        return Answer(f"Reflection: {LESSON}") if body["messages"][0]["role"] == "user" else Answer(domain.lines[0])

    with ScriptedServer(responder=respond) as server:
        args = [
            "learn", "--env", domain.env, *domain.options, "--method", method.value, "--model", "m",
            "--base-url", server.base_url, "--train-per-type", "1", "--rounds", "1", "--max-steps", "1",
            "--no-cache", "--out", str(out), "--json",
        ]  # fmt: skip
        learned = CliRunner().invoke(app, args)
    assert learned.exit_code == 0, learned.output
    notes = json.loads((out / NOTES).read_text())
    assert notes["complete"] and LESSON in [n["text"] for n in notes["notes"]]
    return out


def library_of(domain: Domain, folder: Path) -> Path:
    name, code, call = learned_action(domain)
    library = Library(folder)
    library.new_version(
        VersionDraft(
            name=name, code=code, description=f"{domain.calls[0][0]}, checked", example=call, origin=Origin.created
        )
    )
    library.select({name: 1}, score=None, env=domain.env)
    return folder


@pytest.mark.parametrize("domain", DOMAINS, indirect=True)
@pytest.mark.parametrize("method", METHODS, ids=[m.value for m in METHODS])
def test_the_method_runs_on_the_domain_against_an_openai_compatible_server(
    method: Method, domain: Domain, tmp_path: Path
) -> None:
    more: list[str] = []
    if method in REFLECTING:
        more = ["--notes", str(notes_run(method, domain, tmp_path / "learn"))]
    if method is Method.learnact:
        more = ["--library", str(library_of(domain, tmp_path / "library"))]
    out = tmp_path / "run"
    with ScriptedServer([Answer(text) for text in answers(method, domain)]) as server:
        result = CliRunner().invoke(app, eval_args(method, domain, server, out, *more))
    assert result.exit_code == 0, result.output

    summary = json.loads(result.stdout)
    assert summary["method"] == method.value and summary["episodes"] == 1
    assert summary["errors"] == summary["llm_errors"] == 0
    assert json.loads((out / SUMMARY).read_text())["episodes"] == 1
    (record,) = [json.loads(line) for line in (out / EPISODES).read_text().splitlines()]
    assert record["task"] == domain.task and record["type"] == domain.type and record["status"] == "finished"

    # what the model saw: the domain, its primitives with their docs, the goal; the method's own additions
    requests = [r.body for r in server.received]
    system, prompt = requests[0]["messages"][0]["content"], requests[0]["messages"][-1]["content"]
    assert all(r["model"] == "m" for r in requests)
    assert env_profile(domain.env).domain_text(domain.type) in system
    assert all(p.signature() in system and p.doc.strip().splitlines()[0] in system for p in domain.primitives)
    assert (
        domain.goal in prompt and demonstration(domain.env, domain.type, False).goal in prompt
    )  # the type's own example
    assert (LESSON in system) == (method in REFLECTING)
    assert (learned_action(domain)[0] in system) == (method is Method.learnact)

    # what ran: every step's code checked and run in the sandbox, its primitive calls answered by the environment
    steps = record["steps"]
    ran = [s for s in steps if s["thought"] is None]
    assert all(s["result"]["status"] == "ok" for s in ran)
    performed = [c for s in ran for c in s["result"]["calls"]]
    assert [(c["name"], c["args"]) for c in performed] == [(n, list(a)) for n, a in domain.calls[: len(performed)]]
    assert [c["observation"] for c in performed] == list(domain.observations[: len(performed)])
    if method is Method.code_as_policy:
        assert len(requests) == len(steps) == 1 and len(performed) == len(domain.calls)
    else:
        assert len(requests) == len(steps) and len(performed) >= 2
        assert [s["thought"] for s in steps if s["thought"] is not None] == ([THOUGHT] if method in THINKING else [])
    if method is Method.learnact:
        assert ran[0]["code"] == learned_action(domain)[2] and len(ran[0]["result"]["calls"]) == 1
    assert record["success"] == (domain.solved and len(performed) == len(domain.calls))
