"""learnact.envs: environments (tasks, primitives, one validated call at a time) and their registry.

The families live in ``learnact.envs.pddl`` and ``learnact.envs.alfworld`` (imported when an
environment of theirs is built: their libraries are slow to import).
"""

from learnact.envs.base import (
    INVALID_ACTION,
    ArgumentError,
    Environment,
    ParamSpec,
    PrimitiveSpec,
    ResetInfo,
    StepOutcome,
    TaskInfo,
    UnknownTask,
    validate_arguments,
)
from learnact.envs.registry import (
    EnvFactory,
    EnvSpec,
    EnvSpecError,
    TaskSelectionError,
    UnknownEnvironment,
    env_names,
    env_plugins,
    expand_problem_paths,
    make_env,
    primitive_specs,
    select_tasks,
)

__all__ = [
    "INVALID_ACTION",
    "ArgumentError",
    "EnvFactory",
    "EnvSpec",
    "EnvSpecError",
    "Environment",
    "ParamSpec",
    "PrimitiveSpec",
    "ResetInfo",
    "StepOutcome",
    "TaskInfo",
    "TaskSelectionError",
    "UnknownEnvironment",
    "UnknownTask",
    "env_names",
    "env_plugins",
    "expand_problem_paths",
    "make_env",
    "primitive_specs",
    "select_tasks",
    "validate_arguments",
]
