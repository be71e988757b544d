"""ALFWorld (json_2.1.1 text games) with LearnAct's primitive actions, success and progress rate."""

from learnact.envs.alfworld.commands import NOTHING_HAPPENS, PRIMITIVES, from_command, to_command
from learnact.envs.alfworld.env import AlfworldEnv
from learnact.envs.alfworld.games import TASK_TYPES, AlfworldDataError

__all__ = [
    "NOTHING_HAPPENS",
    "PRIMITIVES",
    "TASK_TYPES",
    "AlfworldDataError",
    "AlfworldEnv",
    "from_command",
    "to_command",
]
