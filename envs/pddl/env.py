"""PddlEnv: the built-in problem sets or external files behind the Environment protocol."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnact.envs.base import (
    INVALID_ACTION,
    Environment,
    PrimitiveSpec,
    ResetInfo,
    StepOutcome,
    TaskInfo,
    UnknownTask,
)
from learnact.envs.family import UnknownEnvironment

from .loader import load_domain, load_problem
from .model import Domain, PddlError, Problem
from .planner import fast_downward_plan, stop_planners
from .simulator import Simulator
from .text import Describer

DOMAINS = ("tyreworld", "blockworld", "barman", "gripper")
PACKAGE_DIR = Path(__file__).parent
GOAL_SATISFIED = "The goal is satisfied."


@dataclass(frozen=True)
class _Task:
    info: TaskInfo
    problem: Problem


class PddlEnv(Environment):
    """STRIPS tasks of one domain; progress rate is AgentBoard's (see :meth:`_perform`)."""

    def __init__(self, name: str, domain: Domain, problems: Sequence[Problem], task_ids: Sequence[str]) -> None:
        self.name = name
        self.domain = domain
        self._text = Describer(domain)
        self._primitives = self._text.primitives()
        task_type = self._text.profile.domain
        self._tasks = {
            tid: _Task(TaskInfo(id=tid, type=task_type), problem) for tid, problem in zip(task_ids, problems)
        }
        self._sim: Simulator | None = None
        self._task_id = ""
        self._progress = 0.0

    @classmethod
    def builtin(cls, domain: str) -> PddlEnv:
        """The built-in problem set of ``domain`` (one of ``DOMAINS``).

        :raises UnknownEnvironment: for another domain.
        """
        if domain not in DOMAINS:
            raise UnknownEnvironment(f"pddl/{domain}", [f"pddl/{d}" for d in DOMAINS])
        files = sorted((PACKAGE_DIR / "problems" / domain).glob("*.pddl"))
        env = cls.from_files(PACKAGE_DIR / "domains" / f"{domain}.pddl", files)
        env.name = f"pddl/{domain}"
        return env

    @classmethod
    def demonstration(cls, domain: str) -> PddlEnv:
        """The demonstration problem of ``domain`` alone (task ``<domain>-demo``, no task of the built-in set:
        ``generate.py`` draws it apart), named like the built-in environment.

        :raises UnknownEnvironment: for another domain.
        """
        if domain not in DOMAINS:
            raise UnknownEnvironment(f"pddl/{domain}", [f"pddl/{d}" for d in DOMAINS])
        env = cls.from_files(
            PACKAGE_DIR / "domains" / f"{domain}.pddl", [PACKAGE_DIR / "demos" / f"{domain}-demo.pddl"]
        )
        env.name = f"pddl/{domain}"
        return env

    @classmethod
    def from_files(cls, domain_file: Path, problem_files: Sequence[Path]) -> PddlEnv:
        """Load a domain and its problems; task ids are the problem file names without suffix.

        :raises PddlError: for files that cannot be read or used, none given, or two with one name.
        """
        domain = load_domain(Path(domain_file))
        if not problem_files:
            raise PddlError(f"{domain_file}: no problem files given")
        ids: dict[str, Path] = {}
        for path in map(Path, problem_files):
            if path.stem in ids:
                raise PddlError(f"{path}: task id '{path.stem}' is also the name of {ids[path.stem]}")
            ids[path.stem] = path
        problems = [load_problem(path, domain) for path in ids.values()]
        return cls("pddl", domain, problems, list(ids))

    def tasks(self) -> list[TaskInfo]:
        return [task.info for task in self._tasks.values()]

    def primitives(self) -> list[PrimitiveSpec]:
        return list(self._primitives)

    def _task(self, task_id: str) -> _Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise UnknownTask(task_id, self.name, list(self._tasks))
        return task

    def reset(self, task_id: str) -> ResetInfo:
        problem = self._task(task_id).problem
        self._task_id = task_id
        self._sim = Simulator(self.domain, problem)
        self._progress = 0.0
        return ResetInfo(
            observation=self.observation(), goal=self._text.goal(problem.goal), objects=tuple(problem.objects)
        )

    def _running(self) -> Simulator:
        if self._sim is None:
            raise RuntimeError(f"{self.name}: call reset(task_id) before acting")
        return self._sim

    def observation(self) -> str:
        """The true facts of the current state, one sentence each, sorted."""
        return self._text.facts(self._running().state)

    def _perform(self, name: str, args: list[Any]) -> StepOutcome:
        """AgentBoard semantics: an inapplicable call changes nothing and answers INVALID_ACTION (followed here by
        what does not hold: AgentBoard says only "not valid", which leaves a weak agent to guess its mistake); a
        valid one answers the new facts. Progress is the running maximum, over the states that valid calls
        reach, of the fraction of goal atoms that hold (0 until the first valid call)."""
        sim = self._running()
        action = self._text.by_primitive[name]
        objects = [str(a).lower() for a in args]
        unmet = sim.apply(action, objects)
        valid = not unmet
        success = sim.goal_reached()
        if valid:
            self._progress = max(self._progress, sim.goal_fraction())
            observation = self.observation() + (" " + GOAL_SATISFIED if success else "")
        else:
            observation = f"{INVALID_ACTION} {self._text.unmet(unmet, sim.state)}"
        return StepOutcome(observation=observation, valid=valid, done=success, success=success, progress=self._progress)

    def expert_calls(self) -> Iterator[tuple[str, list[Any]]]:
        """The planner's plan for the task last reset to, one primitive call at a time.

        :raises PlannerError: when the planner finds no plan.
        """
        self._running()
        yield from self.expert_plan(self._task_id)

    def interrupt(self) -> None:
        stop_planners()

    def expert_plan(self, task_id: str) -> list[tuple[str, list]]:
        """A plan from Fast Downward, as primitive calls (name, args) of this environment.

        :raises UnknownTask: for an id that is not one of :meth:`tasks`.
        :raises PlannerError: when the planner finds no plan.
        """
        problem = self._task(task_id).problem
        steps = fast_downward_plan(self.domain, problem)
        return [(self._text.profile.actions[action].primitive, list(args)) for action, args in steps]
