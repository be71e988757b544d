"""A warm pool: sandboxes started ahead of time by a background thread, handed out once each.

Acquiring is a queue pop when the pool is warm; when it is empty the caller starts one itself
(a cold start). A sandbox is never returned to the pool: each session gets a fresh one. A caller that
knows how many more sandboxes it will take says so (:meth:`Pool.expect`), and the pool starts no more
than that ahead: at the end of a run, sandboxes started and never used cost a start and a removal each.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from learnact.sandbox.transport import Transport

RETRY_AFTER_FAILURE_S = 1.0
log = logging.getLogger(__name__)


class Pool:
    def __init__(self, start: Callable[[], Transport], size: int) -> None:
        """``start`` (a backend's) runs in the filler's thread and in the caller's (cold starts)."""
        self._start = start
        self._size = size
        self._ready: deque[Transport] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._expected: int | None = None  # how many more acquisitions the caller announced (None: unknown)
        self.last_error: BaseException | None = None  # why the filler could not start one, if it failed
        self._thread: threading.Thread | None = None
        if size > 0:
            self._thread = threading.Thread(target=self._fill, name="learnact-sandbox-pool", daemon=True)
            self._thread.start()

    def acquire(self) -> Transport:
        with self._lock:
            if self._expected is not None:
                self._expected = max(0, self._expected - 1)
            if self._ready:
                transport = self._ready.popleft()
                self._wake.set()
                return transport
        return self._start()

    def expect(self, count: int) -> None:
        """At most ``count`` more sandboxes will be acquired: keep no more than that ready (those already
        waiting stay)."""
        with self._lock:
            self._expected = max(0, count)
        self._wake.set()

    def warm(self) -> int:
        """How many sandboxes wait ready right now."""
        with self._lock:
            return len(self._ready)

    def _fill(self) -> None:
        failing = False
        while not self._closed:
            with self._lock:
                wanted = self._size if self._expected is None else min(self._size, self._expected)
                missing = wanted - len(self._ready)
            if missing <= 0:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                transport = self._start()
            except Exception as exc:  # noqa: BLE001 - a cold start in acquire() will raise it properly
                if not failing:  # once per streak of failures, not every second
                    log.info("the warm pool cannot start a sandbox (retrying in %g s): %s", RETRY_AFTER_FAILURE_S, exc)
                failing = True
                self.last_error = exc
                self._wake.wait(RETRY_AFTER_FAILURE_S)
                continue
            if failing:
                log.info("the warm pool starts sandboxes again")
                failing = False
            log.debug("the warm pool started a sandbox ahead of time")
            with self._lock:
                if not self._closed:
                    self._ready.append(transport)
                    continue
            transport.close()

    def close(self) -> None:
        """Stop the filler (waiting for a start in progress) and remove every waiting sandbox."""
        with self._lock:
            self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        while self._ready:
            self._ready.popleft().close()
