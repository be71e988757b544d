"""The wire protocol: what the host accepts from the sandbox, and what it refuses."""

from __future__ import annotations

import json
import time

import pytest

from learnact.sandbox import protocol
from learnact.sandbox.protocol import Call, CallError, CallResult, Done, Exec, Load, ProtocolError, Ready, Setup
from learnact.sandbox.transport import ExitInfo, Transport

CAP = 1000


def line(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_valid_sandbox_messages_parse_into_their_models() -> None:
    assert isinstance(protocol.parse(line(op="ready"), CAP), Ready)
    call = protocol.parse(line(op="call", id=3, name="pickup", args=["a", 1]), CAP)
    assert call == Call(op="call", id=3, name="pickup", args=["a", 1])
    done = protocol.parse(
        line(op="done", id=3, nonce="n", status="error", error={"type": "ValueError", "message": "m"}), CAP
    )
    assert isinstance(done, Done) and done.error is not None and done.error.type == "ValueError"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "no 'op'"),
        (line(id=1), "no 'op'"),
        (line(op="exec", id=1), "unknown op 'exec'"),
        (line(op="call", id="1", name="pickup", args=[]), "id"),
        (line(op="call", id=1, name="__import__", args=[]), "name"),
        (line(op="call", id=1, name="pickup", args=[], extra=1), "extra"),
        (line(op="done", id=1, nonce="n", status="ok", error={"type": "E", "message": "m"}), "error exactly"),
        (line(op="done", id=1, nonce="n", status="error"), "error exactly"),
        (line(op="done", id=1, nonce="n", status="call_limit", error={"type": "E", "message": "m"}), "status"),
        (line(op="done", id=1, nonce="n", status="crashed", error={"type": "E", "message": "m"}), "status"),
        (line(op="done", id=1, nonce="n", status="rejected", error={"type": "E", "message": "m"}), "status"),
        (line(op="done", id=1, status="ok"), "nonce"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-op",
        "unknown-op",
        "string-id",
        "private-name",
        "extra-field",
        "ok-with-error",
        "error-without-error",
        "host-only-call-limit",
        "host-only-crashed",
        "host-only-rejected",
        "no-nonce",
    ],  # fmt: skip
)
def test_invalid_sandbox_messages_are_protocol_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        protocol.parse(raw, CAP)


def test_a_message_over_the_cap_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="exceeds the cap of 1000 bytes"):
        protocol.parse(line(op="call", id=1, name="pickup", args=["x" * 2000]), CAP)


def test_host_messages_are_single_json_lines() -> None:
    for message in (
        Setup(primitives=["pickup"]),
        Load(id=1, code="def f():\n    pass\n", restricted=True, nonce="n"),
        Exec(id=2, code="f()\n", restricted=False, max_output_bytes=10, cpu_s=1, nonce="n"),
        CallResult(id=2, value="ok\nfine"),
        CallError(id=2, message="no such block"),
    ):
        encoded = protocol.encode(message)
        assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
        assert json.loads(encoded)["op"] == message.op


def test_the_fast_result_line_carries_what_the_result_record_does() -> None:
    for value in ("You pick up a.", 'ok\n"fine"\\ \u00e9\u4e2d \U0001f600', ""):
        encoded = protocol.encode_result(7, value)
        assert encoded.endswith(b"\n") and encoded.count(b"\n") == 1
        assert json.loads(encoded) == json.loads(protocol.encode(CallResult(id=7, value=value)))


class ScriptedTransport(Transport):
    """Hands out scripted chunks; None chunks mean 'nothing arrived yet'."""

    def __init__(self, chunks: list[bytes | None]) -> None:
        super().__init__()
        self.chunks = chunks
        self.receives = 0

    def send(self, data: bytes) -> None:
        pass

    def _receive(self, timeout: float) -> bytes | None:
        self.receives += 1
        if not self.chunks:
            time.sleep(min(timeout, 0.01))
            return None
        return self.chunks.pop(0)

    def finish(self, kill: bool) -> ExitInfo:
        return ExitInfo(0)

    def close(self) -> None:
        pass


def test_lines_are_reassembled_from_chunks() -> None:
    transport = ScriptedTransport([b'{"op":', None, b'"ready"}\n{"op"', b':"ready"}\n'])
    deadline = time.monotonic() + 5
    assert transport.read_line(deadline, CAP) == b'{"op":"ready"}'
    assert transport.read_line(deadline, CAP) == b'{"op":"ready"}'


def test_an_endless_line_is_refused_as_soon_as_it_passes_the_cap() -> None:
    transport = ScriptedTransport([b"x" * 600] * 100)
    with pytest.raises(ProtocolError, match="exceeds the cap"):
        transport.read_line(time.monotonic() + 5, CAP)
    assert transport.receives == 2  # it did not wait for the rest


def test_reading_stops_at_the_deadline() -> None:
    transport = ScriptedTransport([])
    with pytest.raises(TimeoutError):
        transport.read_line(time.monotonic() + 0.05, CAP)


def test_end_of_stream_reads_as_none() -> None:
    assert ScriptedTransport([b""]).read_line(time.monotonic() + 5, CAP) is None


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"op":"call","id":1,"name":"pickup","args":["\ud800",["x\udfff"],{"k\udc80":"\ud83d"}]}',
        b'{"op":"call","id":1,"name":"pickup","args":["\xed\xa0\x80",["x\xed\xbf\xbf"],{"k\xed\xb2\x80":"\xed\xa0\xbd"}]}',
    ],
    ids=["json-escapes", "raw-surrogate-bytes"],
)
def test_lone_surrogates_in_call_arguments_become_escapes(raw: bytes) -> None:
    call = protocol.parse(raw, CAP)
    assert isinstance(call, Call)
    assert call.args == ["\\ud800", ["x\\udfff"], {"k\\udc80": "\\ud83d"}]
    json.dumps(call.args, ensure_ascii=False).encode("utf-8")


def test_lone_surrogates_in_a_done_message_become_escapes() -> None:
    raw = (
        rb'{"op":"done","id":1,"nonce":"n","status":"error","stdout":"a\ud800",'
        rb'"error":{"type":"E\udfff","message":"m\ud800","traceback":"t\udc00"}}'
    )
    done = protocol.parse(raw, CAP)
    assert isinstance(done, Done) and done.error is not None
    assert (done.stdout, done.error.type, done.error.message, done.error.traceback) == (
        "a\\ud800",
        "E\\udfff",
        "m\\ud800",
        "t\\udc00",
    )
    assert (
        "😀" == protocol.parse(rb'{"op":"done","id":1,"nonce":"n","status":"ok","stdout":"\ud83d\ude00"}', CAP).stdout
    )


def test_deeply_nested_arguments_are_cleaned_without_recursion() -> None:
    depth = 900
    raw = b'{"op":"call","id":1,"name":"pickup","args":[' + b"[" * depth + rb'"\ud800"' + b"]" * depth + b"]}"
    call = protocol.parse(raw, 100_000)
    assert isinstance(call, Call)
    inner = call.args
    for _ in range(depth + 1):
        inner = inner[0]
    assert inner == "\\ud800"
