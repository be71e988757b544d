"""`learnact serve`: the sandbox as a Model Context Protocol server (``mcp_server.py``), over stdio or HTTP.

An MCP client's configuration, for stdio (the usual ``mcpServers`` entry of a desktop or IDE client)::

    {"mcpServers": {"learnact": {"command": "/path/to/learnact/.venv/bin/learnact", "args": ["serve"]}}}

and for HTTP, ``learnact serve --http 127.0.0.1:8765`` with the client pointed at ``http://127.0.0.1:8765/mcp``.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated, Optional

import typer

from learnact.engine.commands.common import fail, reported
from learnact.engine.commands.options import SandboxOptions, with_groups


@with_groups
def serve(
    *,
    http: Annotated[
        Optional[str],
        typer.Option(
            "--http", metavar="HOST:PORT", help="serve streamable HTTP at HOST:PORT (path /mcp) instead of stdio"
        ),
    ] = None,
    token_env: Annotated[
        Optional[str],
        typer.Option(
            "--token-env",
            metavar="VAR",
            help="the environment variable holding the bearer token HTTP clients must send; required off loopback",
        ),
    ] = None,
    sandbox_options: SandboxOptions,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="wall-clock seconds of one run (clients may lower it)")
    ] = 10.0,
    memory: Annotated[int, typer.Option(min=32, help="memory of a sandbox in MiB (clients may lower it)")] = 256,
    max_calls: Annotated[int, typer.Option(min=1, help="primitive calls of one run (clients may lower it)")] = 200,
    max_sessions: Annotated[int, typer.Option(min=1, max=256, help="sessions open at once, all clients")] = 8,
    idle: Annotated[float, typer.Option(min=1, help="seconds after which an unused session is closed")] = 600.0,
) -> None:
    """Serve the sandbox to MCP clients: check code, open sessions (on an environment), run code, close.

    Add it to an MCP client's configuration as {"command": ".venv/bin/learnact", "args": ["serve"]} (stdio),
    or run `learnact serve --http 127.0.0.1:8765` and point the client at http://127.0.0.1:8765/mcp.
    """
    try:
        from learnact.engine.commands.mcp_server import ServeConfig, bearer_guard, build_server
    except ImportError as exc:
        raise fail(f"learnact serve needs the MCP SDK ({exc}): pip install 'learnact[serve]'") from None
    token = None
    if token_env is not None:
        token = os.environ.get(token_env)
        if not token:
            raise fail(f"--token-env: the variable {token_env} is not set (or empty)")
    host, port = _address(http) if http else (None, None)
    if host is not None and not _loopback(host) and token is None:
        raise fail(
            f"--http {http}: serving beyond this machine requires a bearer token: set one in a variable and "
            "give --token-env VAR (or bind to 127.0.0.1)"
        )
    with reported():
        sandbox = sandbox_options.config(timeout_s=timeout, memory_mb=memory, max_calls=max_calls, pool_size=0)
        server = build_server(ServeConfig(sandbox=sandbox, max_sessions=max_sessions, idle_s=idle))
    try:
        if host is None:
            server.run("stdio")
        else:
            _serve_http(server, host, port, token, bearer_guard)
    finally:
        server.learnact_sessions.close_all()  # also when a signal ended the loop before its own clean-up


def _serve_http(server: object, host: str, port: int, token: str | None, guard: object) -> None:
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    # Off loopback the token is the protection; the Host header then names this machine as its clients see it.
    security = None if _loopback(host) else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(host=host, transport_security=security)  # type: ignore[attr-defined]
    if token is not None:
        app = guard(app, token)  # type: ignore[operator]
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")).run()


def _address(given: str) -> tuple[str, int]:
    """HOST and PORT of ``--http HOST:PORT``.

    :raises typer.Exit: (the error printed) for another form.
    """
    host, _, port = given.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise fail(f"--http {given}: give HOST:PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
