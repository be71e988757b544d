"""The small interface between a host session and one running sandbox, whatever the backend."""

from __future__ import annotations

import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from learnact.actions.errors import LearnactError
from learnact.sandbox.protocol import ProtocolError, parse


class SandboxUnavailable(LearnactError):
    """The sandbox cannot run here (no engine, no image, no runtime): ``reason`` says why, ``hint``
    what to do, ``backend`` which backend (None when not known where it is raised)."""

    def __init__(self, reason: str, hint: str = "", *, backend: str | None = None) -> None:
        self.reason = reason
        self.hint = hint
        self.backend = backend
        super().__init__(reason, hint)


@dataclass(frozen=True)
class ExitInfo:
    """How a sandbox ended, as its backend tells it: the session decides the result from these fields
    and never from backend-specific codes."""

    exit_code: int | None  # the runner's exit status; None when killed by a signal or unknown
    oom_killed: bool = False  # killed for exceeding its memory limit
    diagnostics: str = ""  # the tail of the runner's own stderr (and what went wrong asking, if anything)
    signal: int | None = None  # the signal that killed it, where the backend can tell
    cpu_limited: bool = False  # killed for exceeding its CPU time limit

    def describe(self) -> str:
        """``exit code 7``, ``killed by SIGSEGV`` or ``exit status unknown``."""
        if self.signal is not None:
            try:
                return f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                return f"killed by signal {self.signal}"
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        return "exit status unknown"


class Transport(ABC):
    """One started sandbox that has said ``ready``: bytes in, lines out, and a way to end it."""

    what = "sandbox"  # how start-up errors name it
    ready_timeout_s = 30.0

    def __init__(self) -> None:
        self._buffer = bytearray()

    def await_ready(self, max_bytes: int) -> None:
        """Wait for the runner's ``ready``; a sandbox that exits or says anything else is unusable."""
        line = self.read_line(time.monotonic() + self.ready_timeout_s, max_bytes)
        if line is None:
            info = self.finish(kill=False)
            raise SandboxUnavailable(f"the {self.what} exited at start ({info.describe()}): {info.diagnostics.strip()}")
        if parse(line, max_bytes).op != "ready":
            raise ProtocolError(f"expected 'ready' from a new sandbox, got {line[:120]!r}")

    @abstractmethod
    def send(self, data: bytes) -> None:
        """Write to the runner's protocol input; raises OSError when the sandbox is gone."""

    @abstractmethod
    def _receive(self, timeout: float) -> bytes | None:
        """Protocol bytes that arrive within ``timeout`` s: b"" at end of stream, None if none came."""

    @abstractmethod
    def finish(self, kill: bool) -> ExitInfo:
        """Kill the sandbox (or wait briefly for it to end), remove it and say how it ended."""

    @abstractmethod
    def close(self) -> None:
        """Remove the sandbox without waiting; idempotent."""

    def read_line(self, deadline: float, max_bytes: int) -> bytes | None:
        """The next protocol line (without newline), None at end of stream.

        Raises TimeoutError at ``deadline`` (time.monotonic()) and ProtocolError as soon as the
        line being received is longer than ``max_bytes``.
        """
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                if len(line) > max_bytes:
                    raise ProtocolError(f"message of {len(line)} bytes exceeds the cap of {max_bytes} bytes")
                return line
            if len(self._buffer) > max_bytes:
                raise ProtocolError(f"message of more than {max_bytes} bytes exceeds the cap")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            chunk = self._receive(remaining)
            if chunk == b"":
                return None
            if chunk:
                self._buffer += chunk

    def has_unread(self) -> bool:
        """Whether the sandbox sent anything that nobody asked for (checked between requests)."""
        if self._buffer:
            return True
        chunk = self._receive(0)
        if chunk:
            self._buffer += chunk
        return chunk is not None
