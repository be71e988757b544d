"""The ALFWorld environment: json_2.1.1 text games played through textworld, offline.

Each instance keeps one textworld game engine (starting one copies fast-downward's library, about
0.3 s) and reloads it only when the task changes; resetting the loaded game again skips the load.
The parsed goal of each game is cached. A reset of a new game takes about 0.5 s, of the same game
about 0.25 s (both are fast-downward translating the PDDL problem).
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import textworld

from learnact.envs.alfworld._upstream import AlfredDemangler, AlfredInfos
from learnact.envs.alfworld.commands import NOTHING_HAPPENS, PRIMITIVES, from_command, to_command
from learnact.envs.alfworld.expert import HandcodedExpert
from learnact.envs.alfworld.games import (
    AlfworldDataError,
    Game,
    check_task_types,
    discover_games,
    read_game_file,
)
from learnact.envs.alfworld.goal import Goal, GoalError, parse_goal
from learnact.envs.base import Environment, PrimitiveSpec, ResetInfo, StepOutcome, TaskInfo, UnknownTask

_ENGINE_LOCK = threading.Lock()
_ARRIVAL = re.compile(r"^You arrive at loc \d+\. ")  # location numbers mean nothing to the agent


class AlfworldEnv(Environment):
    """ALFWorld games of one split, filtered by task type (see ``TASK_TYPES``).

    Task ids are ``<split>/<task folder>/<trial folder>``. ``reset`` gives the room description as
    observation and ``Your task is to: ...`` as goal. A call is invalid when the game answers
    "Nothing happens.". Success is the game's ``won``; progress is defined in ``goal``.
    ``expert_step`` gives the handcoded expert's next primitive call for the current state;
    ``expert_calls`` iterates over them (the form the episode runner uses).
    """

    def __init__(self, data_dir: Path, split: str = "valid_unseen", task_types: Sequence[str] | None = None):
        """:raises AlfworldDataError: for unknown task types, a missing folder or split, or no games."""
        types = check_task_types(task_types)
        self.name = f"alfworld/{types[0]}" if len(types) == 1 else "alfworld"
        self._games: dict[str, Game] = {g.id: g for g in discover_games(Path(data_dir), split, types)}
        self._goals: dict[str, Goal] = {}
        self._engine: Any = None  # textworld environment, started on first reset
        self._loaded: Path | None = None
        self._game: Game | None = None
        self._expert: HandcodedExpert | None = None
        self._won = False
        self._progress = 0.0

    # -- protocol -------------------------------------------------------------------------------
    def tasks(self) -> list[TaskInfo]:
        return [TaskInfo(id=g.id, type=g.type) for g in self._games.values()]

    def primitives(self) -> list[PrimitiveSpec]:
        return list(PRIMITIVES)

    def reset(self, task_id: str) -> ResetInfo:
        """Load the game ``task_id`` (if another is loaded) and start it.

        :raises UnknownTask: for an id that is not one of :meth:`tasks`.
        :raises AlfworldDataError: for a game file that cannot be read, loaded or understood.
        """
        game = self._games.get(task_id)
        if game is None:
            raise UnknownTask(task_id, self.name, list(self._games))
        goal = self._goal(game)
        with _engine_turn():
            engine = self._load(game.path)
            state = engine.reset()
        self._game, self._won = game, bool(state["won"])
        self._progress = goal.progress(_facts(state))
        self._expert = HandcodedExpert(game.path, state["feedback"], seed=_stable_seed(game.id))
        self._expert.update(state, "look")  # AlfredExpert's first move is a "look" at this very text
        room, task = _split_intro(state["feedback"], game.path)
        return ResetInfo(observation=room, goal=task)

    def _perform(self, name: str, args: list[Any]) -> StepOutcome:
        if self._game is None:
            raise RuntimeError("call reset(task_id) before calling primitives")
        command = to_command(name, args)
        with _engine_turn():
            state, _, _ = self._engine.step(command)
        feedback = state["feedback"].strip()
        self._won = self._won or bool(state["won"])
        self._progress = max(self._progress, self._goals[self._game.id].progress(_facts(state)))
        if self._expert is not None:
            self._expert.update(state, command)
        return StepOutcome(
            observation=_ARRIVAL.sub("", feedback),
            valid=feedback != NOTHING_HAPPENS,
            done=self._won,
            success=self._won,
            progress=1.0 if self._won else self._progress,
        )

    # -- expert ---------------------------------------------------------------------------------
    def expert_step(self) -> tuple[str, list[str]] | None:
        """The handcoded expert's next primitive call in the current state; None once it gives up
        (after 200 steps or when it runs out of ideas) or before any reset."""
        if self._expert is None or self._expert.next_command is None:
            return None
        call = from_command(self._expert.next_command)
        return (call[0], call[1]) if call else None

    def expert_calls(self) -> Iterator[tuple[str, list[str]]]:
        """The expert's calls for the task last reset to, each chosen when asked for, i.e. after the
        previous call was performed (the expert reacts to what it observes)."""
        while (call := self.expert_step()) is not None:
            yield call

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine, self._loaded, self._game, self._expert = None, None, None, None

    # -- internals ------------------------------------------------------------------------------
    def _goal(self, game: Game) -> Goal:
        if game.id not in self._goals:
            data = read_game_file(game.path)
            try:
                self._goals[game.id] = parse_goal(str(data["pddl_problem"]), str(data["pddl_domain"]))
            except GoalError as exc:
                raise AlfworldDataError(f"malformed ALFWorld game file {game.path}: {exc}") from exc
        return self._goals[game.id]

    def _load(self, path: Path) -> Any:
        infos = textworld.EnvInfos(won=True, admissible_commands=True, facts=True)
        try:
            if self._engine is None:
                self._engine = textworld.start(str(path), infos, wrappers=[AlfredDemangler(), AlfredInfos])
            elif self._loaded != path:
                self._engine.load(str(path))
        except Exception as exc:  # textworld/fast-downward raise many types on a bad game
            self._loaded = None
            raise AlfworldDataError(f"cannot load ALFWorld game {path}: {type(exc).__name__}: {exc}") from exc
        self._loaded = path
        return self._engine


@contextmanager
def _engine_turn() -> Iterator[None]:
    """Guard every use of textworld's engine (load, reset, step).

    fast-downward's translator keeps its options in module globals and textworld overwrites
    ``sys.argv`` before each translation; textworld's grammar parser, used on every step, is one
    module-global parser object with a rule stack. Environments in threads of one process take
    turns, and the process's own ``sys.argv`` is given back.
    """
    with _ENGINE_LOCK:
        argv = sys.argv
        try:
            yield
        finally:
            sys.argv = argv


def _stable_seed(text: str) -> int:
    """A seed stable across processes (``hash`` of a str is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(text))


def _facts(state: Any) -> list[tuple[str, tuple[str, ...]]]:
    return [(p.name, tuple(a.name for a in p.arguments)) for p in state["_facts"]]


def _split_intro(intro: str, path: Path) -> tuple[str, str]:
    """The room description and the ``Your task is to: ...`` line of the game's first text."""
    paragraphs = [p.strip() for p in intro.split("\n\n") if p.strip() and not p.strip().startswith("-=")]
    task = next((p for p in paragraphs if p.startswith("Your task is to")), None)
    if task is None:
        raise AlfworldDataError(f"the game {path} states no task ('Your task is to: ...') in its intro")
    return "\n".join(p for p in paragraphs if p is not task), task
