"""Make the agents' demonstrations: the expert's trajectory on one task per PDDL domain and per ALFWorld task
type, written as the agents' history (``Action:`` code lines and the observations the environment gave),
stored with the family's profile (``envs/<family>/profile/demos/<type>.json``). Run ``python -m
learnact.engine.agents.demos [--alfworld-data DIR]`` after changing an environment; the output is
deterministic (the planner's plans, and ALFWorld's expert seeded per game), so an unchanged environment
rewrites the same files.

- PDDL: the domain's demonstration problem (``envs/pddl/demos/``, no task of the domain), whose expert plan
  has at least MIN_STEPS steps.
- ALFWorld: a game of ALFWorld's training games (the split ALFWORLD_SPLIT; evaluation reads valid_unseen by
  default, so no test task is shown as an example): the first game of the type, by id, on which the handcoded
  expert succeeds in MIN_STEPS to ALFWORLD_MAX_STEPS steps, all valid: a trajectory short enough to be read
  in every prompt. Its react thought states the type's plan (PLANS) for the game's object and receptacle.

It only writes files under ``--out``; it never runs the code it writes (the steps are the expert's calls
performed on the environment directly).
"""

from __future__ import annotations

import argparse
import json
import os
from importlib import resources
from pathlib import Path

from learnact.actions.errors import LearnactError
from learnact.actions.files import write_atomic
from learnact.actions.transcript import call_code
from learnact.envs import Environment, env_profile
from learnact.envs.alfworld import TASK_TYPES, AlfworldEnv
from learnact.envs.alfworld.expert import task_params
from learnact.envs.alfworld.games import discover_games
from learnact.envs.family import PROFILE_FOLDER
from learnact.envs.pddl import PddlEnv

PDDL_DOMAINS = ("blockworld", "barman", "gripper", "tyreworld")
MIN_STEPS = 3
THOUGHT = "To reach the goal I will do, in order: {plan}."  # the PDDL react demonstration's Think step
ALFWORLD_SPLIT = "valid_train"  # ALFWorld's training games
ALFWORLD_MAX_STEPS = 15
# The ALFWorld react demonstration's Think step, by task type; {obj}, {recep}, {lamp} from the game's task
# ("some apple": as ALFWorld's goals say it).
PLANS = {
    "put": "I need to find some {obj}, take it, then put it in/on the {recep}. "
    "I will look in the likely places one by one, opening the closed ones.",
    "clean": "I need to find some {obj}, take it, clean it with a sinkbasin, then put it in/on the {recep}. "
    "I will look in the likely places one by one, opening the closed ones.",
    "heat": "I need to find some {obj}, take it, heat it with a microwave, then put it in/on the {recep}. "
    "I will look in the likely places one by one, opening the closed ones.",
    "cool": "I need to find some {obj}, take it, cool it with a fridge, then put it in/on the {recep}. "
    "I will look in the likely places one by one, opening the closed ones.",
    "examine": "I need to find some {obj} and take it, then find a {lamp} and use it, to look at the {obj} "
    "in its light. I will look in the likely places one by one, opening the closed ones.",
    "puttwo": "I need to find one {obj}, take it and put it in/on the {recep}, then find another {obj}, "
    "take it and put it in/on the {recep} too. I will look in the likely places one by one, opening the closed "
    "ones.",
}


def stored_folder(env_name: str) -> Path:
    """Where the demonstrations of ``env_name``'s family are stored: its profile's ``demos/`` (in the source
    tree of an editable install).

    :raises NoDemonstration: for a family whose profile has no texts.
    """
    texts = env_profile(env_name).texts
    if texts is None:
        raise NoDemonstration(f"{env_name}: its family's profile has no texts", "give --out")
    return Path(str(resources.files(texts).joinpath(PROFILE_FOLDER, "demos")))


class NoDemonstration(LearnactError):
    """No task of an environment gives a demonstration by the rules above (a changed environment)."""


def expert_steps(env: Environment, max_steps: int) -> list[dict[str, str]] | None:
    """The expert's calls and their observations from the state ``env`` was just reset to, until the task
    is done; None when the expert gives up, makes an invalid call (a demonstration shows no wasted step) or
    needs more than ``max_steps`` steps.

    :raises LearnactError: when the environment or its expert fails (the planner finds no plan).
    """
    steps = []
    for name, args in env.expert_calls():
        if len(steps) == max_steps:
            return None
        outcome = env.call(name, args)
        if not outcome.valid:
            return None
        steps.append({"action": call_code(name, args), "observation": outcome.observation})
        if outcome.done:
            return steps if outcome.success else None
    return None


def pddl_demo(domain: str, min_steps: int = MIN_STEPS) -> dict:
    """The demonstration of a built-in PDDL domain: the expert's trajectory on the domain's demonstration
    problem (``envs/pddl/demos/<domain>-demo.pddl``, which is no task of the domain), when it has at least
    ``min_steps`` steps.

    :raises NoDemonstration: when its plan is shorter, or the expert's calls do not solve it.
    :raises LearnactError: when the environment or the planner fails.
    """
    env = PddlEnv.demonstration(domain)
    (task,) = env.tasks()
    reset = env.reset(task.id)
    calls = list(env.expert_calls())
    env.reset(task.id)
    steps = expert_steps(env, len(calls)) if len(calls) >= min_steps else None
    if steps is not None:
        return {
            "env": env.name,
            "task": task.id,
            "type": task.type,
            "goal": reset.goal,
            "initial": reset.observation,
            "thought": THOUGHT.format(plan=", ".join(s["action"] for s in steps)),
            "steps": steps,
        }
    raise NoDemonstration(
        f"pddl/{domain}: the demonstration problem's expert plan is shorter than {min_steps} steps or fails",
        "draw another demonstration problem (envs/pddl/generate.py) or lower {min_steps}",
    )


def alfworld_demo(data_dir: Path, task_type: str, only_task: str | None = None) -> dict:
    """The demonstration of an ALFWorld task type: the expert's trajectory on the first training game of the
    type (or on ``only_task``) that it solves in MIN_STEPS to ALFWORLD_MAX_STEPS steps.

    :raises NoDemonstration: when no such game is found.
    :raises AlfworldDataError: for missing or malformed game files.
    """
    games = [g for g in discover_games(data_dir, ALFWORLD_SPLIT, [task_type]) if only_task in (None, g.id)]
    env = AlfworldEnv(data_dir, split=ALFWORLD_SPLIT, task_types=[task_type])
    try:
        for game in games:
            reset = env.reset(game.id)
            steps = expert_steps(env, ALFWORLD_MAX_STEPS)
            if steps is None or len(steps) < MIN_STEPS:
                continue
            params = task_params(game.path)
            thought = PLANS[task_type].format(
                obj=params["object_target"], recep=params["parent_target"], lamp=params["toggle_target"]
            )
            return {
                "env": env.name,
                "task": game.id,
                "type": game.type,
                "goal": reset.goal,
                "initial": reset.observation,
                "thought": thought,
                "steps": steps,
            }
    finally:
        env.close()
    chosen = f"the game {only_task}" if only_task else f"no {ALFWORLD_SPLIT} game"
    raise NoDemonstration(
        f"alfworld/{task_type}: {chosen} solved by the expert in {MIN_STEPS} to {ALFWORLD_MAX_STEPS} steps",
        "raise ALFWORLD_MAX_STEPS or choose another game",
    )


def demo_text(demo: dict) -> str:
    """A demonstration as stored: indented JSON, non-ASCII kept, ending with a newline."""
    return json.dumps(demo, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="folder of the demonstrations (default: each family's profile)"
    )
    parser.add_argument(
        "--alfworld-data",
        type=Path,
        default=os.environ.get("ALFWORLD_DATA"),
        help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=[*PDDL_DOMAINS, *TASK_TYPES], help="these domains or types"
    )
    args = parser.parse_args()
    wanted = args.only or [*PDDL_DOMAINS, *TASK_TYPES]
    if args.alfworld_data is None and any(name in TASK_TYPES for name in wanted):
        parser.error("the ALFWorld demonstrations need --alfworld-data or $ALFWORLD_DATA (or --only PDDL domains)")
    for name in wanted:
        try:
            demo = pddl_demo(name) if name in PDDL_DOMAINS else alfworld_demo(args.alfworld_data, name)
        except LearnactError as exc:
            raise SystemExit(f"{exc}") from exc
        path = (args.out or stored_folder(demo["env"])) / f"{demo['type']}.json"
        write_atomic(path, demo_text(demo))
        print(f"{path}: {demo['task']}, {len(demo['steps'])} steps")


if __name__ == "__main__":
    main()
