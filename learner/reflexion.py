"""Reflexion (Shinn et al., 2023), as the LearnAct paper's baseline uses it: after a failed attempt at a
training task the model writes a short reflection, why it failed and what to do differently, and the task is
tried again with every reflection written so far; the reflections become the notes the agent is shown at
test time.

This module is the method, independent of how attempts run and how the model is asked: the caller passes
them in as callables (the engine runs an attempt as an episode in the sandbox and asks its backbone). It
decides when to reflect, builds the reflection prompt from a trajectory (bounded: the last steps, each text
capped) and turns the model's untrusted answer into a note (one paragraph, bounded, encodable). It never
imports the engine and never runs or evaluates what the model wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from string import Template

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.text import encodable
from learnact.actions.transcript import StepWindow, Turn, bounded, render_turns

ROUNDS = 2  # reflection rounds per training task (the seed's default): at most ROUNDS + 1 attempts
MAX_NOTE_CHARS = 600  # a note longer than this is cut at its last sentence end within the bound
SHOWN_STEPS = 30  # steps of a trajectory shown in the reflection prompt (the last ones)
MAX_STEP_CHARS = 600  # each action, thought or observation in the prompt is cut to this many characters
_FENCE_LINE = re.compile(r"^\s*```.*$", re.MULTILINE)
# Labels a model may put before its reflection (the prompt's last line repeated, "Reflection:", a bullet).
_LABEL = re.compile(r"^\s*(?:[-*•]\s*)?(?:(?:reflection|lesson|note|plan|answer|short note)s?\s*:\s*)", re.IGNORECASE)
# A model that goes on writing a trajectory of its own: its reflection ends there.
_INVENTED = re.compile(r"^\s*(?:observation|action|think)\s*:", re.IGNORECASE | re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


class Note(BaseModel):
    """One reflection: the note's ``text`` (empty when the answer held none), written after the failed attempt
    ``round - 1`` at ``task``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    round: int = Field(ge=1)
    text: str = Field(max_length=MAX_NOTE_CHARS)


@dataclass(frozen=True)
class Trajectory:
    """A finished attempt as the reflection prompt shows it; ``ending`` says how it ended, in words."""

    goal: str
    initial: str
    steps: tuple[Turn, ...]
    ending: str


@dataclass(frozen=True)
class Attempt:
    """What the method needs to know of an attempt: whether it reached the goal, and what happened (asked
    for only when a reflection is written: building it may cost the caller an environment reset)."""

    success: bool
    trajectory: Callable[[], Trajectory]


@dataclass(frozen=True)
class PromptTemplates:
    """The reflection prompt (fields ``$goal``, ``$initial``, ``$trajectory``, ``$ending`` and any the caller
    fills itself) and the line standing for steps left out (``$count``)."""

    reflection: Template
    omitted: Template


def needs_reflection(attempt: Attempt, index: int, rounds: int = ROUNDS) -> bool:
    """Whether the attempt ``index`` (0 the first) calls for a reflection: it failed and a retry is left."""
    return not attempt.success and index < rounds


def trajectory_text(trajectory: Trajectory, omitted: Template, shown_steps: int = SHOWN_STEPS) -> str:
    """The trajectory's last ``shown_steps`` steps as ``Action:``/``Observation:`` lines, each text cut to
    MAX_STEP_CHARS; a line from ``omitted`` says how many earlier steps are left out.

    :raises KeyError: when ``omitted`` has a field other than ``$count``.
    """
    return render_turns(trajectory.steps, StepWindow(shown_steps, omitted), MAX_STEP_CHARS)


def reflection_prompt(
    trajectory: Trajectory, templates: PromptTemplates, shown_steps: int = SHOWN_STEPS, **fields: str
) -> str:
    """The prompt asking why ``trajectory`` failed and what to do differently; ``fields`` fill the
    template's other fields (the domain's description, say).

    :raises KeyError: when the template has a field that is neither the trajectory's nor in ``fields``.
    """
    return templates.reflection.substitute(
        fields,
        goal=bounded(trajectory.goal, MAX_STEP_CHARS),
        initial=bounded(trajectory.initial, 4 * MAX_STEP_CHARS),
        trajectory=trajectory_text(trajectory, templates.omitted, shown_steps),
        ending=trajectory.ending,
    )


def clean_reflection(answer: str, max_chars: int = MAX_NOTE_CHARS) -> str:
    """The note in a model's answer: code fences, a leading label and any trajectory the model went on to
    invent removed, whitespace folded into one paragraph, made encodable, and bounded to ``max_chars`` (cut
    after the last sentence that fits, else at a word). Empty when the answer held nothing."""
    text = encodable(answer).replace("\r\n", "\n")
    invented = _INVENTED.search(text)
    if invented is not None:
        text = text[: invented.start()]
    text = _FENCE_LINE.sub("", text)
    text = " ".join(_LABEL.sub("", line, count=1).strip() for line in text.split("\n"))
    text = " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= max_chars // 2:
        return head[: ends[-1]]
    return head[: max_chars - 1].rsplit(" ", 1)[0].rstrip() + "…"


def shown_notes(notes: Sequence[Note]) -> tuple[str, ...]:
    """The texts of ``notes`` an agent is shown (those that hold something), in the order they came."""
    return tuple(note.text for note in notes if note.text)


def reflexion(
    tasks: Sequence[str],
    attempt: Callable[[str, int, tuple[str, ...]], Attempt],
    reflect: Callable[[str, int, str], str],
    templates: PromptTemplates,
    *,
    rounds: int = ROUNDS,
    written: Sequence[Note] = (),
    on_note: Callable[[list[Note]], None] = lambda notes: None,
    **fields: str,
) -> list[Note]:
    """Learn notes on the training ``tasks``, one task after the other.

    ``attempt(task, index, notes)`` runs the attempt ``index`` (0 the first) at ``task`` with the ``notes``
    written so far (by every task) and says how it went. After a failed attempt with a round left,
    ``reflect(task, round, prompt)`` asks the model and answers its raw text; the cleaned note is added and
    the task is tried again, up to ``rounds`` reflections per task. A reflection that held nothing ends the
    task's attempts (a retry would be the same attempt). ``written``: notes of an earlier, interrupted run,
    used instead of asking again; ``on_note`` is told the notes after each new one (to store them).
    ``fields`` fill the prompt template's own fields.

    :raises Exception: whatever ``attempt``, ``reflect`` or ``on_note`` raise (the notes written until
        then have been handed to ``on_note``).
    """
    known = {(note.task, note.round): note for note in written}
    notes: list[Note] = []
    for task in tasks:
        for index in range(rounds + 1):
            outcome = attempt(task, index, shown_notes(notes))
            if not needs_reflection(outcome, index, rounds):
                break
            note = known.get((task, index + 1))
            if note is None:
                prompt = reflection_prompt(outcome.trajectory(), templates, **fields)
                note = Note(task=task, round=index + 1, text=clean_reflection(reflect(task, index + 1, prompt)))
                notes.append(note)
                on_note(list(notes))
            else:
                notes.append(note)
            if not note.text:
                break
    return notes
