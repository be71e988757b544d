"""Whether a process still runs: what the sweeps of leftovers (sandbox containers, planner folders) ask of
the pid that owns them. It lives in the bottom room so that ``envs`` and ``sandbox`` share it."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
