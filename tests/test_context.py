"""Context: an agent's history is trimmed to the model's context by token count (the oldest steps first, never
the instruction or the demonstrations, saying how many are not shown), the context is part of a run's
settings, and after a learned action in PDDL the agent sees the final state and the invalid calls, not every
state in between."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer
from typer.testing import CliRunner

from learnact.engine.agents.policy import ModelPolicy, PolicyContext
from learnact.engine.agents.prompts import task_prompt
from learnact.engine.commands.cli import app
from learnact.engine.llm import ChatMessage, OpenAIBackbone
from learnact.engine.records import ModelSettings
from learnact.engine.runs.episode import MAX_INVALID_SHOWN, MAX_OBSERVATIONS_SHOWN, observation_of
from learnact.envs import EnvSpec, env_profile, make_env
from learnact.sandbox import ExecutionResult, ExecutionStatus
from learnact.sandbox.result import PrimitiveCall

TASK = "blockworld-01"
INVALID = "The action is not valid and therefore takes no effect."


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def played(context: int | None, steps: int) -> tuple[ModelPolicy, OpenAIBackbone, list[dict]]:
    """An act agent on blockworld whose model (a scripted server) answers Pickup('b1') ``steps`` times, each
    observation a long one, with the server model's context ``context``: the policy and the requests sent."""
    env = make_env(EnvSpec(name="pddl/blockworld"))
    reset = env.reset(TASK)
    with ScriptedServer(responder=lambda body: Answer("Pickup('b1')")) as server:
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=0, context_tokens=context)
        settings = ModelSettings(model="m", base_url=server.base_url)
        policy = ModelPolicy(PolicyContext(env, "blockworld", reset, backbone, settings))
        for step in range(steps):
            policy.decide(f"state {step}: " + "b1 is on the table. " * 20)
        backbone.close()
    return policy, backbone, [r.body for r in server.received]


def fits(backbone: OpenAIBackbone, system: str, user: str, context: int) -> bool:
    messages = (ChatMessage(role="system", content=system), ChatMessage(role="user", content=user))
    return backbone.count_tokens(messages) + 256 <= context


def test_the_oldest_steps_are_dropped_until_the_prompt_fits_the_context() -> None:
    policy, _, untrimmed = played(None, 12)
    full = untrimmed[-1]["messages"]
    assert full[1]["content"].split("Now it is your turn.")[1].count("Action: Pickup('b1')") == 11  # all of them

    context = 2500
    policy, backbone, bodies = played(context, 12)
    system, user = (m["content"] for m in bodies[-1]["messages"])
    assert system == full[0]["content"]  # the instruction whole
    demonstration, mine = user.split("Now it is your turn.")
    assert demonstration == full[1]["content"].split("Now it is your turn.")[0]  # the demonstration whole
    shown = mine.count("Action: Pickup('b1')")
    assert 0 < shown < 11 and f"({11 - shown} earlier steps are not shown.)" in mine
    assert "state 11: " in mine and f"state {11 - shown}: " not in mine  # the most recent ones kept
    assert fits(backbone, system, user, context)
    one_more = task_prompt(policy.demo, policy.goal, policy.initial, policy.turns, shown + 1, policy.usage).rstrip()
    assert not fits(backbone, system, one_more, context)  # no step dropped that would have fitted


def test_when_not_even_the_last_step_fits_none_is_shown() -> None:
    _, _, bodies = played(1000, 3)  # the instruction and the demonstration alone are over 1000 tokens
    mine = bodies[-1]["messages"][1]["content"].split("Now it is your turn.")[1]
    assert "Action:" not in mine and "(2 earlier steps are not shown.)" in mine


@pytest.mark.usefixtures("sandbox_image")
def test_n_ctx_is_recorded_with_the_model_and_a_server_models_prompts_fit_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    answers = (Answer(f"Pickup('n{i % 2}')") for i in itertools.count())  # alternating: never 5 alike
    with ScriptedServer(responder=lambda body: next(answers)) as server:
        args = ["eval", "--env", "pddl/blockworld", "--tasks", "0", "--seeds", "1", "--method", "act", "--model", "m"]
        args += ["--n-ctx", "1400", "--max-steps", "8", "--base-url", server.base_url, "--no-cache", "--out", str(out)]
        result = CliRunner().invoke(app, args)
        bodies = [r.body for r in server.received]
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["model"]["context_tokens"] == 1400
    backbone = OpenAIBackbone("m", base_url=server.base_url, context_tokens=1400)
    assert len(bodies) == 8 and all(fits(backbone, *(m["content"] for m in body["messages"]), 1400) for body in bodies)
    assert "earlier steps are not shown" in bodies[-1]["messages"][1]["content"]


def call(name: str, *args: str, observation: str, valid: bool = True) -> PrimitiveCall:
    return PrimitiveCall(name=name, args=list(args), observation=observation, valid=valid)


def test_after_a_learned_action_in_pddl_the_agent_sees_the_final_state_and_the_invalid_calls() -> None:
    assert env_profile("pddl/blockworld").final_state_observations
    assert not env_profile("alfworld").final_state_observations  # ALFWorld's observations are not states
    result = ExecutionResult(
        status=ExecutionStatus.ok,
        calls=[
            call("Unstack", "b2", "b1", observation="b2 is held. b1 is clear."),
            call("Stack", "b2", "b9", observation=INVALID, valid=False),
            call("Putdown", "b2", observation="b2 is on the table. b1 is clear."),
            call("Pickup", "b3", observation=INVALID, valid=False),
        ],
    )
    # the first invalid call says what went wrong; the ones after it are counted
    assert observation_of(result, final_state=True) == (
        f"b2 is on the table. b1 is clear.\nStack('b2', 'b9'): {INVALID}\n(1 more call was not valid.)"
    )
    every = observation_of(result)
    assert every.count(INVALID) == 2 and every.startswith("b2 is held.")
    # a call refused before the step first acted changed nothing: the agent is not told of it
    reached = ExecutionResult(
        status=ExecutionStatus.ok,
        calls=[call("Pickup", "b2", observation=INVALID, valid=False), *result.calls[:1]],
    )
    assert observation_of(reached, final_state=True) == "b2 is held. b1 is clear."
    # One primitive call reads as it always did; an error still follows what was seen.
    single = ExecutionResult(status=ExecutionStatus.ok, calls=[call("Pickup", "b3", observation=INVALID, valid=False)])
    assert observation_of(single, final_state=True) == INVALID


def test_a_learned_call_that_makes_many_invalid_calls_shows_the_first_and_counts_the_rest() -> None:
    """A loop over a 20-item list made 38 invalid calls, 2,000 tokens in every later prompt of the episode."""
    refused = [call("Unstack", f"b{i}", f"b{i + 1}", observation=INVALID, valid=False) for i in range(38)]
    result = ExecutionResult(
        status=ExecutionStatus.ok, calls=[call("Pickup", "b9", observation="b9 is held."), *refused]
    )
    shown = observation_of(result, final_state=True).splitlines()
    assert shown[0] == "b9 is held."
    assert shown[1:-1] == [f"Unstack('b{i}', 'b{i + 1}'): {INVALID}" for i in range(MAX_INVALID_SHOWN)]
    assert shown[-1] == f"({38 - MAX_INVALID_SHOWN} more calls were not valid.)"
    one_more = ExecutionResult(status=ExecutionStatus.ok, calls=refused[: MAX_INVALID_SHOWN + 1])
    assert observation_of(one_more, final_state=True).endswith("\n(1 more call was not valid.)")


def test_a_learned_call_in_alfworld_shows_its_last_observations_after_a_count_of_the_earlier_ones() -> None:
    """A search over every receptacle makes thirty calls; what it ended with is in the last ones."""
    arrivals = [call("go_to", f"cabinet {i}", observation=f"You arrive at cabinet {i}.") for i in range(1, 31)]
    taken = call("take", "apple 1", "cabinet 30", observation="You pick up the apple 1 from the cabinet 30.")
    shown = observation_of(ExecutionResult(status=ExecutionStatus.ok, calls=[*arrivals, taken])).splitlines()
    assert shown[0] == f"({31 - MAX_OBSERVATIONS_SHOWN} earlier observations are not shown.)"
    assert shown[1:] == [c.observation for c in [*arrivals, taken][-MAX_OBSERVATIONS_SHOWN:]]
    one_more = [*arrivals[:MAX_OBSERVATIONS_SHOWN], taken]
    assert observation_of(ExecutionResult(status=ExecutionStatus.ok, calls=one_more)).startswith(
        "(1 earlier observation is not shown.)\nYou arrive at cabinet 2."
    )
    few = ExecutionResult(status=ExecutionStatus.ok, calls=arrivals[:MAX_OBSERVATIONS_SHOWN])
    assert observation_of(few).splitlines() == [c.observation for c in arrivals[:MAX_OBSERVATIONS_SHOWN]]
