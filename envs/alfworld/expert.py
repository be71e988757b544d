"""ALFWorld's handcoded expert (``HandCodedTWAgent``), made to play the json_2.1.1 games.

Two gaps between alfworld 0.4.x and these games are bridged here, nothing else is changed:

- Vocabulary: since 0.4 the expert says ``move {obj} to {recep}`` and looks for such commands among
  the admissible ones, while the 2.1.1 grammar says ``put {obj} in/on {recep}`` (alfworld 0.3.x
  said the same, but it requires ai2thor and torch). The expert sees ``move`` where the game says
  ``put`` and its answers are turned back into ``put``.
- Task parameters: the expert reads them from ``traj_data.json`` beside the game. Folders made by
  ``alfworld-download`` have it; where it is missing they are read from the task folder's name,
  ``<task type>-<object>-<movable receptacle>-<receptacle or lamp>-<scene>``, which ALFRED derives
  from the same parameters.

The expert is reactive: after every step (whoever chose it) it updates its beliefs from the new
observation and computes its next command, as ALFWorld's ``AlfredExpert`` wrapper does. Its random
choices (which of several apples to take) draw from a generator seeded per episode, so an episode
is reproducible and the process-wide ``random`` state is left as it was.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from learnact.envs.alfworld._upstream import (
    HandCodedAgentFailed,
    HandCodedAgentTimeout,
    HandCodedTWAgent,
    constants,
)
from learnact.envs.alfworld.commands import from_command
from learnact.envs.alfworld.games import AlfworldDataError

_PUT = re.compile(r"^put (.+) in/on (.+)$")
_MOVE = re.compile(r"^move (.+) to (.+)$")
MAX_EXPERT_STEPS = 200  # AlfredExpert's budget


def task_params(game_file: Path) -> dict[str, Any]:
    """The expert's task parameters, from traj_data.json or else from the task folder's name.

    :raises AlfworldDataError: when the folder's name does not hold them.
    """
    traj_file = game_file.parent / "traj_data.json"
    if traj_file.is_file():
        traj = json.loads(traj_file.read_text(encoding="utf-8"))
        params = {**traj["pddl_params"], "task_type": traj["task_type"]}
    else:
        parts = game_file.parent.parent.name.split("-")
        if len(parts) != 5:
            raise AlfworldDataError(
                f"cannot read the task parameters from the folder name of {game_file}", path=game_file
            )
        task_type, obj, mrecep, recep, _scene = parts
        lamp = task_type == "look_at_obj_in_light"
        params = {
            "task_type": task_type,
            "object_target": obj,
            "object_sliced": False,
            "mrecep_target": "" if mrecep == "None" else mrecep,
            "parent_target": "" if lamp else recep,
            "toggle_target": recep if lamp else "",
        }
    # As HandCodedAgent.reset: object class names in lower case.
    return {k: v.lower() if v in constants.OBJECTS else v for k, v in params.items()}


def _to_expert(command: str) -> str:
    return _PUT.sub(r"move \1 to \2", command)


def _to_game(command: str) -> str:
    return _MOVE.sub(r"put \1 in/on \2", command)


class HandcodedExpert:
    """ALFWorld's handcoded expert for one episode; ``next_command`` is its choice for the current state."""

    def __init__(self, game_file: Path, intro: str, seed: int) -> None:
        self._agent = HandCodedTWAgent(max_steps=MAX_EXPERT_STEPS)
        params = task_params(game_file)
        self._agent.task_params = params
        self._agent.policy = self._agent.get_task_policy(params)(params, max_steps=MAX_EXPERT_STEPS)
        self._agent.observe(intro)
        self._random_state = random.Random(seed).getstate()
        self.next_command: str | None = None

    def update(self, state: dict[str, Any], last_command: str) -> None:
        """Observe the state reached by ``last_command`` and choose the next command (None: gave up)."""
        view = dict(state)
        view["admissible_commands"] = [_to_expert(c) for c in state["admissible_commands"]]
        saved = random.getstate()
        random.setstate(self._random_state)
        try:
            self.next_command = self._choose(view, last_command, state["admissible_commands"])
        except (HandCodedAgentTimeout, HandCodedAgentFailed):
            self.next_command = None
        finally:
            self._random_state = random.getstate()
            random.setstate(saved)

    def _choose(self, view: dict[str, Any], last_command: str, admissible: list[str]) -> str:
        # HandCodedAgent.act, with the game's vocabulary: the policy tracks what it holds by seeing
        # "put" in the last command, so it is given the game's own command.
        command = _to_game(self._agent.policy.act(view, last_command))
        if command == last_command or (last_command == "look" and command not in admissible):
            # The expert is stuck: like ALFWorld, a random admissible move, here one that is a primitive.
            command = random.choice([c for c in admissible if from_command(c) is not None])
        return command
