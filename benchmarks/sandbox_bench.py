"""Sandbox latency, measured in one run: `python benchmarks/sandbox_bench.py [--backend docker|bwrap]
[--runtime runc|runsc] [--json]`.

- call_roundtrip_ms: median time between consecutive proxied primitive calls of one snippet
  (host reply -> stub returns -> next call -> host parses it), beside
- raw_echo_ms: median round trip of a bare line echo in a container of the same image with the
  same flags, over the same attached-stdio channel;
- warm_acquire_ms: median time to take a started, ready sandbox from the warm pool;
- cold_start_ms: open a session without a pool, run `pass`, remove the container, beside
- bare_docker_run_ms: `docker run --rm -i` of the same image with the same flags doing the same
  (the runner reads the same two requests from stdin and exits);
- check_ms: median static check of a typical 100-line action module, a new text each time.
Targets: roundtrip <= 1.5x raw echo; warm acquire <= 10 ms; cold start <= 1.3x bare run; check <= 2 ms.

With ``--backend bwrap`` the same figures for bubblewrap: ``raw_echo_ms`` is the bare echo in bubblewrap with
the backend's own flags and seccomp filter, ``cold_start_ms`` a session opened, ``pass`` run and the
sandbox ended, beside ``docker_cold_start_ms``, Docker runc's cold start measured in the same run. Targets:
bwrap cold start <= 0.5x Docker runc's; roundtrip <= 1.5x raw echo.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable

from docker.types import LogConfig

from learnact.actions import CodeKind, check
from learnact.envs.base import ParamSpec, PrimitiveSpec
from learnact.sandbox import RuntimeName, Sandbox, SandboxConfig, protocol
from learnact.sandbox.config import CONTAINER_LABEL
from learnact.sandbox.docker_backend import DockerTransport, attach, host_config_kwargs, runner_command
from learnact.sandbox.protocol import Exec, Setup

PICKUP = PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick a block up.")
CALLS = 150  # below the default max_calls (200)
ECHO = "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n"


def call_roundtrip_ms(config: SandboxConfig) -> float:
    stamps: list[float] = []

    def handler(name: str, args: list) -> str:
        stamps.append(time.perf_counter())
        return "You pick up a."

    with Sandbox(config) as sandbox, sandbox.session([PICKUP], handler) as session:
        result = session.execute(f"for i in range({CALLS}):\n    pickup('a')")
        assert result.ok, result.status
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:])) * 1000


def raw_echo_ms(config: SandboxConfig) -> float:
    from learnact.sandbox.docker_backend import connect

    api = connect()
    # The session's own flags, logging driver included: with the engine's default (json-file)
    # every echoed line would also be written to a log file.
    host_config = api.create_host_config(**host_config_kwargs(config), log_config=LogConfig(type="none"))
    container = api.create_container(
        config.image, command=["python3", "-I", "-S", "-u", "-c", ECHO], user="10001:10001",
        stdin_open=True, network_disabled=True, host_config=host_config,
    )["Id"]  # fmt: skip
    transport = DockerTransport(api, container, attach(api, container), lambda c: api.remove_container(c, force=True))
    try:
        api.start(container)
        times = []
        for _ in range(CALLS):
            started = time.perf_counter()
            transport.send(b'{"op":"result","id":1,"value":"You pick up a."}\n')
            transport.read_line(time.monotonic() + 10, 1 << 20)
            times.append(time.perf_counter() - started)
    finally:
        transport.close()
        api.close()
    return statistics.median(times) * 1000


def warm_acquire_ms(config: SandboxConfig) -> float:
    times = []
    with Sandbox(config.model_copy(update={"pool_size": 2})) as sandbox:
        for _ in range(5):
            deadline = time.monotonic() + 60
            while sandbox.warm() < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            started = time.perf_counter()
            transport = sandbox._pool.acquire()  # the pool's own hand-out, nothing else
            times.append(time.perf_counter() - started)
            transport.close()
            del transport  # freed here, not when the next hand-out's result is bound inside the timing
    return statistics.median(times) * 1000


def cold_start_ms(config: SandboxConfig, runs: int) -> float:
    """A session opened without a pool, ``pass`` run, the sandbox ended: for Docker until the container is
    gone, like `docker run --rm` (ending a session removes its container in the background; polling for its
    removal makes this figure, if anything, too high); for bubblewrap until its process is reaped."""
    gone: Callable[[], bool] = lambda: True  # noqa: E731
    if config.backend == "docker":
        from learnact.sandbox.docker_backend import connect

        api = connect()
        mine = {"label": f"{CONTAINER_LABEL}={os.getpid()}"}
        gone = lambda: not api.containers(all=True, filters=mine)  # noqa: E731
    times = []
    with Sandbox(config) as sandbox:
        for _ in range(runs):
            started = time.perf_counter()
            with sandbox.session() as session:
                assert session.execute("pass").ok
            while not gone():
                time.sleep(0.001)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def bare_docker_run_ms(config: SandboxConfig, runs: int) -> float:
    flags = [
        "--rm", "-i", "--network", "none", "--read-only",
        "--tmpfs", f"/tmp:rw,nosuid,nodev,noexec,size={config.tmpfs_mb}m,mode=1777",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", str(config.pids),
        "--memory", f"{config.memory_mb}m", "--memory-swap", f"{config.memory_mb}m", "--cpus", str(config.cpus),
        "--ulimit", "nofile=256:256", "--ulimit", "msgqueue=0:0", "--runtime", config.runtime, "--ipc", "none",
        "--log-driver", "none",
        "--user", "10001:10001", "--workdir", "/tmp",
    ]  # fmt: skip
    requests = protocol.encode(Setup(primitives=[])) + protocol.encode(
        Exec(id=1, code="pass", restricted=True, max_output_bytes=1000, cpu_s=1, nonce="n")
    )
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            ["docker", "run", *flags, config.image, *runner_command(config)],
            input=requests, check=True, capture_output=True,
        )  # fmt: skip
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def typical_action_module() -> str:
    """About 100 lines: ten documented actions calling primitives, with loops and branches."""
    functions = []
    for number in range(10):
        functions.append(
            f'''def action_{number}(blocks, target):
    """Move every block in ``blocks`` onto ``target`` (variant {number}).

    Returns the observations of the primitive calls.
    """
    observations = []
    for block in blocks:
        if block == target:
            continue
        observations.append(pickup(block))
    return observations
'''
        )
    return "\n".join(functions)


def check_ms(runs: int = 200) -> float:
    """A new text every run: the checker keeps the compile results of recent texts."""
    code = typical_action_module()
    times = []
    for run in range(runs):
        text = f"{code}# {run}\n"
        started = time.perf_counter()
        check(text, CodeKind.action_module, [PICKUP])
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def bwrap_raw_echo_ms(config: SandboxConfig) -> float:
    """The bare echo in bubblewrap, started as the backend starts its runner (same flags, user, filter)."""
    from learnact.sandbox.bwrap_backend import BwrapBackend

    backend = BwrapBackend(config)
    read_end, write_end = os.pipe()
    command = backend.command(read_end)
    command = [*command[: command.index("--") + 1], backend.python, "-I", "-S", "-u", "-c", ECHO]
    identity = dict(user=65534, group=65534, extra_groups=[]) if backend.drop_root else {}
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(read_end,), cwd="/", bufsize=0, **identity
    )
    os.close(read_end)
    os.write(write_end, backend.filter)
    os.close(write_end)
    assert process.stdin is not None and process.stdout is not None
    times = []
    try:
        for _ in range(CALLS):
            started = time.perf_counter()
            process.stdin.write(b'{"op":"result","id":1,"value":"You pick up a."}\n')
            process.stdout.readline()
            times.append(time.perf_counter() - started)
    finally:
        process.kill()
        process.wait()
        backend.close()
    return statistics.median(times) * 1000


def figures_of(backend: str, runtime: str, runs: int) -> dict:
    """Every figure of ``backend``: the same five for both, and the baseline of its cold start."""
    bwrap = backend == "bwrap"
    config = SandboxConfig(backend=backend, runtime=runtime, pool_size=0)
    figures = {
        "backend": backend,
        "runtime": None if bwrap else runtime,
        "call_roundtrip_ms": call_roundtrip_ms(config),
        "raw_echo_ms": (bwrap_raw_echo_ms if bwrap else raw_echo_ms)(config),
        "warm_acquire_ms": warm_acquire_ms(config),
        "cold_start_ms": cold_start_ms(config, runs),
        "check_ms": check_ms(),
    }
    if bwrap:
        figures["docker_cold_start_ms"] = cold_start_ms(SandboxConfig(pool_size=0), runs)
    else:
        figures["bare_docker_run_ms"] = bare_docker_run_ms(config, runs)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["docker", "bwrap"], default="docker")
    parser.add_argument("--runtime", choices=[r.value for r in RuntimeName], default=RuntimeName.runc.value)
    parser.add_argument("--runs", type=int, default=5, help="container starts per cold-start figure")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    figures = figures_of(args.backend, args.runtime, args.runs)
    figures = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    if args.json:
        print(json.dumps(figures))
        return
    for name, value in figures.items():
        print(f"{name:>20}: {value}")


if __name__ == "__main__":
    main()
