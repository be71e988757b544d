"""ALFWorld (json_2.1.1 text games) with LearnAct's primitive actions, success and progress rate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from learnact.envs.alfworld.commands import NOTHING_HAPPENS, PRIMITIVES, from_command, to_command
from learnact.envs.alfworld.games import TASK_TYPES, AlfworldDataError

if TYPE_CHECKING:
    from learnact.envs.alfworld.env import AlfworldEnv


def __getattr__(name: str) -> Any:
    """``AlfworldEnv`` is imported on first use: its module loads textworld (~0.6 s), which the task types,
    primitives and commands that every CLI start reads do not need."""
    if name == "AlfworldEnv":
        from learnact.envs.alfworld.env import AlfworldEnv

        return AlfworldEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NOTHING_HAPPENS",
    "PRIMITIVES",
    "TASK_TYPES",
    "AlfworldDataError",
    "AlfworldEnv",
    "from_command",
    "to_command",
]
