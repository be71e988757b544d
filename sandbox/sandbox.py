"""The Sandbox: a backend, its warm pool and the sessions opened on it."""

from __future__ import annotations

import atexit
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING

from learnact.envs.base import ArgumentError, PrimitiveSpec
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.pool import Pool
from learnact.sandbox.session import Handler, Session
from learnact.sandbox.transport import SandboxUnavailable

if TYPE_CHECKING:  # the backends are imported when chosen (the Docker SDK is slow to import)
    import docker

    from learnact.sandbox.docker_backend import DockerBackend
    from learnact.sandbox.process_backend import ProcessBackend


def _no_primitives(name: str, args: list) -> str:
    raise ArgumentError(f"unknown primitive '{name}'")


@lru_cache(maxsize=1)
def _installed_sources() -> str | None:
    """The sources hash of the installed runner, policy and RestrictedPython; None without a source
    checkout (the image cannot be built from one either, so there is nothing to compare)."""
    from learnact.images.common import ImageBuildError
    from learnact.images.sandbox_image import sources_sha256

    try:
        return sources_sha256()
    except (ImageBuildError, OSError):
        return None


def check_image_current(api: docker.APIClient, image: str) -> None:
    """Refuse a sandbox image built from another runner, policy or RestrictedPython than the installed
    ones (after an upgrade the old runner would run silently). Images that learnact did not build
    (no inputs label) are the user's own choice and are not judged."""
    from learnact.images.common import INPUTS_LABEL, SOURCES_LABEL

    labels = (api.inspect_image(image).get("Config") or {}).get("Labels") or {}
    if INPUTS_LABEL not in labels:
        return
    expected = _installed_sources()
    if expected is not None and labels.get(SOURCES_LABEL) != expected:
        raise SandboxUnavailable(
            f"the sandbox image {image} is out of date (built from another runner, policy or "
            "RestrictedPython than the installed ones): rebuild it with `learnact images build`"
        )


class Sandbox:
    """Runs untrusted code; see DESIGN.md for the trust boundary.

    Creating one connects to the backend (for docker: checks the engine, the image and that it is
    current, and the runtime, and removes containers left by killed processes) and starts filling the warm pool;
    it raises SandboxUnavailable with a one-line message saying what to do when it cannot.
    ``close()`` (or leaving the ``with`` block, or the interpreter's exit) removes every sandbox
    it started.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        if self.config.backend == "docker":
            from learnact.sandbox.docker_backend import DockerBackend

            docker_backend = DockerBackend(self.config)
            try:
                check_image_current(docker_backend.api, self.config.image)
            except BaseException:
                docker_backend.close()
                raise
            filler_client = docker_backend.new_client()
            self._backend: DockerBackend | ProcessBackend = docker_backend
            self._pool = Pool(docker_backend.start, self.config.pool_size, lambda: docker_backend.start(filler_client))
        else:
            from learnact.sandbox.process_backend import ProcessBackend

            self._backend = ProcessBackend(self.config)
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
