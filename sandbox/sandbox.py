"""The Sandbox: a backend, its warm pool and the sessions opened on it."""

from __future__ import annotations

import atexit
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from learnact.envs.base import ArgumentError, PrimitiveSpec
from learnact.sandbox.backend import open_backend
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.pool import Pool
from learnact.sandbox.session import Handler, Session


def _no_primitives(name: str, args: list) -> str:
    raise ArgumentError(f"unknown primitive '{name}'")


class Sandbox:
    """Runs untrusted code; see DESIGN.md for the trust boundary.

    Creating one opens the configured backend (``backend.BACKENDS``; for docker it checks the engine,
    the image and that it is current, and the runtime) which removes what sandboxes of killed
    processes left, and starts filling the warm pool. ``close()`` (or leaving the ``with`` block, or
    the interpreter's exit) removes every sandbox it started.

    :raises SandboxUnavailable: when the backend's sandboxes cannot run here; the message says what to do.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._backend = open_backend(self.config)
        self._pool = Pool(self._backend.start, self.config.pool_size)
        self._sessions: list[Session] = []
        self._closed = False
        atexit.register(self.close)

    @contextmanager
    def session(self, primitives: Sequence[PrimitiveSpec] = (), handler: Handler = _no_primitives) -> Iterator[Session]:
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

    def expect(self, sessions: int) -> None:
        """At most ``sessions`` more sessions will be opened: the warm pool starts no more than that ahead."""
        self._pool.expect(sessions)

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
