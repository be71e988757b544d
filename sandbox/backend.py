"""What a sandbox backend is, and the table that picks one for a configuration.

A backend runs the runner somewhere isolated and hands the host a :class:`Transport` to it. Its
life: opening it checks that it can run here (:class:`SandboxUnavailable` says what is missing),
``sweep()`` removes what processes killed before their cleanup left behind, ``start()`` makes
ready sandboxes (from any thread: the warm pool's filler calls it beside the sessions' cold starts),
``close()`` releases it. How a sandbox ended is the transport's :class:`ExitInfo`, in fields a
session reads without knowing the backend.

A new backend (a Kubernetes pod, a microVM) is one module with a :class:`Backend` and a
:class:`Transport`, a member of :class:`~learnact.sandbox.config.BackendName` and a line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod

from learnact.sandbox.config import BackendName, SandboxConfig
from learnact.sandbox.transport import Transport

# Each backend's class, imported when chosen (the Docker SDK alone takes a quarter of a second).
BACKENDS: dict[BackendName, str] = {
    BackendName.docker: "learnact.sandbox.docker_backend:DockerBackend",
    BackendName.process: "learnact.sandbox.process_backend:ProcessBackend",
    BackendName.bwrap: "learnact.sandbox.bwrap_backend:BwrapBackend",
}


class Backend(ABC):
    """One way of running sandboxes, set up for one configuration."""

    def __init__(self, config: SandboxConfig) -> None:
        """Check that sandboxes can run here.

        :raises SandboxUnavailable: when they cannot (no engine, image, runtime, ...), saying what to do.
        """
        self.config = config

    def sweep(self) -> int:
        """Remove what sandboxes of processes killed before their cleanup left behind (containers,
        directories); the number removed. Called once, when the backend is opened."""
        return 0

    @abstractmethod
    def start(self) -> Transport:
        """A new sandbox that has said ``ready``; safe to call from any thread.

        :raises SandboxUnavailable: when it cannot start.
        """

    @abstractmethod
    def close(self) -> None:
        """Release what the backend holds, waiting until the sandboxes it handed out and that were
        closed are gone. Transports still open are their owners' to close."""


def backend_class(name: BackendName) -> type[Backend]:
    """The class of the backend called ``name``, imported now."""
    module, _, attribute = BACKENDS[BackendName(name)].partition(":")
    return getattr(importlib.import_module(module), attribute)


def open_backend(config: SandboxConfig) -> Backend:
    """The configured backend, checked and swept, ready to start sandboxes.

    :raises SandboxUnavailable: when its sandboxes cannot run here.
    """
    backend = backend_class(config.backend)(config)
    try:
        backend.sweep()
    except BaseException:
        backend.close()
        raise
    return backend
