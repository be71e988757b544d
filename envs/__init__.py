"""learnact.envs: environments (tasks, primitives, one validated call at a time) and their registry.

The families live in ``learnact.envs.pddl`` and ``learnact.envs.alfworld``, each registered with its profile
by its ``family`` module (``learnact.envs.family``: what a family registers).
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
    counted_refusals,
    step_worked,
    validate_arguments,
)
from learnact.envs.family import (
    NEUTRAL_PROFILE,
    EnvFactory,
    EnvFamily,
    EnvProfile,
    EnvSpec,
    EnvSpecError,
    UnknownEnvironment,
)
from learnact.envs.registry import (
    TaskSelectionError,
    demonstration_env,
    env_names,
    env_plugins,
    env_profile,
    make_env,
    primitive_specs,
    select_tasks,
)

__all__ = [
    "INVALID_ACTION",
    "ArgumentError",
    "NEUTRAL_PROFILE",
    "EnvFactory",
    "EnvFamily",
    "EnvProfile",
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
    "counted_refusals",
    "env_names",
    "env_plugins",
    "demonstration_env",
    "env_profile",
    "make_env",
    "primitive_specs",
    "select_tasks",
    "step_worked",
    "validate_arguments",
]
