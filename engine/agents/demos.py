"""Make the agents' demonstrations: the expert's trajectory on one task per PDDL domain, written as the
agents' history (``Action:`` code lines and the observations the environment gave), stored as
``data/demos/<type>.json``. Run ``python -m learnact.engine.agents.demos`` after changing an environment.

The demonstration task is the first of its domain whose expert plan has at least MIN_STEPS steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from learnact.engine.agents.policy import call_code
from learnact.envs import EnvSpec, make_env

DEMOS = Path(__file__).parent / "data" / "demos"
PDDL_DOMAINS = ("blockworld", "barman", "gripper", "tyreworld")
MIN_STEPS = 3
THOUGHT = "To reach the goal I will do, in order: {plan}."  # the react demonstration's Think step


def trajectory(env_name: str, min_steps: int = MIN_STEPS) -> dict:
    """The expert's trajectory on the first task of ``env_name`` with at least ``min_steps`` steps."""
    env = make_env(EnvSpec(name=env_name))
    for task in env.tasks():
        reset = env.reset(task.id)
        calls = list(env.expert_calls())
        if len(calls) < min_steps:
            continue
        reset = env.reset(task.id)
        steps = []
        outcome = None
        for name, args in calls:
            outcome = env.call(name, args)
            steps.append({"action": call_code(name, args), "observation": outcome.observation})
        if outcome is None or not outcome.success:
            continue
        return {
            "env": env_name,
            "task": task.id,
            "type": task.type,
            "goal": reset.goal,
            "initial": reset.observation,
            "thought": THOUGHT.format(plan=", ".join(s["action"] for s in steps)),
            "steps": steps,
        }
    raise SystemExit(f"{env_name}: no task with an expert plan of {min_steps} or more steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEMOS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for domain in PDDL_DOMAINS:
        demo = trajectory(f"pddl/{domain}")
        path = args.out / f"{demo['type']}.json"
        path.write_text(json.dumps(demo, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{path}: {demo['task']}, {len(demo['steps'])} steps")


if __name__ == "__main__":
    main()
