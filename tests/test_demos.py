"""The agents' demonstrations (envs/<family>/profile/demos/): one per PDDL domain and per ALFWorld task type, each
the expert's real trajectory on a training task, replayable step by step in the real environment, found by the
prompts of an episode of that type, and regenerated identically by ``python -m learnact.engine.agents.demos``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from learnact.engine.agents import PolicyContext, make_policy
from learnact.engine.agents.demos import (
    ALFWORLD_MAX_STEPS,
    ALFWORLD_SPLIT,
    MIN_STEPS,
    PDDL_DOMAINS,
    alfworld_demo,
    demo_text,
    pddl_demo,
    stored_folder,
)
from learnact.engine.agents.prompts import demonstration
from learnact.engine.llm import OpenAIBackbone
from learnact.engine.records import Method, ModelSettings
from learnact.envs import EnvSpec, env_profile, make_env
from learnact.envs.alfworld import TASK_TYPES
from learnact.envs.pddl import PddlEnv
from learnact.envs.pddl.generate import DEMO_SHOWS, DEMOS_DIR, demo_problem

EVERY_TYPE = (*PDDL_DOMAINS, *TASK_TYPES)


def env_of(task_type: str) -> str:
    return f"pddl/{task_type}" if task_type in PDDL_DOMAINS else f"alfworld/{task_type}"


def stored_file(task_type: str) -> Path:
    return stored_folder(env_of(task_type)) / f"{task_type}.json"


def stored(task_type: str) -> dict[str, Any]:
    return json.loads(stored_file(task_type).read_text(encoding="utf-8"))


def parsed_call(code: str) -> tuple[str, list[Any]]:
    """The primitive call a demonstration step writes (its own trusted data: literal arguments only)."""
    call = ast.parse(code, mode="eval").body
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not call.keywords, code
    return call.func.id, [ast.literal_eval(arg) for arg in call.args]


def demo_env(demo: dict[str, Any], request: pytest.FixtureRequest):
    """The environment of a demonstration (ALFWorld's: the split its task id names, from the test data)."""
    if demo["env"].startswith("alfworld"):
        data = request.getfixturevalue("alfworld_data")
        split = demo["task"].split("/", 1)[0]
        return make_env(EnvSpec(name=demo["env"], alfworld_data=str(data), split=split))
    return PddlEnv.demonstration(demo["env"].removeprefix("pddl/"))


@pytest.mark.parametrize("task_type", EVERY_TYPE)
def test_every_domain_and_task_type_has_a_demonstration_with_a_plan_for_react(task_type: str) -> None:
    act, react = demonstration(env_of(task_type), task_type, False), demonstration(env_of(task_type), task_type, True)
    assert act is not None and react is not None and act.type == task_type
    assert all(t.written.startswith("Action: ") for t in act.turns) and len(act.turns) >= MIN_STEPS
    assert react.turns[0].written.startswith("Think: ") and react.turns[0].observation == "OK."
    assert react.turns[1:] == act.turns
    if task_type in TASK_TYPES:
        assert act.env == f"alfworld/{task_type}" and len(act.turns) <= ALFWORLD_MAX_STEPS
        assert act.task.startswith(f"{ALFWORLD_SPLIT}/")  # a training game; evaluation reads valid_unseen
        assert act.goal.startswith("Your task is to: ") and "You are in the middle of a room" in act.initial


def test_an_alfworld_episode_of_each_type_is_shown_its_types_demonstration(alfworld_data: Path) -> None:
    """The task type a policy receives for an ALFWorld game is the game's TaskInfo.type, whose demonstration
    and the household's domain text reach the model's request."""
    env = make_env(EnvSpec(name="alfworld", alfworld_data=str(alfworld_data), split="valid_seen"))
    first_of_type = {t.type: t for t in reversed(env.tasks())}
    assert set(first_of_type) == set(TASK_TYPES)
    backbone = OpenAIBackbone("m", base_url="http://127.0.0.1:9/v1", api_key="unused")  # never asked here
    for task_type, task in first_of_type.items():
        reset = env.reset(task.id)
        policy = make_policy(Method.react, PolicyContext(env, task.type, reset, backbone, ModelSettings(model="m")))
        system, prompt = (m.content for m in policy.request().messages)
        demo = stored(task_type)
        assert env_profile(env.name).domain_text(task_type) in system and "household (ALFWorld)" in system
        assert f"{demo['goal']}\nObservation: {demo['initial']}\nThink: {demo['thought']}" in prompt
        assert f"Action: {demo['steps'][-1]['action']}\nObservation: {demo['steps'][-1]['observation']}" in prompt
        assert reset.goal in prompt.split("Now it is your turn.")[1]
    env.close()


@pytest.mark.parametrize("task_type", EVERY_TYPE)
def test_a_demonstration_replays_in_the_real_environment_as_the_experts_trajectory(
    task_type: str, request: pytest.FixtureRequest
) -> None:
    demo = stored(task_type)
    env = demo_env(demo, request)
    reset = env.reset(demo["task"])
    assert (reset.goal, reset.observation) == (demo["goal"], demo["initial"])
    outcome, expert = None, env.expert_calls()  # ALFWorld's expert chooses each call when asked, after the last
    for step in demo["steps"]:
        name, args = parsed_call(step["action"])
        assert next(expert) == (name, args)
        outcome = env.call(name, args)
        assert outcome.valid and outcome.observation == step["observation"]
    assert outcome is not None and outcome.done and outcome.success


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_an_alfworld_demonstration_is_regenerated_identically_from_its_game(
    task_type: str, alfworld_data: Path
) -> None:
    demo = stored(task_type)
    regenerated = alfworld_demo(alfworld_data, task_type, only_task=demo["task"])
    assert demo_text(regenerated) == stored_file(task_type).read_text(encoding="utf-8")


def test_the_demonstration_game_is_the_first_of_its_type_the_expert_solves_briefly(alfworld_data: Path) -> None:
    # examine's first training game qualifies: the whole choice runs in a few seconds
    assert demo_text(alfworld_demo(alfworld_data, "examine")) == stored_file("examine").read_text(encoding="utf-8")


@pytest.mark.parametrize("task_type", EVERY_TYPE)
def test_no_evaluated_task_is_shown_solved_in_a_demonstration(task_type: str, request: pytest.FixtureRequest) -> None:
    demo = stored(task_type)
    if task_type in TASK_TYPES:  # ALFWorld evaluates the other splits; the demonstrations are training games
        data = request.getfixturevalue("alfworld_data")
        splits = [p.name for p in (data / "json_2.1.1").iterdir() if p.is_dir() and p.name != ALFWORLD_SPLIT]
        evaluated = {
            task.id
            for split in splits
            for task in make_env(EnvSpec(name=f"alfworld/{task_type}", alfworld_data=str(data), split=split)).tasks()
        }
        assert evaluated and demo["task"] not in evaluated
    else:
        env = make_env(EnvSpec(name=demo["env"]))
        assert demo["task"] == f"{task_type}-demo" and demo["task"] not in {t.id for t in env.tasks()}
        shown = PddlEnv.demonstration(task_type).reset(demo["task"])
        for task in env.tasks():  # no task is the demonstration's problem under another name
            reset = env.reset(task.id)
            assert (reset.goal, reset.observation) != (shown.goal, shown.observation)


def test_the_demonstration_problems_are_exactly_what_the_seeded_generator_writes() -> None:
    for domain in PDDL_DOMAINS:
        assert (DEMOS_DIR / f"{domain}-demo.pddl").read_text() == demo_problem(domain)


def test_a_demonstration_shows_the_domains_typical_step() -> None:
    # gripper: one ball carried each way (the tasks send balls both ways); the expert carries them one by one
    gripper = json.loads(stored_file("gripper").read_text(encoding="utf-8"))
    assert [step["action"] for step in gripper["steps"]] == [
        "pick('ball1', 'roomb', 'left')",
        "move('roomb', 'rooma')",
        "drop('ball1', 'rooma', 'left')",
        "pick('ball2', 'rooma', 'left')",
        "move('rooma', 'roomb')",
        "drop('ball2', 'roomb', 'left')",
    ]
    # blockworld: a tower is cleared first
    assert json.loads(stored_file("blockworld").read_text(encoding="utf-8"))["steps"][0]["action"].startswith("Unstack")
    # what the rules refuse: every ball carried one way; a goal over blocks free from the start
    one_way = "(:init (at ball1 rooma) (at ball2 rooma))\n(:goal (and (at ball1 roomb) (at ball2 roomb)))"
    both_ways = "(:init (at ball1 rooma) (at ball2 roomb))\n(:goal (and (at ball1 roomb) (at ball2 rooma)))"
    assert not DEMO_SHOWS["gripper"](one_way) and DEMO_SHOWS["gripper"](both_ways)
    free = "(:init (on-table b1) (on-table b2) (on b3 b2))\n(:goal (and (on b1 b3)))"
    covered = "(:init (on-table b1) (on b2 b1))\n(:goal (and (on b1 b3)))"
    assert not DEMO_SHOWS["blockworld"](free) and DEMO_SHOWS["blockworld"](covered)


@pytest.mark.parametrize("domain", PDDL_DOMAINS)
def test_a_pddl_demonstration_is_regenerated_identically(domain: str) -> None:
    assert demo_text(pddl_demo(domain)) == stored_file(domain).read_text(encoding="utf-8")


def test_the_script_writes_the_same_files_and_needs_the_alfworld_data_for_alfworld(
    tmp_path: Path, alfworld_data: Path
) -> None:
    script = [sys.executable, "-m", "learnact.engine.agents.demos", "--out", str(tmp_path)]
    environ = {k: v for k, v in os.environ.items() if k != "ALFWORLD_DATA"}
    made = subprocess.run(
        [*script, "--only", "gripper", "put", "--alfworld-data", str(alfworld_data)],
        capture_output=True, text=True, env=environ, timeout=300,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gripper.json", "put.json"]
    for name in ("gripper.json", "put.json"):
        assert (tmp_path / name).read_bytes() == stored_file(name.removesuffix(".json")).read_bytes()
    refused = subprocess.run([*script, "--only", "heat"], capture_output=True, text=True, env=environ, timeout=120)
    assert refused.returncode == 2 and "--alfworld-data or $ALFWORLD_DATA" in refused.stderr
