"""The wire protocol between the host and the in-sandbox runner: JSON lines, one message per line.

Host -> sandbox: ``setup`` (once, first: primitive names), ``load`` (an action module), ``exec`` (an
agent snippet), ``result`` / ``error`` (the answer to a primitive call).
Sandbox -> host: ``ready`` (once, at start), ``call`` (a primitive call, blocks for the answer),
``done`` (the end of a load or exec).

Every message from the sandbox is parsed here with a size cap and a strict schema (unknown fields,
unknown ops and wrong types are errors). Its strings become valid, encodable text here: a lone
surrogate (which JSON escapes can carry) is replaced by its escape, so that no later write fails.
The runner (stdlib only) writes the same shapes by hand; ``tests/test_protocol.py`` keeps the two in
step, and ``tests/test_runner_vocabulary.py`` parses the real runner's messages (every status it can
claim) with these models. Only JSON crosses the boundary, never pickle.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from learnact.actions.errors import LearnactError
from learnact.actions.text import encodable, encodable_data
from learnact.sandbox.result import SANDBOX_STATUSES, ErrorInfo, ExecutionStatus

IDENTIFIER = r"^[A-Za-z][A-Za-z0-9_]*$"


class ProtocolError(LearnactError):
    """The sandbox sent something the protocol does not allow; the session must end."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---- host -> sandbox ---------------------------------------------------------------------------


class Setup(_Message):
    op: Literal["setup"] = "setup"
    primitives: list[Annotated[str, Field(pattern=IDENTIFIER)]]


class Load(_Message):
    op: Literal["load"] = "load"
    id: int
    code: str
    restricted: bool
    nonce: str


class Exec(_Message):
    op: Literal["exec"] = "exec"
    id: int
    code: str
    restricted: bool
    max_output_bytes: int
    cpu_s: int
    nonce: str


class CallResult(_Message):
    op: Literal["result"] = "result"
    id: int
    value: str


class CallError(_Message):
    op: Literal["error"] = "error"
    id: int
    type: Literal["ValueError"] = "ValueError"
    message: str


HostMessage = Union[Setup, Load, Exec, CallResult, CallError]


def encode(message: HostMessage) -> bytes:
    """One JSON line."""
    return message.model_dump_json().encode() + b"\n"


def encode_result(call_id: int, value: str) -> bytes:
    """The line of ``CallResult(id=call_id, value=value)``, built without the record.

    It is the reply to every primitive call, so it skips model construction; that is safe because
    the host builds it from its own int id and a str it has checked.
    """
    return b'{"op":"result","id":%d,"value":%s}\n' % (call_id, json.dumps(value).encode())


# ---- sandbox -> host ---------------------------------------------------------------------------


class Ready(_Message):
    op: Literal["ready"]


class Call(_Message):
    op: Literal["call"]
    id: int
    name: Annotated[str, Field(pattern=IDENTIFIER, max_length=100)]
    args: list[Any]

    @field_validator("args")
    @classmethod
    def _encodable_args(cls, args: list[Any]) -> list[Any]:
        return encodable_data(args)  # lone surrogates must not reach the environment or the records


class Done(_Message):
    op: Literal["done"]
    id: int
    nonce: str
    status: ExecutionStatus = Field(strict=False)  # one of SANDBOX_STATUSES (JSON gives a str)
    error: ErrorInfo | None = None
    stdout: str = ""
    # Threads of the program still alive after it finished (unchecked code only): the host
    # retires the sandbox so that they cannot act during a later execution.
    threads_left: int = Field(0, ge=0)

    @field_validator("stdout")
    @classmethod
    def _encodable_stdout(cls, stdout: str) -> str:
        return encodable(stdout)  # the error is made encodable (and bounded) by ErrorInfo itself

    @field_validator("status")
    @classmethod
    def _sandbox_status(cls, status: ExecutionStatus) -> ExecutionStatus:
        if status not in SANDBOX_STATUSES:
            raise ValueError(f"status {status.value!r} is decided by the host, not claimed by the sandbox")
        return status

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Done:
        if (self.status is ExecutionStatus.ok) != (self.error is None):
            raise ValueError("a done message has an error exactly when its status is not ok")
        return self


SandboxMessage = Annotated[Union[Ready, Call, Done], Field(discriminator="op")]
_sandbox_message: TypeAdapter[Ready | Call | Done] = TypeAdapter(SandboxMessage)


def parse(line: bytes, max_bytes: int) -> Ready | Call | Done:
    """Validate one line from the sandbox, or raise ProtocolError saying what is wrong with it."""
    if len(line) > max_bytes:
        raise ProtocolError(f"message of {len(line)} bytes exceeds the cap of {max_bytes} bytes")
    try:
        return _sandbox_message.validate_json(line)  # fast path: one pass in pydantic-core
    except ValidationError:
        pass  # diagnose below, with a message that says what is wrong
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"malformed message (not JSON: {exc}): {_preview(line)}") from None
    if not isinstance(data, dict) or "op" not in data:
        raise ProtocolError(f"malformed message (no 'op' field): {_preview(line)}")
    if data["op"] not in ("ready", "call", "done"):
        raise ProtocolError(f"unknown op {data['op']!r}: {_preview(line)}")
    try:
        return _sandbox_message.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'message'}: {err['msg']}" for err in exc.errors()
        )
        raise ProtocolError(f"invalid {data['op']!r} message ({problems}): {_preview(line)}") from None


def _preview(line: bytes, limit: int = 120) -> str:
    text = line[:limit].decode("utf-8", "replace")
    return repr(text) + ("..." if len(line) > limit else "")
