"""The docker backend: one locked-down container per session, spoken to over its attached stdio.

The channel is the container's own stdin/stdout, attached through the Docker API before start:
no network, no mounts, and one Unix-socket hop between the host and the runner. The attach stream
is multiplexed (8-byte frame headers); stdout carries the protocol, stderr the runner's own fatal
errors. The logging driver is off so that the protocol is not copied to the daemon's log files.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from functools import lru_cache

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound, create_api_error_from_http_exception
from docker.types import LogConfig, Ulimit

from learnact.actions.processes import process_alive
from learnact.images.common import INPUTS_LABEL, SOURCES_LABEL, ImageBuildError
from learnact.images.sandbox_image import sources_sha256
from learnact.sandbox.backend import Backend
from learnact.sandbox.config import CONTAINER_LABEL, SandboxConfig
from learnact.sandbox.transport import ExitInfo, SandboxUnavailable, Transport

RUNNER_PATH = "/opt/learnact/runner.py"
SANDBOX_USER = "10001:10001"
DIAGNOSTICS_BYTES = 4096
# Docker API calls that end a container (kill, wait, inspect) give up after this: a teardown must
# not hang on the engine; the background remover (force) still removes the container.
TEARDOWN_TIMEOUT_S = 5.0
OOM_REPORT_WAIT_S = 1.0  # how long an unexplained SIGKILL waits for the engine to log an OOM kill
log = logging.getLogger(__name__)
START_HINT = (
    "start one (as root: `dockerd --iptables=false --ip6tables=false --bridge=none &`, or run .ci/run) "
    "or pass --backend process"
)


def connect(timeout_s: float = 30.0) -> docker.APIClient:
    """A client of the local engine, or SandboxUnavailable saying how to start one."""
    try:
        api = docker.APIClient(**docker.utils.kwargs_from_env(), version="auto", timeout=timeout_s)
        api.ping()
    except (DockerException, OSError) as exc:
        raise SandboxUnavailable(f"no Docker engine answers ({exc.__class__.__name__}): {START_HINT}") from None
    return api


def engine_answers() -> bool:
    try:
        connect(timeout_s=3.0)
    except SandboxUnavailable:
        return False
    return True


def runner_command(config: SandboxConfig) -> list[str]:
    # -I: no environment variables, no user site; -S: no site module (the image has no packages
    # beyond RestrictedPython, which the runner finds in /opt/learnact/lib); -u: unbuffered.
    return [
        "python3",
        "-I",
        "-S",
        "-u",
        RUNNER_PATH,
        "--max-message-bytes",
        str(config.max_message_bytes),
        "--kill-strays",
    ]


def host_config_kwargs(config: SandboxConfig) -> dict:
    """The isolation flags, shared with the benchmark's bare `docker run`."""
    return dict(
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={config.tmpfs_mb}m,mode=1777"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],  # the default seccomp profile stays on
        pids_limit=config.pids,
        mem_limit=f"{config.memory_mb}m",
        memswap_limit=f"{config.memory_mb}m",
        nano_cpus=int(config.cpus * 1e9),
        # msgqueue=0: no POSIX message queues (/dev/mqueue is another writable place under runc).
        ulimits=[Ulimit(name="nofile", soft=256, hard=256), Ulimit(name="msgqueue", soft=0, hard=0)],
        runtime=config.runtime,
        ipc_mode="none",  # a private IPC namespace without /dev/shm (Docker's default: a writable 64 MB tmpfs)
    )


class DockerBackend(Backend):
    """Checks the engine, the image (present and built from the installed sources) and the runtime.

    Each thread that starts containers gets its own client (the pool's filler beside the sessions'
    cold starts: a client's connection pool is not shared); every container is ended through one
    teardown client and removed by one background remover, whichever thread started it.
    """

    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.api = connect()
        try:
            self.api.inspect_image(config.image)
        except ImageNotFound:
            raise SandboxUnavailable(
                f"the sandbox image {config.image} is missing: build it with `learnact images build`"
            ) from None
        runtimes = self.api.info().get("Runtimes", {})
        if config.runtime not in runtimes:
            raise SandboxUnavailable(
                f"the Docker engine has no '{config.runtime}' runtime (it has: {', '.join(sorted(runtimes))}); "
                "register gVisor in /etc/docker/daemon.json or use --runtime runc"
            )
        check_image_current(self.api, config.image)
        self.owner = str(os.getpid())
        self._local = threading.local()  # this thread's client
        self._local.api = self.api
        self._clients = [self.api]
        self._clients_lock = threading.Lock()
        self.remover = Remover(self._new_client())
        self.teardown_api = docker.APIClient(
            **docker.utils.kwargs_from_env(), version=self.api.api_version, timeout=TEARDOWN_TIMEOUT_S
        )

    def sweep(self) -> int:
        """Remove the containers of processes killed before their cleanup."""
        return remove_stale_containers(self.api)

    def _new_client(self) -> docker.APIClient:
        return docker.APIClient(**docker.utils.kwargs_from_env(), version=self.api.api_version)

    def _client(self) -> docker.APIClient:
        """The calling thread's client, made at its first start."""
        api = getattr(self._local, "api", None)
        if api is None:
            api = self._local.api = self._new_client()
            with self._clients_lock:
                self._clients.append(api)
        return api

    def start(self) -> DockerTransport:
        api = self._client()
        host_config = api.create_host_config(**host_config_kwargs(self.config), log_config=LogConfig(type="none"))
        container = api.create_container(
            self.config.image,
            command=runner_command(self.config),
            user=SANDBOX_USER,
            working_dir="/tmp",
            environment={},  # the host's environment never enters
            labels={CONTAINER_LABEL: self.owner},
            stdin_open=True,
            tty=False,
            network_disabled=True,
            hostname="sandbox",
            host_config=host_config,
        )["Id"]
        transport = None
        try:
            attachment = attach(api, container)
            # Teardown goes through the owner's client, whichever thread started the container.
            transport = DockerTransport(self.teardown_api, container, attachment, self.remover.remove)
            api.start(container)
            transport.await_ready(self.config.max_message_bytes)
        except BaseException:
            if transport is not None:
                transport.close()
            else:
                _remove(api, container)
            raise
        return transport

    def close(self) -> None:
        """Wait until every container handed to the remover is gone, then disconnect."""
        self.remover.close()
        self.teardown_api.close()
        with self._clients_lock:
            for api in self._clients:
                api.close()


def attach(api: docker.APIClient, container: str) -> requests.Response:
    """Attach to the (created, not yet started) container's stdin, stdout and stderr.

    The HTTP connection is upgraded to the raw, multiplexed stream: the response's connection socket
    carries it, and closing the response closes that socket (``APIClient.attach_socket`` returns a
    file object whose socket can be shut down and closed only through private attributes).
    """
    response = api.post(
        f"{api.base_url}/v{api.api_version}/containers/{container}/attach",
        params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1},
        headers={"Connection": "Upgrade", "Upgrade": "tcp"},
        stream=True,
    )
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        response.close()
        raise create_api_error_from_http_exception(exc) from None
    return response


@lru_cache(maxsize=1)
def _installed_sources() -> str | None:
    """The sources hash of the installed runner, policy and RestrictedPython; None without a source
    checkout (the image cannot be built from one either, so there is nothing to compare)."""
    try:
        return sources_sha256()
    except (ImageBuildError, OSError):
        return None


def check_image_current(api: docker.APIClient, image: str) -> None:
    """Refuse a sandbox image built from another runner, policy or RestrictedPython than the installed
    ones (after an upgrade the old runner would run silently). Images that learnact did not build
    (no inputs label) are the user's own choice and are not judged."""
    labels = (api.inspect_image(image).get("Config") or {}).get("Labels") or {}
    if INPUTS_LABEL not in labels:
        return
    expected = _installed_sources()
    if expected is not None and labels.get(SOURCES_LABEL) != expected:
        raise SandboxUnavailable(
            f"the sandbox image {image} is out of date (built from another runner, policy or "
            "RestrictedPython than the installed ones): rebuild it with `learnact images build`"
        )


class Remover:
    """Removes finished containers on a background thread.

    Docker's teardown of a container takes tens of milliseconds; an ending session hands its
    container over (its protocol socket is already closed) and goes on. Removal starts at once, so
    a container outlives its session by that teardown only. ``close()`` waits for every removal.
    A removal that fails leaves a labelled container, which the next Sandbox start removes.
    """

    def __init__(self, api: docker.APIClient) -> None:
        self._api = api
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="learnact-remover", daemon=True)
        self._thread.start()

    def remove(self, container: str) -> None:
        self._queue.put(container)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._api.close()

    def _run(self) -> None:
        while (container := self._queue.get()) is not None:
            try:
                _remove(self._api, container)
            except (DockerException, requests.RequestException) as exc:  # an engine that errs or is slow
                # Left labelled: removed at the next Sandbox start.
                log.warning("could not remove sandbox container %.12s (the next start removes it): %s", container, exc)
            else:
                log.debug("removed sandbox container %.12s", container)


def remove_stale_containers(api: docker.APIClient) -> int:
    """Remove sandbox containers whose owning process no longer runs (killed before its cleanup)."""
    removed = 0
    for container in api.containers(all=True, filters={"label": CONTAINER_LABEL}):
        owner = container.get("Labels", {}).get(CONTAINER_LABEL, "")
        if owner.isdigit() and process_alive(int(owner)):
            continue
        _remove(api, container["Id"])
        removed += 1
    return removed


def _remove(api: docker.APIClient, container: str) -> None:
    try:
        api.remove_container(container, force=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise


def oom_logged(api: docker.APIClient, container: str, since: int) -> bool:
    """Whether the engine logged an OOM kill of ``container`` (made at ``since``, whole seconds), asked for up to
    :data:`OOM_REPORT_WAIT_S` after an unexplained SIGKILL. The engine marks a container OOMKilled only when the
    OOM event reached it before the exit; under gVisor it can come after (a full test run saw exit 137
    unexplained, twice), and is then in the event log alone.

    :raises DockerException: when the engine does not answer.
    """
    deadline = time.monotonic() + OOM_REPORT_WAIT_S
    while True:
        until = int(time.time()) + 1  # whole seconds: up to the end of this one, so that its events count
        events = api.events(since=since, until=until, filters={"container": container, "event": "oom"}, decode=True)
        try:
            if any(True for _ in events):
                return True
        finally:
            events.close()
        if time.monotonic() > deadline:
            return False


class DockerTransport(Transport):
    what = "sandbox container"
    ready_timeout_s = 60.0

    def __init__(
        self, api: docker.APIClient, container: str, attachment: requests.Response, remove: Callable[[str], None]
    ) -> None:
        super().__init__()
        self.api, self.container = api, container
        self._made = int(time.time()) - 1  # whole seconds: the start of the container's events (OOM kills)
        self._remove_container = remove
        self._attachment = attachment  # the attach response: closing it closes the socket
        self.sock: socket.socket = attachment.raw.connection.sock
        self._poll = select.poll()  # registered once: cheaper per message than select.select
        self._poll.register(self.sock, select.POLLIN)
        self._frames = bytearray()
        self._stderr = bytearray()
        self._closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _receive(self, timeout: float) -> bytes | None:
        if not self._poll.poll(timeout * 1000):
            return None
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            return b""
        return self._demux(chunk) or None

    def _demux(self, chunk: bytes) -> bytes:
        """Stdout payload of the complete frames received so far; stderr goes to diagnostics."""
        if not self._frames and chunk[0] == 1 and len(chunk) == 8 + int.from_bytes(chunk[4:8], "big"):
            return chunk[8:]  # the usual case: exactly one whole stdout frame
        self._frames += chunk
        out = bytearray()
        while len(self._frames) >= 8:
            stream_type, size = struct.unpack(">BxxxL", self._frames[:8])
            if len(self._frames) < 8 + size:
                break
            payload = self._frames[8 : 8 + size]
            del self._frames[: 8 + size]
            if stream_type == 1:
                out += payload
            else:
                self._stderr = (self._stderr + payload)[-DIAGNOSTICS_BYTES:]
        return bytes(out)

    def finish(self, kill: bool) -> ExitInfo:
        if kill:
            # The attach socket first: while the daemon copies the output of a program that floods it
            # into a socket that nobody reads any more, the kill blocks in the daemon (runc), and with
            # it this call until the API's timeout.
            self._close_stream()
            try:
                self.api.kill(self.container)
            except (DockerException, OSError):
                pass  # it has ended already, or the engine did not answer in time: removed anyway
        try:
            self.api.wait(self.container, timeout=TEARDOWN_TIMEOUT_S if kill else 10)
            state = self.api.inspect_container(self.container)["State"]
            oom_killed = bool(state.get("OOMKilled"))
            if not kill and state.get("ExitCode") == 137 and not oom_killed:
                oom_killed = oom_logged(self.api, self.container, self._made)
            # A signal's death is exit code 128 + n here, indistinguishable from exit(128 + n); no CPU limit
            # kills a container (its CPU quota slows it down), the wall clock ends it.
            info = ExitInfo(state.get("ExitCode"), oom_killed, self._stderr.decode("utf-8", "replace"))
        except (DockerException, OSError) as exc:  # already gone, or the engine failed: say so
            info = ExitInfo(None, False, f"{self._stderr.decode('utf-8', 'replace')}\n({exc})")
        self.close()
        return info

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_stream()
        self._remove_container(self.container)

    def _close_stream(self) -> None:
        """Stop reading the container: the daemon's copy of its output ends at once (idempotent)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already, or the other end went away
        try:
            self._attachment.close()
        except OSError:
            pass
