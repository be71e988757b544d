"""The one transcript model (actions/transcript.py): a turn, its renderer with the step window and the line for
the steps left out, the one chat message every room speaks, and the one way model settings become a request.
The agents' prompts, the reflection prompt and the learner's failure history all render turns through it."""

from __future__ import annotations

from string import Template

import pydantic
import pytest

from learnact.actions.transcript import ChatMessage, StepWindow, Turn, render_turns, turn_lines
from learnact.engine import llm
from learnact.engine.agents.prompts import task_prompt
from learnact.engine.records import ModelSettings
from learnact.learner.reflexion import PromptTemplates, Trajectory, reflection_prompt
from learnact.learner.scoring import HistoryView, StepView, score_trajectories
from learnact.learner.scoring import Trajectory as ScoringTrajectory

OMITTED = Template("($count earlier steps are not shown.)\n")
TURNS = (
    Turn("pick it up first", "OK.", thought=True),
    Turn("Pickup('b1')", "You hold b1."),
    Turn("Stack('b1', 'b2')", "b1 is on b2."),
)


def test_every_turn_is_its_written_line_and_its_observation() -> None:
    assert render_turns(TURNS) == (
        "Think: pick it up first\nObservation: OK.\n"
        "Action: Pickup('b1')\nObservation: You hold b1.\n"
        "Action: Stack('b1', 'b2')\nObservation: b1 is on b2."
    )
    assert render_turns(()) == ""


def test_a_window_shows_the_last_steps_after_a_line_counting_the_others() -> None:
    assert render_turns(TURNS, StepWindow(1, OMITTED)) == (
        "(2 earlier steps are not shown.)\nAction: Stack('b1', 'b2')\nObservation: b1 is on b2."
    )
    assert render_turns(TURNS, StepWindow(0, OMITTED)) == "(3 earlier steps are not shown.)"
    assert render_turns(TURNS, StepWindow(3, OMITTED)) == render_turns(TURNS)  # nothing left out: no line
    with pytest.raises(KeyError):
        render_turns(TURNS, StepWindow(1, Template("$count of $total")))


def test_bounded_texts_are_stripped_and_cut_with_a_mark() -> None:
    long = Turn("Pickup('b1')  ", "x" * 50)
    lines = turn_lines([long], max_chars=10)
    assert lines == ["Action: P…", "Observation: " + "x" * 9 + "…"]  # the label counts in the written line
    assert turn_lines([long]) == ["Action: Pickup('b1')  ", "Observation: " + "x" * 50]


def test_the_agent_and_the_reflection_render_a_history_alike() -> None:
    agent = task_prompt(None, "goal", "start", list(TURNS), window=2)
    reflection = reflection_prompt(
        Trajectory("goal", "start", TURNS, "end"),
        PromptTemplates(reflection=Template("$trajectory"), omitted=OMITTED),
        shown_steps=2,
    )
    assert reflection == render_turns(TURNS, StepWindow(2, OMITTED))
    assert reflection in agent and agent.count("earlier steps are not shown") == 1


def _failure_history(steps: list[StepView], view: HistoryView) -> str:
    trajectory = ScoringTrajectory(task="t", goal="b1 on b2", initial="start", success=False, progress=0.0, steps=steps)
    scored, _ = score_trajectories([trajectory], {"stack_all": 1}, ("success",), 0, 0, history=view)
    assert scored.failure is not None
    return scored.failure.history


def test_the_learners_failure_history_uses_the_same_lines() -> None:
    before = StepView(index=0, code="Pickup('b1')", observation="You hold b1.", status="ok")
    failed = StepView(index=1, code="stack_all('b1')", observation="error", status="error")
    assert _failure_history([before, failed], "last") == "Observation: You hold b1.\nAction: stack_all('b1')"
    assert _failure_history([before, failed], "full") == (
        "Goal: b1 on b2\nObservation: start\n"
        + render_turns([Turn("Pickup('b1')", "You hold b1.")])
        + "\nAction: stack_all('b1')"
    )
    assert _failure_history([failed], "full") == "Goal: b1 on b2\nObservation: start\nAction: stack_all('b1')"


def test_the_model_clients_speak_the_one_message_type() -> None:
    assert llm.ChatMessage is ChatMessage
    with pytest.raises(pydantic.ValidationError):
        ChatMessage(role="tool", content="x")  # type: ignore[arg-type]


def test_a_request_is_built_from_the_model_settings() -> None:
    settings = ModelSettings(model="gpt-4o-mini", temperature=0.7, max_tokens=99, backbone="http://x")
    messages = [ChatMessage(role="system", content="s"), ChatMessage(role="user", content="u")]
    request = llm.chat_request(settings, messages, seed=3, grammar="root ::= [a-z]+", stop=("\nObservation:",))
    assert request == llm.ChatRequest(
        model="gpt-4o-mini",
        messages=tuple(messages),
        temperature=0.7,
        max_tokens=99,
        seed=3,
        grammar="root ::= [a-z]+",
        stop=("\nObservation:",),
    )
    assert llm.chat_request(settings, messages, seed=None).grammar is None
    with pytest.raises(pydantic.ValidationError):
        llm.chat_request(settings, messages, seed=0, grammar="")
