"""A scripted stand-in for an OpenAI-compatible server, so that tests run the real client without a network.

``ScriptedServer`` listens on 127.0.0.1 (a free port) in a thread and answers ``POST …/chat/completions``
(OpenAI's and Azure's paths) with the next step of its script: an answer with usage, an HTTP status (429
with ``Retry-After``, 500, one echoing the request's headers as proxies do), a delay beyond the client's
timeout, a raw body (malformed JSON, an empty choice list, a gzip bomb), or a hostile stream (a body sent
chunked without end, or dripped a byte at a time). When the script is spent it answers ``answer N`` (N
counting the requests), or what its ``responder`` says. Every request it received is kept, with the time it came.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    text: str | None = "ok"
    finish_reason: str = "stop"
    prompt_tokens: int = 10
    completion_tokens: int = 2
    delay_s: float = 0.0  # wait before answering (beyond the client's timeout: a timeout)


@dataclass(frozen=True)
class Status:
    code: int
    message: str = "scripted error"  # with echo_headers, "{authorization}" etc. become the request's headers
    headers: dict[str, str] = field(default_factory=dict)
    echo_headers: bool = False


@dataclass(frozen=True)
class Raw:
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Content-Encoding: gzip


@dataclass(frozen=True)
class Stream:
    """A 200 answer sent chunked: ``chunk`` ``count`` times, ``interval_s`` apart (a drip, or an endless body),
    then ``then``."""

    chunk: bytes
    count: int
    interval_s: float = 0.0
    then: bytes = b""


Step = Answer | Status | Raw | Stream


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict
    at: float  # time.monotonic()


def completion(answer: Answer) -> dict:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        },
    }


class ScriptedServer:
    """``with ScriptedServer([Status(429, headers={"Retry-After": "1"}), Answer("hi")]) as server:``;
    ``server.base_url`` for the client, ``server.received`` for what came. ``responder`` (given the
    request body) answers when the script is spent."""

    def __init__(self, script: list[Step] | None = None, responder: Callable[[dict], Step] | None = None) -> None:
        self.script = list(script or [])
        self.responder = responder
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next(self, body: dict) -> Step:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            number = len(self.received)
        return self.responder(body) if self.responder else Answer(f"answer {number}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
                    self.close_connection = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = {"unparsable": raw.decode("utf-8", "replace")}
                with server._lock:
                    server.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                if not urlsplit(self.path).path.endswith("/chat/completions"):  # Azure: /openai/deployments/M/...
                    self._send(404, b'{"error": {"message": "not found"}}', "application/json")
                    return
                step = server._next(body)
                if isinstance(step, Answer):
                    if step.delay_s:
                        time.sleep(step.delay_s)
                    self._send(200, json.dumps(completion(step)).encode(), "application/json")
                elif isinstance(step, Status):
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    message = step.message.format_map(headers) if step.echo_headers else step.message
                    error = {"error": {"message": message, "type": "scripted", "code": None}}
                    self._send(step.code, json.dumps(error).encode(), "application/json", step.headers)
                elif isinstance(step, Stream):
                    self._stream(step)
                else:
                    self._send(200, step.body, step.content_type, step.headers)

            def _stream(self, step: Stream) -> None:
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for _ in range(step.count):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(step.chunk), step.chunk))
                        self.wfile.flush()
                        time.sleep(step.interval_s)
                    if step.then:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(step.then), step.then))
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        return Handler
