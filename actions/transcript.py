"""The one transcript model: a chat message, a turn of an agent's history, and the one renderer of turns.

Every prompt that shows what an agent did (the agents' histories and demonstrations, the usage demonstration,
the reflection prompt, the learner's failure history) renders its turns here, so that the ``Action: …`` /
``Observation: …`` lines, the window of recent steps and the line standing for the steps left out cannot drift
apart between them; and every room that talks to a model (the engine's backbones, the learner's prompts) speaks
in the one :class:`ChatMessage`. It lives in the bottom room because the learner, which never imports the
engine, shares these types with the engine's model clients. Standard library and pydantic only.

The labels are the only prompt text here: the line for omitted steps is a template the caller gives (prompt
wording lives in the engine's template files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from string import Template
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

ACTION_LABEL = "Action: "
THINK_LABEL = "Think: "
OBSERVATION_LABEL = "Observation: "


class ChatMessage(BaseModel):
    """One message of a chat with a model: what a prompt is made of, and what a backbone is sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Turn:
    """One step of a history: what the agent wrote (a line of code; with ``thought``, a thought) and what came
    back."""

    text: str
    observation: str
    thought: bool = False

    @property
    def written(self) -> str:
        """The step as the history shows it: ``Think: …`` for a thought, ``Action: …`` for code."""
        return THINK_LABEL + self.text if self.thought else action_line(self.text)


@dataclass(frozen=True)
class StepWindow:
    """Show only the last ``steps`` turns (none when it is 0); ``omitted`` (its field ``$count``) is the line
    standing for the earlier ones."""

    steps: int
    omitted: Template


def call_code(name: str, args: Sequence[Any]) -> str:
    """A primitive call written as one line of agent code."""
    return f"{name}({', '.join(repr(a) for a in args)})"


def action_line(code: str) -> str:
    """A line of code the agent wrote, as a history shows it."""
    return ACTION_LABEL + code


def observation_line(observation: str) -> str:
    """What the agent observed, as a history shows it."""
    return OBSERVATION_LABEL + observation


def bounded(text: str, max_chars: int) -> str:
    """``text`` stripped, and cut to ``max_chars`` characters (the cut marked ``…``): one text of a prompt."""
    text = text.strip()
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def turn_lines(turns: Sequence[Turn], max_chars: int | None = None) -> list[str]:
    """Each turn as its written line and its observation line; with ``max_chars``, the written step and the
    observation are each stripped and cut to that many characters (the cut marked ``…``)."""
    lines: list[str] = []
    for turn in turns:
        if max_chars is None:
            lines += [turn.written, observation_line(turn.observation)]
        else:
            lines += [bounded(turn.written, max_chars), observation_line(bounded(turn.observation, max_chars))]
    return lines


def render_turns(turns: Sequence[Turn], window: StepWindow | None = None, max_chars: int | None = None) -> str:
    """The history of ``turns`` as prompt text: every turn, or only those in ``window`` after its line saying
    how many earlier steps are not shown; ``max_chars`` bounds each text as :func:`turn_lines` does.

    :raises KeyError: when the window's ``omitted`` template has a field other than ``$count``.
    """
    shown = turns if window is None else turns[-window.steps :] if window.steps > 0 else ()
    lines = []
    if window is not None and len(shown) < len(turns):
        lines.append(window.omitted.substitute(count=len(turns) - len(shown)).strip())
    return "\n".join(lines + turn_lines(shown, max_chars))
