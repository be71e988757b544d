"""Records describing action code and what the static checker says about it."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.rules import RuleId, Severity

__all__ = ["ActionSet", "CodeKind", "Finding", "LearnedAction", "RuleId", "Severity"]


class CodeKind(str, Enum):
    """What a piece of code is allowed to be.

    An *action module* holds only function definitions with docstrings (no top-level effects);
    an *agent snippet* is statements that call actions and primitives; a *program* (code as policy)
    is both: helper functions (docstrings optional) and the top-level statements that call them.
    """

    action_module = "action_module"
    agent_snippet = "agent_snippet"
    program = "program"


class Finding(BaseModel):
    """One problem found by the static checker, phrased so that a model can act on it."""

    model_config = ConfigDict(frozen=True)

    rule: RuleId
    severity: Severity
    line: int
    col: int
    message: str

    def render(self, path: str = "<code>") -> str:
        """Linter-style line: ``path:line:col: RULE message``."""
        return f"{path}:{self.line}:{self.col}: {self.rule} {self.message}"


class LearnedAction(BaseModel):
    """One learned action as an agent uses it: its code (one function definition over the primitives), the
    one-line description and usage example shown to the agent, and the usage notes attached to it (LearnAct's
    *Plan* answers). The versioned history behind it lives in the action library."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    code: str
    description: str = ""
    example: str = ""
    notes: tuple[str, ...] = ()
    version: int = Field(1, ge=1)


class UsageStep(BaseModel):
    """One line of a usage demonstration and what the environment answered when it ran."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    observation: str


# Where the agent reads a usage demonstration, relative to the primitive demonstration (alone: instead of it).
UsagePlacement = Literal["first", "last", "alone"]


class UsageDemonstration(BaseModel):
    """A task solved with the learned actions: the demonstration's solution rewritten to call them by the
    learner model, or, with ``matched``, by matching the actions' primitive calls against its calls; kept only
    after its lines ran in the sandbox on the demonstration's task and reached its goal; the observations are
    the environment's own. Its ``placement`` says where the agent reads it: ``first``, before the primitive
    demonstration, as the paper orders them; ``last``, after it, as the last example before its own task; or
    ``alone``, in its place (learning chooses by scoring each on the training tasks: a small agent copies the
    example it read last, and a primitive line of the other example it read)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    goal: str
    initial: str
    steps: tuple[UsageStep, ...]
    matched: bool = False
    placement: UsagePlacement = "first"


class ActionSet(BaseModel):
    """The learned actions an agent gets next to the primitives, and how they solved a task (``usage``, when
    learning could ground one); ``module`` is what is loaded into its sandbox (checked as an *action module*
    first, like any other code)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: tuple[LearnedAction, ...] = ()
    usage: UsageDemonstration | None = None

    @property
    def module(self) -> str:
        return "\n\n".join(a.code.strip() + "\n" for a in self.actions)

    def names(self) -> list[str]:
        return [a.name for a in self.actions]
