"""Records describing action code and what the static checker says about it."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict

from learnact.actions.rules import RuleId, Severity

__all__ = ["CodeKind", "Finding", "RuleId", "Severity"]


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
