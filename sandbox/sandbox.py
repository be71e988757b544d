"""The Sandbox: a backend, its warm pool and the sessions opened on it."""

from __future__ import annotations

import atexit
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from learnact.envs.base import ArgumentError, PrimitiveSpec
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.pool import Pool
from learnact.sandbox.session import Handler, Session

if TYPE_CHECKING:  # the backends are imported when chosen (the Docker SDK is slow to import)
    from learnact.sandbox.docker_backend import DockerBackend
    from learnact.sandbox.process_backend import ProcessBackend


def _no_primitives(name: str, args: list) -> str:
    raise ArgumentError(f"unknown primitive '{name}'")


class Sandbox:
    """Runs untrusted code; see DESIGN.md for the trust boundary.

    Creating one connects to the backend (for docker: checks the engine, the image and the
    runtime, and removes containers left by killed processes) and starts filling the warm pool;
    it raises SandboxUnavailable with a one-line message saying what to do when it cannot.
    ``close()`` (or leaving the ``with`` block, or the interpreter's exit) removes every sandbox
    it started.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        if self.config.backend == "docker":
            from learnact.sandbox.docker_backend import DockerBackend

            docker_backend = DockerBackend(self.config)
            filler_client = docker_backend.new_client()
            self._backend: DockerBackend | ProcessBackend = docker_backend
            self._pool = Pool(
                docker_backend.start, self.config.pool_size, lambda: docker_backend.start(filler_client)
            )
        else:
            from learnact.sandbox.process_backend import ProcessBackend

            self._backend = ProcessBackend(self.config)
            self._pool = Pool(self._backend.start, self.config.pool_size)
        self._sessions: list[Session] = []
        self._closed = False
        atexit.register(self.close)

    @contextmanager
    def session(
        self, primitives: Sequence[PrimitiveSpec] = (), handler: Handler = _no_primitives
    ) -> Iterator[Session]:
        """A session with its own fresh sandbox, removed when the block ends."""
        if self._closed:
            raise RuntimeError("this Sandbox is closed; create a new one")
        session = Session(self.config, self._pool.acquire, primitives, handler)
        self._sessions.append(session)
        try:
            yield session
        finally:
            self._sessions.remove(session)
            session.close()

    def warm(self) -> int:
        """Sandboxes started ahead and waiting in the pool."""
        return self._pool.warm()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for session in list(self._sessions):
            session.close()
        self._pool.close()
        self._backend.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

