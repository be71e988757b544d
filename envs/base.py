"""The environment protocol: tasks, reset, primitive specs and one primitive call at a time.

``envs`` knows nothing of sandboxes or language models. Arguments that reach :meth:`Environment.call`
may come from untrusted code, so :meth:`Environment.call` validates them against the primitive's
spec (arity, types, sizes) before the environment sees them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from learnact.actions.errors import LearnactError

MAX_ARG_CHARS = 200
INVALID_ACTION = "The action is not valid and therefore takes no effect."


def counted_refusals(valid: Sequence[bool]) -> list[int]:
    """The positions of a step's refused calls that count against it, by the environment's verdicts ``valid`` in
    order: those after its first valid call, or every one when none was valid. A refused call changes nothing, so
    calls refused before the step first acted are an action probing for, or reaching, its own precondition (a
    move to the room the robot is in already, an ``open`` of what is open); one refused after it acted left its
    work undone."""
    first = next((index for index, verdict in enumerate(valid) if verdict), 0)
    return [index for index in range(first, len(valid)) if not valid[index]]


def step_worked(valid: Sequence[bool]) -> bool:
    """Whether a step's primitive calls did what they were written for: at least one was valid and none of
    :func:`counted_refusals`. For a step of one call: that call was valid."""
    return any(valid) and not counted_refusals(valid)


class ParamSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    type: Literal["str", "int"] = "str"


class PrimitiveSpec(BaseModel):
    """A primitive action: its name, typed parameters and a docstring (preconditions, effects)."""

    model_config = ConfigDict(frozen=True)
    name: str
    params: tuple[ParamSpec, ...] = ()
    doc: str

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.name for p in self.params)})"


class TaskInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    type: str


class ResetInfo(BaseModel):
    """What an episode starts from: the first observation, the goal, and the task's objects when the
    environment has a fixed set of them (PDDL; empty: unknown), which bound the lists an agent step may write."""

    observation: str
    goal: str
    objects: tuple[str, ...] = ()


class StepOutcome(BaseModel):
    observation: str
    valid: bool
    done: bool
    success: bool
    progress: float


class ArgumentError(LearnactError):
    """A primitive call from the sandbox that does not fit the primitive's spec (unknown name, arity,
    type, size); the sandboxed program gets the message as a ``ValueError``."""


class UnknownTask(LearnactError):
    """``task`` is not a task of the environment ``env``; ``available`` holds its task ids."""

    SHOWN = 5  # task ids quoted in the message

    def __init__(self, task: str, env: str, available: Sequence[str] = (), remedy: str = "") -> None:
        self.task = task
        self.env = env
        self.available = tuple(available)
        some = ", ".join(self.available[: self.SHOWN]) + (", ..." if len(self.available) > self.SHOWN else "")
        tasks = f"{len(self.available)} tasks: {some}" if self.available else "no tasks"
        super().__init__(f"unknown task '{task}' in {env} ({tasks})", remedy)


def validate_arguments(spec: PrimitiveSpec, args: list[Any]) -> list[Any]:
    """Check arity, types and sizes of ``args`` for ``spec``; return them.

    :raises ArgumentError: when they do not fit the spec.
    """
    if len(args) != len(spec.params):
        raise ArgumentError(f"{spec.signature()} takes {len(spec.params)} argument(s) but {len(args)} were given")
    for param, value in zip(spec.params, args):
        if param.type == "str":
            if not isinstance(value, str):
                raise ArgumentError(
                    f"{spec.name}: argument '{param.name}' must be a string, got {type(value).__name__}"
                )
            if len(value) > MAX_ARG_CHARS:
                raise ArgumentError(f"{spec.name}: argument '{param.name}' is longer than {MAX_ARG_CHARS} characters")
        elif not isinstance(value, int) or isinstance(value, bool):
            raise ArgumentError(f"{spec.name}: argument '{param.name}' must be an integer, got {type(value).__name__}")
    return args


class Environment(ABC):
    """One environment instance: reset to a task, then primitive calls until done.

    Progress rate is AgentBoard's: the largest fraction of goal conditions that held at any step.
    """

    name: str

    @abstractmethod
    def tasks(self) -> list[TaskInfo]:
        """Every task this environment can reset to, in a stable order."""

    @abstractmethod
    def primitives(self) -> list[PrimitiveSpec]:
        """The primitive actions callable by agent code."""

    @abstractmethod
    def reset(self, task_id: str) -> ResetInfo:
        """Start the task.

        :raises UnknownTask: for an id that is not one of :meth:`tasks`.
        """

    @abstractmethod
    def expert_calls(self) -> Iterator[tuple[str, list[Any]]]:
        """The expert's primitive calls (name, args) for the task last reset to.

        Each call is computed after the previous one was performed, so a reactive expert fits too.
        """

    # An optional hook, not an abstract method.
    def interrupt(self) -> None:  # noqa: B027
        """Called from another thread when the run stops: end a long computation (an expert's
        planner) now; the call it interrupts raises. Nothing to do by default."""

    def close(self) -> None:  # noqa: B027
        """Release what the environment holds (a game engine). Nothing to do by default."""

    @abstractmethod
    def _perform(self, name: str, args: list[Any]) -> StepOutcome:
        """Perform a validated primitive call."""

    def call(self, name: str, args: list[Any]) -> StepOutcome:
        """Validate a primitive call coming from (possibly untrusted) code, then perform it.

        :raises ArgumentError: for an unknown primitive or arguments that do not fit its spec.
        """
        spec = {p.name: p for p in self.primitives()}.get(name)
        if spec is None:
            raise ArgumentError(f"unknown primitive '{name}'")
        return self._perform(name, validate_arguments(spec, list(args)))
