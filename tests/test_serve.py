"""`learnact serve`, as an MCP client sees it: the official SDK's own client, over stdio and over streamable
HTTP, against the real server process and the Docker sandbox. Sessions on blockworld call its primitives
on the host; hostile code is refused or contained; a cancelled call kills its execution and removes its
sandbox; clients cannot reach each other's sessions; limits can only be lowered; HTTP off loopback needs a
token; stopping the server removes every sandbox."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from learnact.sandbox.config import CONTAINER_LABEL

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("sandbox_image")]
LEARNACT = str(Path(sys.executable).with_name("learnact"))
TOOLS = {"check_code", "open_session", "run_code", "close_session", "list_environments"}


def stdio(*args: str) -> StdioServerParameters:
    return StdioServerParameters(command=LEARNACT, args=["serve", *args], env={"PATH": os.environ["PATH"]})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HttpServer:
    """`learnact serve --http` as a process of its own."""

    def __init__(self, *args: str, host: str = "127.0.0.1", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process = subprocess.Popen(
            [LEARNACT, "serve", "--http", f"{host}:{self.port}", *args],
            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.stderr.read()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the server did not listen within 30 s")

    def containers(self) -> list[dict]:
        from learnact.sandbox.docker_backend import connect

        api = connect()
        try:
            return api.containers(all=True, filters={"label": f"{CONTAINER_LABEL}={self.process.pid}"})
        finally:
            api.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    if server.process.poll() is None:
        server.stop()


def data(result: Any) -> Any:
    assert not result.is_error, [c.text for c in result.content]
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error, result
    return " ".join(c.text for c in result.content)


def test_a_client_checks_and_runs_code_in_a_session_on_blockworld_over_stdio() -> None:
    async def scenario() -> None:
        async with Client(stdio("--timeout", "5")) as client:
            tools = (await client.list_tools()).tools
            assert {t.name for t in tools} == TOOLS and all(len(t.description or "") > 40 for t in tools)
            listed = data(await client.call_tool("list_environments", {}))["result"]
            assert {"name": "pddl/blockworld", "primitives": ["Pickup(block)", "Putdown(block)",
                    "Stack(block1, block2)", "Unstack(block1, block2)"]} in listed  # fmt: skip
            checked = data(await client.call_tool("check_code", {"code": "import os\nos.system('id')"}))
            assert checked["errors"] == 1 and checked["findings"][0]["rule"] == "LA002"

            opened = data(await client.call_tool("open_session", {"env": "pddl/blockworld", "task": "0"}))
            session = opened["session_id"]
            assert opened["task"] == "blockworld-01" and "b3 is on b2" in opened["goal"] and len(session) >= 32
            run = {"session_id": session}
            first = data(await client.call_tool("run_code", {**run, "code": "seen = Pickup('b3')"}))
            second = data(await client.call_tool("run_code", {**run, "code": "print(seen)\nprint(Stack('b3', 'b2'))"}))
            assert first["status"] == "ok" and first["calls"][0]["valid"] is True
            assert second["stdout"].startswith("You are holding b3.") and "b3 is on b2" in second["stdout"]
            hostile = data(await client.call_tool("run_code", {"session_id": session, "code": "import os"}))
            assert hostile["status"] == "rejected" and hostile["findings"][0]["rule"] == "LA002"
            endless = data(await client.call_tool("run_code", {"session_id": session, "code": "while True:\n    pass"}))
            assert endless["status"] == "timeout"

            assert data(await client.call_tool("close_session", {"session_id": session}))["result"] == "closed"
            gone = await client.call_tool("run_code", {"session_id": session, "code": "pass"})
            assert "no open session" in error_text(gone)

    anyio.run(scenario)


def test_limits_can_be_lowered_never_raised_and_sessions_are_counted() -> None:
    async def scenario() -> None:
        async with Client(stdio("--timeout", "5", "--max-sessions", "2")) as client:
            unknown = await client.call_tool("open_session", {"env": "pddl/nowhere"})
            assert "unknown environment 'pddl/nowhere'" in error_text(unknown)  # and its slot is free again
            raised = await client.call_tool("open_session", {"timeout_s": 60})
            assert "timeout_s 60.0 is above this server's 5.0" in error_text(raised)
            lowered = data(await client.call_tool("open_session", {"timeout_s": 1, "max_calls": 3}))
            assert (lowered["timeout_s"], lowered["max_calls"]) == (1.0, 3)
            started = time.monotonic()
            busy = data(await client.call_tool("run_code", {"session_id": lowered["session_id"],
                                                             "code": "while True:\n    pass"}))  # fmt: skip
            assert busy["status"] == "timeout" and time.monotonic() - started < 4  # its 1 s, not the server's 5
            data(await client.call_tool("open_session", {}))
            third = await client.call_tool("open_session", {})
            assert "2 sessions open, its limit" in error_text(third)

    anyio.run(scenario)


def test_two_http_clients_cannot_reach_each_others_sessions(http_server: HttpServer) -> None:
    async def scenario() -> None:
        async with Client(http_server.url) as alice, Client(http_server.url) as bob:
            hers = data(await alice.call_tool("open_session", {}))["session_id"]
            his = data(await bob.call_tool("open_session", {}))["session_id"]
            assert hers != his
            data(await alice.call_tool("run_code", {"session_id": hers, "code": "secret = 4242"}))
            looked = data(await bob.call_tool("run_code", {"session_id": his, "code": "print(secret)"}))
            assert (
                looked["status"] == "rejected" and "'secret'" in looked["findings"][0]["message"]
            )  # not defined there
            forged = await bob.call_tool("run_code", {"session_id": his[:-4] + "AAAA", "code": "print(secret)"})
            assert "no open session" in error_text(forged)

    anyio.run(scenario)


def test_a_cancelled_call_kills_its_execution_and_removes_its_sandbox(http_server: HttpServer) -> None:
    async def scenario() -> str:
        async with Client(http_server.url) as client:
            session = data(await client.call_tool("open_session", {}))["session_id"]
            with anyio.move_on_after(1.5):
                await client.call_tool("run_code", {"session_id": session, "code": "while True:\n    pass"})
            deadline = time.monotonic() + 10
            while http_server.containers() and time.monotonic() < deadline:
                await anyio.sleep(0.1)
            return error_text(await client.call_tool("run_code", {"session_id": session, "code": "pass"}))

    started = time.monotonic()
    after = anyio.run(scenario)
    assert "no open session" in after and time.monotonic() - started < 9  # not the 10 s wall clock
    assert http_server.containers() == []


def test_stopping_the_server_removes_every_sandbox(http_server: HttpServer) -> None:
    async def scenario() -> None:
        async with Client(http_server.url) as client:
            for _ in range(2):
                session = data(await client.call_tool("open_session", {}))["session_id"]
                data(await client.call_tool("run_code", {"session_id": session, "code": "pass"}))  # its sandbox starts

    anyio.run(scenario)
    assert len(http_server.containers()) == 2
    assert http_server.stop() in (0, 128 + signal.SIGTERM)
    assert http_server.containers() == []


def test_http_beyond_loopback_requires_a_token_and_checks_it() -> None:
    refused = subprocess.run([LEARNACT, "serve", "--http", "0.0.0.0:9"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "requires a bearer token" in refused.stderr
    unset = subprocess.run(
        [LEARNACT, "serve", "--http", "0.0.0.0:9", "--token-env", "LEARNACT_TEST_UNSET"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "LEARNACT_TEST_UNSET"},
    )  # fmt: skip
    assert unset.returncode == 2 and "LEARNACT_TEST_UNSET" in unset.stderr
    token = "t0k3n-" + os.urandom(8).hex()
    server = HttpServer("--token-env", "SERVE_TOKEN", host="0.0.0.0", env={"SERVE_TOKEN": token})
    try:
        request = urllib.request.Request(server.url, data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 401

        async def scenario() -> list[str]:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx2.AsyncClient(headers=headers) as http:
                async with Client(streamable_http_client(server.url, http_client=http)) as client:
                    return [t.name for t in (await client.list_tools()).tools]

        assert set(anyio.run(scenario)) == TOOLS
    finally:
        server.stop()


def test_serve_help_shows_a_client_configuration() -> None:
    shown = subprocess.run([LEARNACT, "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and '"args": ["serve"]' in shown.stdout and "--token-env" in shown.stdout
    json.loads('{"command": ".venv/bin/learnact", "args": ["serve"]}')  # the form the help shows is JSON


def test_an_idle_session_is_closed_and_its_sandbox_removed() -> None:
    async def scenario() -> str:
        async with Client(stdio("--idle", "1")) as client:
            session = data(await client.call_tool("open_session", {}))["session_id"]
            data(await client.call_tool("run_code", {"session_id": session, "code": "x = 1"}))
            await anyio.sleep(3)  # the sweep runs every second when the idle time is a second
            return error_text(await client.call_tool("run_code", {"session_id": session, "code": "print(x)"}))

    assert "no open session" in anyio.run(scenario)
