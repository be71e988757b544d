"""Scoring a candidate set from the trajectories of the act agent that used it on the training tasks: the
paper's terms (``step_correction``, ``call_ratio``, ``success``), one outcome per learned-action call judged by
the environment's own verdict on each primitive call, and the first failed call as the Optimise step's case.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.library import (
    CallOutcome,
    CandidateScore,
)
from learnact.actions.transcript import Turn, action_line, call_code, observation_line, turn_lines
from learnact.envs import counted_refusals, step_worked
from learnact.learner.answers import called_names, cut
from learnact.sandbox import ExecutionStatus

log = logging.getLogger(__name__)

MAX_SHOWN_CALL_CHARS = 400  # one primitive sub-step as shown to the model
# The sub-steps of a failed call the Optimise request shows: the first ones say what went wrong; a loop over a
# 20-item list ran 38 (the audit's records keep them all).
MAX_SHOWN_SUBSTEPS = 8

ScoreTerm = Literal["step_correction", "call_ratio", "success"]
HistoryView = Literal["last", "full"]


class FailureCase(BaseModel):
    """The first failed call of a learned action while scoring a candidate: what the Optimise prompt shows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int
    task: str
    goal: str
    step: int
    call: str  # the agent's line
    error: str
    history: str  # the last step, or the whole trajectory up to the call
    substeps: tuple[str, ...]  # the primitive calls that ran inside, with what was observed (MAX_SHOWN_SUBSTEPS)


class CallView(BaseModel):
    """A primitive call that ran inside one step."""

    model_config = ConfigDict(frozen=True)

    name: str
    args: list[Any]
    observation: str
    valid: bool = True  # the environment's verdict on the call

    def line(self) -> str:
        """The call as a line of code with what was observed, bounded."""
        return cut(f"{call_code(self.name, self.args)} -> {self.observation}", MAX_SHOWN_CALL_CHARS)


class StepView(BaseModel):
    """One step of the agent while scoring: its line of code and what running it did."""

    model_config = ConfigDict(frozen=True)

    index: int
    code: str
    observation: str
    status: ExecutionStatus | None  # None for a step that ran no code
    error: str | None = None  # "Type: message" when the code raised (or the check rejected it)
    calls: list[CallView] = Field(default_factory=list)


class Trajectory(BaseModel):
    """One scoring episode as the learner reads it."""

    model_config = ConfigDict(frozen=True)

    task: str
    goal: str
    initial: str
    success: bool
    progress: float = Field(ge=0.0, le=1.0)  # the share of the goal's conditions met at the end
    steps: list[StepView]


class Scored(BaseModel):
    """A scored candidate: its score, how often each action was called, and its first failed call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: CandidateScore
    calls: dict[str, int]
    failure: FailureCase | None = None


def _refusal(calls: Sequence[CallView]) -> str | None:
    """What the environment said to the refused call that made a step fail (the first of
    :func:`~learnact.envs.counted_refusals`); None when no refusal counts."""
    counted = counted_refusals([call.valid for call in calls])
    return calls[counted[0]].observation if counted else None


def score_trajectories(
    trajectories: Sequence[Trajectory],
    actions: Mapping[str, int],
    terms: Sequence[ScoreTerm],
    round_: int,
    candidate: int,
    history: HistoryView = "last",
) -> tuple[Scored, list[CallOutcome]]:
    """The seed's score of a candidate: ``step_correction`` (successful learned-action calls per call),
    ``call_ratio`` (successful calls per step) and ``success`` (the share of tasks solved), summed over
    ``terms``; one outcome per learned-action call; the first failed call as a :class:`FailureCase`.

    A call succeeded when its step ran without an error and its primitive calls did what they were written for
    (:func:`~learnact.envs.step_worked`: at least one valid, none refused after the first valid one; calls refused
    before it are the action reaching its own precondition, and changed nothing).
    """
    outcomes: list[CallOutcome] = []
    calls: dict[str, int] = dict.fromkeys(actions, 0)
    successes = steps = 0
    failure: FailureCase | None = None
    for trajectory in trajectories:
        for position, step in enumerate(trajectory.steps):
            steps += 1
            invalid = None if step_worked([c.valid for c in step.calls]) else _refusal(step.calls)
            if step.status is ExecutionStatus.ok and not step.calls:
                invalid = "it did nothing: no primitive action was called inside it"
            ok = step.status is ExecutionStatus.ok and invalid is None
            status = step.status.value if step.status is not None else "none"
            for name in called_names(step.code, actions):
                calls[name] += 1
                successes += ok
                error = None if ok else step.error or invalid or f"the step ended with the status {status}"
                substeps = [c.line() for c in step.calls]
                outcomes.append(
                    CallOutcome(
                        name=name,
                        version=actions[name],
                        phase="score",
                        round=round_,
                        candidate=candidate,
                        task=trajectory.task,
                        step=step.index,
                        code=step.code,
                        ok=ok,
                        status=status,
                        error=error,
                        primitive_steps=substeps,
                    )
                )
                if not ok and failure is None:
                    failure = FailureCase(
                        name=name,
                        version=actions[name],
                        task=trajectory.task,
                        goal=trajectory.goal,
                        step=step.index,
                        call=step.code,
                        error=error or "",
                        history=_history(trajectory, position, history),
                        substeps=tuple(shown_substeps(substeps)),
                    )
    total_calls = sum(calls.values())
    components = {
        "step_correction": successes / total_calls if total_calls else 0.0,
        "call_ratio": successes / steps if steps else 0.0,
        "success": sum(t.success for t in trajectories) / len(trajectories) if trajectories else 0.0,
    }
    score = CandidateScore(
        candidate=candidate,
        actions=dict(actions),
        score=sum(components[t] for t in terms),
        components=components,
        successes=sum(t.success for t in trajectories),
        tasks=len(trajectories),
        progress=statistics.fmean(t.progress for t in trajectories) if trajectories else 0.0,
    )
    return Scored(score=score, calls=calls, failure=failure), outcomes


def _history(trajectory: Trajectory, position: int, view: HistoryView) -> str:
    """What led to the failed call: the observation before it and the call (``last``), or the whole
    trajectory up to it (``full``)."""
    steps = trajectory.steps[: position + 1]
    if view == "last":
        before = steps[-2].observation if len(steps) > 1 else trajectory.initial
        return f"{observation_line(before)}\n{action_line(steps[-1].code)}"
    earlier = turn_lines([Turn(step.code, step.observation) for step in steps[:-1]])
    lines = [f"Goal: {trajectory.goal}", observation_line(trajectory.initial), *earlier, action_line(steps[-1].code)]
    return "\n".join(lines)


def shown_substeps(substeps: list[str]) -> list[str]:
    """The first :data:`MAX_SHOWN_SUBSTEPS` sub-steps, and how many more ran."""
    if len(substeps) <= MAX_SHOWN_SUBSTEPS:
        return substeps
    more = len(substeps) - MAX_SHOWN_SUBSTEPS
    return [*substeps[:MAX_SHOWN_SUBSTEPS], f"({more} more primitive call{'s' if more > 1 else ''} ran)"]
