"""ExecutionResult: the single feedback type of the engine (see DESIGN.md)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from learnact.actions.models import Finding
from learnact.actions.text import encodable, truncated

# Bytes of an error kept in a result, whoever made it (the sandbox's runner or the host); more is cut
# on a character boundary and marked (``…[truncated N bytes]``).
MAX_ERROR_TYPE_BYTES = 100
MAX_ERROR_MESSAGE_BYTES = 8_000
MAX_TRACEBACK_BYTES = 16_000


class ExecutionStatus(str, Enum):
    ok = "ok"
    rejected = "rejected"  # the static check refused the code; nothing ran
    error = "error"  # the program raised an exception
    timeout = "timeout"  # wall-clock or CPU limit
    memory = "memory"  # memory limit (MemoryError inside or OOM kill from outside)
    output_limit = "output_limit"  # stdout/stderr beyond the cap
    call_limit = "call_limit"  # too many primitive calls in one execution
    crashed = "crashed"  # the sandbox died or broke the protocol


# The statuses the in-sandbox runner may claim in its ``done`` message: the protocol accepts no other,
# and tests/test_runner_vocabulary.py holds runner.py's own strings (it cannot import this) to them.
# The rest are the host's verdicts: rejected by the static check, call_limit counted by the host,
# crashed (and a wall-clock timeout) when the host ends the sandbox.
SANDBOX_STATUSES = frozenset(
    {
        ExecutionStatus.ok,
        ExecutionStatus.error,
        ExecutionStatus.timeout,
        ExecutionStatus.memory,
        ExecutionStatus.output_limit,
    }
)


class ErrorInfo(BaseModel):
    type: str
    message: str
    traceback: str = ""  # trimmed to the program's own lines

    @field_validator("type", "message", "traceback")
    @classmethod
    def _bounded(cls, text: str, info: ValidationInfo) -> str:
        limits = {"type": MAX_ERROR_TYPE_BYTES, "message": MAX_ERROR_MESSAGE_BYTES, "traceback": MAX_TRACEBACK_BYTES}
        return truncated(encodable(text), limits[info.field_name])


class PrimitiveCall(BaseModel):
    """A primitive call the program made, as the environment on the host answered it."""

    name: str
    args: list[Any]
    observation: str
    valid: bool = True  # the environment's own verdict: False when the call did not apply (took no effect)


class ExecutionResult(BaseModel):
    status: ExecutionStatus
    findings: list[Finding] = Field(default_factory=list)
    error: ErrorInfo | None = None
    calls: list[PrimitiveCall] = Field(default_factory=list)
    stdout: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.ok

    @property
    def did_nothing(self) -> bool:
        """The code ran without an error and called no primitive action: it changed nothing, which no caller
        counts as an action that worked."""
        return self.ok and not self.calls
