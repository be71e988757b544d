"""ALFWorld environment on the real json_2.1.1 games of ../shared/data/alfworld (or $ALFWORLD_DATA)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from learnact.envs import ArgumentError, UnknownTask
from learnact.envs.alfworld import (
    NOTHING_HAPPENS,
    PRIMITIVES,
    TASK_TYPES,
    AlfworldDataError,
    AlfworldEnv,
    from_command,
    to_command,
)
from learnact.envs.alfworld.goal import parse_goal


@pytest.fixture(scope="module")
def data(alfworld_data: Path) -> Path:
    return alfworld_data


@pytest.fixture(scope="module")
def seen(data: Path):
    env = AlfworldEnv(data, split="valid_seen")
    yield env
    env.close()


def _first_of(env: AlfworldEnv, task_type: str) -> str:
    return next(t.id for t in env.tasks() if t.type == task_type)


def _play_expert(env: AlfworldEnv, task_id: str, max_steps: int = 100):
    env.reset(task_id)
    outcomes = []
    while len(outcomes) < max_steps:
        call = env.expert_step()
        if call is None:
            break
        outcomes.append(env.call(*call))
        if outcomes[-1].done:
            break
    return outcomes


# -- listing and filtering ---------------------------------------------------------------------
def test_lists_the_solvable_games_of_the_six_types(seen: AlfworldEnv) -> None:
    tasks = seen.tasks()
    counts = {t: sum(1 for task in tasks if task.type == t) for t in TASK_TYPES}
    # 187 files in valid_seen, 47 of them unsolvable: ALFWorld's 140 valid_seen games.
    assert counts == {"put": 35, "clean": 27, "heat": 16, "cool": 25, "examine": 13, "puttwo": 24}
    assert seen.name == "alfworld"
    first = tasks[0].id
    split, task_folder, trial = first.split("/")
    assert split == "valid_seen" and task_folder.startswith("look_at_obj_in_light-") and trial.startswith("trial_")
    assert [t.id for t in tasks] == sorted(t.id for t in tasks)


def test_filters_by_task_type(data: Path) -> None:
    heat = AlfworldEnv(data, split="valid_train", task_types=["heat"])
    assert heat.name == "alfworld/heat"
    assert {t.type for t in heat.tasks()} == {"heat"} and len(heat.tasks()) == 25
    two = AlfworldEnv(data, split="valid_train", task_types=["cool", "puttwo"])
    assert two.name == "alfworld"
    assert {t.type for t in two.tasks()} == {"cool", "puttwo"} and len(two.tasks()) == 28 + 45


def _copy_game(src: Path, root: Path, task_folder: str, solvable: bool | None = None) -> Path:
    target = root / "json_2.1.1" / "valid_unseen" / task_folder / src.parent.name / "game.tw-pddl"
    target.parent.mkdir(parents=True)
    if solvable is None:
        shutil.copy(src, target)
    else:
        content = json.loads(src.read_text())
        content["solvable"] = solvable
        target.write_text(json.dumps(content))
    return target


def test_skips_unsolvable_movable_and_sliced_games(data: Path, tmp_path: Path) -> None:
    src = next((data / "json_2.1.1/valid_train").glob("pick_and_place_simple-*/*/game.tw-pddl"))
    _copy_game(src, tmp_path, "pick_and_place_simple-Pen-None-Desk-1")
    _copy_game(src, tmp_path, "pick_and_place_simple-Pen-None-Desk-2", solvable=False)
    _copy_game(src, tmp_path, "pick_and_place_with_movable_recep-Pen-Bowl-Desk-3")
    _copy_game(src, tmp_path, "pick_and_place_simple-AppleSliced-None-Desk-4")
    env = AlfworldEnv(tmp_path)  # default split: valid_unseen
    assert [t.id for t in env.tasks()] == [f"valid_unseen/pick_and_place_simple-Pen-None-Desk-1/{src.parent.name}"]
    assert [t.type for t in env.tasks()] == ["put"]


# -- reset, calls, progress ---------------------------------------------------------------------
def test_reset_gives_the_room_and_the_task(seen: AlfworldEnv) -> None:
    info = seen.reset(_first_of(seen, "clean"))
    assert info.observation.startswith("You are in the middle of a room. Looking quickly around you, you see ")
    assert info.goal.startswith("Your task is to: ") and "clean" in info.goal
    assert "Welcome" not in info.observation and "Your task" not in info.observation


def test_reset_gives_back_sys_argv(seen: AlfworldEnv) -> None:
    before = list(sys.argv)
    seen.reset(_first_of(seen, "cool"))  # textworld sets sys.argv for fast-downward's translator
    assert sys.argv == before


def test_an_unknown_task_id_is_an_unknown_task_with_its_fields(seen: AlfworldEnv) -> None:
    with pytest.raises(
        UnknownTask, match=r"unknown task 'valid_seen/nope' in alfworld \(\d+ tasks: valid_seen/"
    ) as caught:
        seen.reset("valid_seen/nope")
    assert (caught.value.task, caught.value.env) == ("valid_seen/nope", "alfworld")
    assert caught.value.available == tuple(t.id for t in seen.tasks())


def test_invalid_call_says_nothing_happens(seen: AlfworldEnv) -> None:
    seen.reset(_first_of(seen, "examine"))
    for name, args in [("take", ["unicorn 1", "desk 1"]), ("toggle", ["desklamp 1"]), ("open", ["bed 1"])]:
        outcome = seen.call(name, args)
        assert outcome.observation == NOTHING_HAPPENS
        assert not outcome.valid and not outcome.done and not outcome.success
    assert seen.call("inventory", []).valid
    with pytest.raises(ArgumentError):
        seen.call("take", ["apple 1"])


def test_goto_hides_the_location_number(seen: AlfworldEnv) -> None:
    info = seen.reset(_first_of(seen, "put"))
    receptacle = info.observation.split("you see a ", 1)[1].split(",")[0]
    outcome = seen.call("goto", [receptacle])
    assert outcome.valid and not outcome.observation.startswith("You arrive at loc")


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_the_handcoded_expert_solves_each_type(seen: AlfworldEnv, task_type: str) -> None:
    outcomes = _play_expert(seen, _first_of(seen, task_type))
    assert outcomes and outcomes[-1].success and outcomes[-1].done
    assert outcomes[-1].progress == 1.0
    assert all(not o.success and o.progress < 1.0 for o in outcomes[:-1])


def test_expert_is_reproducible(seen: AlfworldEnv) -> None:
    task = _first_of(seen, "cool")
    first = [o.observation for o in _play_expert(seen, task)]
    assert first == [o.observation for o in _play_expert(seen, task)]


def test_progress_rises_partially_and_never_falls(seen: AlfworldEnv) -> None:
    outcomes = _play_expert(seen, _first_of(seen, "puttwo"))
    progress = [o.progress for o in outcomes]
    assert progress == sorted(progress)
    assert 0.5 in progress  # one of the two objects placed
    assert outcomes[progress.index(0.5)].success is False
    assert progress[-1] == 1.0


CLEAN_GOAL = """(define (problem p) (:domain alfred)
 (:goal (and (exists (?r - receptacle) (exists (?o - object)
   (and (cleanable ?o) (objectType ?o KnifeType) (receptacleType ?r CounterTopType)
        (isClean ?o) (inReceptacle ?o ?r)))))))"""


def test_progress_binds_one_object_to_all_conditions(data: Path) -> None:
    game = next((data / "json_2.1.1/valid_train").glob("*/*/game.tw-pddl"))
    goal = parse_goal(CLEAN_GOAL, json.loads(game.read_text())["pddl_domain"])
    assert [c[0] for c in goal.conditions] == ["isclean", "inreceptacle"]
    static = [
        ("cleanable", ("knife1",)),
        ("cleanable", ("knife2",)),
        ("objecttype", ("knife1", "knifetype")),
        ("objecttype", ("knife2", "knifetype")),
        ("receptacletype", ("counter1", "countertoptype")),
    ]
    assert goal.progress(static) == 0.0
    assert goal.progress(static + [("isclean", ("knife1",))]) == 0.5
    # A clean knife and another knife on the counter: still one condition per binding.
    assert goal.progress(static + [("isclean", ("knife1",)), ("inreceptacle", ("knife2", "counter1"))]) == 0.5
    assert goal.progress(static + [("isclean", ("knife2",)), ("inreceptacle", ("knife2", "counter1"))]) == 1.0


# -- commands -----------------------------------------------------------------------------------
def test_primitives_map_to_game_commands_and_back() -> None:
    assert [p.name for p in PRIMITIVES] == [
        "goto",
        "take",
        "put",
        "open",
        "close",
        "toggle",
        "clean",
        "cool",
        "heat",
        "inventory",
        "examine",
        "use",
    ]
    assert to_command("take", ["apple 1", "countertop 1"]) == "take apple 1 from countertop 1"
    assert to_command("put", ["apple 1", "fridge 1"]) == "put apple 1 in/on fridge 1"
    assert to_command("goto", ["cabinet 10"]) == "go to cabinet 10"
    assert to_command("toggle", ["desklamp 1"]) == "toggle desklamp 1"
    assert to_command("heat", ["egg 2", "microwave 1"]) == "heat egg 2 with microwave 1"
    assert to_command("inventory", []) == "inventory"
    for spec in PRIMITIVES:
        args = [f"thing {i + 1}" for i in range(len(spec.params))]
        assert from_command(to_command(spec.name, args)) == (spec.name, args)
        assert spec.doc
    assert from_command("move apple 1 to countertop 2") == ("put", ["apple 1", "countertop 2"])
    assert from_command("look") is None and from_command("help") is None


def test_every_admissible_command_is_a_primitive_or_look(seen: AlfworldEnv) -> None:
    seen.reset(_first_of(seen, "heat"))
    seen.call("goto", ["fridge 1"])
    engine_state = seen._engine.state  # the admissible commands are not part of the protocol
    unmapped = {c for c in engine_state["admissible_commands"] if from_command(c) is None}
    assert unmapped <= {"look", "help"}


def test_expert_calls_iterate_the_reactive_expert(seen: AlfworldEnv) -> None:
    seen.reset(_first_of(seen, "examine"))
    outcome = None
    for name, args in seen.expert_calls():
        outcome = seen.call(name, args)
        if outcome.done:
            break
    assert outcome is not None and outcome.success


def test_expert_step_before_reset_is_none(data: Path) -> None:
    assert AlfworldEnv(data, split="valid_seen", task_types=["put"]).expert_step() is None


# -- errors -------------------------------------------------------------------------------------
def test_missing_data_dir_says_how_to_give_it(tmp_path: Path) -> None:
    with pytest.raises(
        AlfworldDataError, match=r"does not exist; give `alfworld_data` or set \$ALFWORLD_DATA"
    ) as caught:
        AlfworldEnv(tmp_path / "nowhere")
    assert caught.value.path == tmp_path / "nowhere"
    with pytest.raises(AlfworldDataError, match="no json_2.1.1/ folder"):
        AlfworldEnv(tmp_path)


def test_missing_split_lists_the_splits(data: Path) -> None:
    with pytest.raises(AlfworldDataError, match="no split 'valid_unseen' .* splits found: valid_seen, valid_train"):
        AlfworldEnv(data)


def test_unknown_task_type_lists_the_types(data: Path) -> None:
    with pytest.raises(AlfworldDataError, match="unknown ALFWorld task type 'slice'; known: put, clean, heat, cool"):
        AlfworldEnv(data, split="valid_seen", task_types=["put", "slice"])


def test_malformed_game_files_are_named(data: Path, tmp_path: Path) -> None:
    src = next((data / "json_2.1.1/valid_train").glob("pick_heat_then_place_in_recep-*/*/game.tw-pddl"))
    broken = _copy_game(src, tmp_path, "pick_heat_then_place_in_recep-Egg-None-Fridge-1")
    broken.write_text('{"pddl_domain": ')
    with pytest.raises(AlfworldDataError, match=f"malformed ALFWorld game file {broken}: not valid JSON"):
        AlfworldEnv(tmp_path)
    broken.write_text(json.dumps({"pddl_domain": "(x)", "grammar": "g", "solvable": True}))
    with pytest.raises(AlfworldDataError, match="missing key\\(s\\) pddl_problem"):
        AlfworldEnv(tmp_path)
    content = json.loads(src.read_text())
    content["pddl_problem"] = content["pddl_problem"].split("(:goal")[0] + ")"
    broken.write_text(json.dumps(content))
    env = AlfworldEnv(tmp_path)  # the goal is read at reset
    with pytest.raises(AlfworldDataError, match=f"{broken}: the PDDL problem has no :goal section"):
        env.reset(env.tasks()[0].id)
