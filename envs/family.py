"""An environment family as it is registered: how to build it, and its profile.

A family (``pddl``, ``alfworld``, or a plugin's) is registered as one :class:`EnvFamily`: the factory that
builds ``<family>`` or ``<family>/<variant>`` from an :class:`EnvSpec`, and the :class:`EnvProfile` that says
what the engine and the learners need to know about it beyond the environment protocol (how much history a
model sees, the step budgets, LearnAct's defaults, the domain's text, demonstrations and worked examples,
how reports group its results). Everything family-specific that is not the environment itself lives in the
profile, so no code outside a family's own package compares environment names.

Built-in families are registered exactly as plugins are (``registry.BUILTIN_FAMILIES`` names the objects
as entry points do); a plugin that gives no profile gets :data:`NEUTRAL_PROFILE` and a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.errors import LearnactError
from learnact.envs.base import Environment, PrimitiveSpec

ANY_TYPE = "any"  # the profile file used for a task type without its own
PROFILE_FOLDER = "profile"  # in the package named by EnvProfile.texts


class EnvSpec(BaseModel):
    """Everything needed to build an environment: serialisable, so an episode can run anywhere.

    :raises pydantic.ValidationError: for an unknown field or a value of the wrong type.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pddl_domain: str | None = None
    pddl_problems: tuple[str, ...] = ()
    alfworld_data: str | None = None
    split: str = "valid_unseen"


class EnvSpecError(LearnactError):
    """Settings of an EnvSpec that cannot build the environment ``env``; the remedy names the settings."""

    def __init__(self, env: str, problem: str, remedy: str = "") -> None:
        self.env = env
        super().__init__(problem, remedy)


class UnknownEnvironment(EnvSpecError):
    """``env`` names no environment; ``known`` lists those that exist."""

    def __init__(self, env: str, known: Sequence[str]) -> None:
        self.known = tuple(known)
        super().__init__(env, f"unknown environment '{env}'; known: {', '.join(self.known)}")


class EnvProfile(BaseModel):
    """What the engine and the learners need to know about a family beyond the environment protocol.

    ``texts`` names a package whose folder ``profile/`` holds ``domains/<type>.txt`` (what the environment is,
    for every prompt), ``demos/<type>.json`` (one expert trajectory, in the form ``learnact.engine.agents.demos``
    writes), ``examples/<type>.txt`` (one learned action written for the domain, shown to LearnAct's learner when it
    creates actions) and ``updates/<type>.txt`` and ``plans/<type>.txt`` (one failed call of an action of the domain
    and the answer to it, an Update and a Plan, shown to the learner when it improves actions); a task type without
    its own file uses ``<kind>/any.<ext>``, and a family without texts shows none.

    :raises pydantic.ValidationError: for an unknown field or a value out of range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    benchmark: str = Field(description="how reports name the family's results, e.g. 'robotic planning (PDDL)'")
    window: int = Field(20, ge=1, description="steps of history shown to a model agent")
    max_steps: int = Field(30, ge=1, description="step budget of an evaluated episode of a model method")
    learn_steps: int = Field(10, ge=1, description="step budget of a training attempt and of LearnAct's scoring")
    learnact: dict[str, Any] = Field(
        default_factory=dict, description="LearnAct's defaults for the family (fields of LearnactConfig)"
    )
    final_state_observations: bool = Field(
        False,
        description="after a step of several primitive calls (a learned action) the agent sees the state the last "
        "valid call left and each invalid call's message, not every state in between (each observation of the "
        "family is the whole state); otherwise every call's observation",
    )
    report_by_type: bool = Field(False, description="reports add a column of all task types to a mixed run")
    learn_by_type: bool = Field(
        False, description="LearnAct learns one library per task type of a mixed run, used by episodes of that type"
    )
    type_order: tuple[str, ...] = Field((), description="the order of task types in reports (others follow)")
    data_hint: str = Field("", description="what to do when the family's tasks cannot be found (its data)")
    texts: str | None = Field(None, description="the package of the domain texts, demonstrations and examples")

    def domain_text(self, task_type: str) -> str:
        """What the environment is, for the prompts of ``task_type``; empty when the profile has none."""
        return _text(self.texts, "domains", task_type, "txt")

    def worked_example(self, task_type: str) -> str:
        """One action written for the domain (the form the learner is asked for, never a task's solution);
        empty when the profile has none."""
        return _text(self.texts, "examples", task_type, "txt")

    def worked_improvement(self, task_type: str, kind: Literal["update", "plan"]) -> str:
        """One failed call of an action written for the domain and the learner's answer to it, of ``kind`` (the
        form of the Optimise answer, never a task's solution); empty when the profile has none."""
        return _text(self.texts, f"{kind}s", task_type, "txt")

    def demonstration(self, task_type: str) -> dict[str, Any] | None:
        """The stored demonstration of ``task_type`` (env, task, type, goal, initial, thought, steps), None when
        the profile has none."""
        text = _text(self.texts, "demos", task_type, "json")
        return json.loads(text) if text else None


NEUTRAL_PROFILE = EnvProfile(benchmark="", window=20, max_steps=30, learn_steps=10)
"""The profile of a plugin family that gives none: the engine's general defaults, no domain text, no
demonstration, LearnAct's general defaults."""


@cache
def _text(package: str | None, kind: str, task_type: str, ext: str) -> str:
    if package is None:
        return ""
    folder = resources.files(package).joinpath(PROFILE_FOLDER, kind)
    for name in (task_type, ANY_TYPE):
        path = folder.joinpath(f"{name}.{ext}")
        if name and path.is_file():
            return path.read_text(encoding="utf-8").strip()
    return ""


EnvFactory = Callable[[EnvSpec], Environment]
"""Given the spec of ``<family>`` or ``<family>/<variant>``, the environment, or a :class:`LearnactError`
(:class:`UnknownEnvironment` for a variant it does not have, :class:`EnvSpecError` for settings it cannot
use) that the user sees as it is. An :class:`Environment` subclass whose constructor takes the spec fits."""


DemonstrationEnv = Callable[[EnvSpec, str, str], Environment]
"""Given a run's spec and the task id and task type of a stored demonstration of the profile, an environment
whose tasks hold that task, on which learned actions can be tried out."""


@dataclass(frozen=True)
class EnvFamily:
    """A family as registered: ``build`` makes its environments; ``profile`` (None: the neutral one, with a
    warning); ``names`` lists the environments it has without data (for ``learnact envs``; empty: the family's
    name alone); ``primitives`` gives a name's primitive specs without building the environment (None: it is
    built for them); ``demonstration`` opens the task of a stored demonstration (None: the family has none
    apart from its tasks)."""

    build: EnvFactory
    profile: EnvProfile | None = None
    names: tuple[str, ...] = ()
    primitives: Callable[[str], list[PrimitiveSpec]] | None = None
    demonstration: DemonstrationEnv | None = None
