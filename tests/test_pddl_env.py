"""The PDDL environments: built-in tasks, AgentBoard-style text, STRIPS semantics, external files."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnact.actions import LearnactError
from learnact.envs import INVALID_ACTION, ArgumentError, UnknownEnvironment, UnknownTask
from learnact.envs.pddl import DOMAINS, PddlEnv, PddlError
from learnact.envs.pddl.generate import GENERATORS, PROBLEMS_DIR, generate
from learnact.envs.pddl.loader import normalise_domain_text

BENCHMARK = Path(__file__).parent / "data" / "pddl"  # AgentBoard's own files, quirks included

BLOCKS_DOMAIN = (BENCHMARK / "blockworld.pddl").read_text()


def write_blocks_problem(tmp_path: Path, init: str, goal: str, name: str = "two") -> Path:
    path = tmp_path / f"{name}.pddl"
    path.write_text(
        f"(define (problem {name}) (:domain blocksworld-4ops) (:objects b1 b2 b3) (:init {init}) (:goal (and {goal})))"
    )
    return path


@pytest.fixture
def blocks(tmp_path: Path) -> PddlEnv:
    """b2 on b1, b3 on the table; goal: b1 on b3 and b2 on b1 (one of the two holds already)."""
    domain = tmp_path / "domain.pddl"
    domain.write_text(BLOCKS_DOMAIN)
    problem = write_blocks_problem(
        tmp_path,
        "(arm-empty) (on-table b1) (on b2 b1) (clear b2) (on-table b3) (clear b3)",
        "(on b1 b3) (on b2 b1)",
    )
    env = PddlEnv.from_files(domain, [problem])
    env.reset("two")
    return env


def test_builtin_problem_sets_have_the_benchmark_sizes_and_task_ids() -> None:
    assert DOMAINS == ("tyreworld", "blockworld", "barman", "gripper")
    sizes = {domain: len(PddlEnv.builtin(domain).tasks()) for domain in DOMAINS}
    assert sizes == {"tyreworld": 10, "blockworld": 10, "barman": 20, "gripper": 20}
    env = PddlEnv.builtin("blockworld")
    assert env.name == "pddl/blockworld"
    assert env.tasks()[2].id == "blockworld-03"
    assert {t.type for t in env.tasks()} == {"blockworld"}


def test_unknown_builtin_domain_lists_the_known_ones() -> None:
    with pytest.raises(UnknownEnvironment, match="known: pddl/tyreworld, pddl/blockworld, pddl/barman, pddl/gripper"):
        PddlEnv.builtin("sokoban")


def test_an_unknown_task_id_is_an_unknown_task_with_its_fields() -> None:
    env = PddlEnv.builtin("blockworld")
    for call in (env.reset, env.expert_plan):
        with pytest.raises(UnknownTask) as caught:
            call("nope")
        error = caught.value
        assert isinstance(error, LearnactError) and not isinstance(error, KeyError)
        assert (error.task, error.env) == ("nope", "pddl/blockworld")
        assert error.available == tuple(t.id for t in env.tasks())
        assert str(error) == (
            "unknown task 'nope' in pddl/blockworld (10 tasks: blockworld-01, blockworld-02, blockworld-03, "
            "blockworld-04, blockworld-05, ...)"
        )


def test_committed_problem_files_are_exactly_what_the_seeded_generator_writes() -> None:
    for domain in GENERATORS:
        committed = {p.name: p.read_text() for p in (PROBLEMS_DIR / domain).glob("*.pddl")}
        assert committed == generate(domain)


@pytest.mark.parametrize(
    ("domain", "signatures"),
    [
        ("blockworld", ["Pickup(block)", "Putdown(block)", "Stack(block1, block2)", "Unstack(block1, block2)"]),
        ("gripper", ["move(room1, room2)", "pick(obj, room, gripper)", "drop(obj, room, gripper)"]),
        (
            "tyreworld",
            [
                "open(container)",
                "close(container)",
                "fetch(object, container)",
                "put_away(object, container)",
                "loosen(nut, hub)",
                "tighten(nut, hub)",
                "jack_up(hub)",
                "jack_down(hub)",
                "undo(nut, hub)",
                "do_up(nut, hub)",
                "remove_wheel(wheel, hub)",
                "put_on_wheel(wheel, hub)",
                "inflate(wheel)",
            ],
        ),
        (
            "barman",
            [
                "grasp(hand, container)",
                "leave(hand, container)",
                "fill_shot(shot, ingredient, hand1, hand2, dispenser)",
                "refill_shot(shot, ingredient, hand1, hand2, dispenser)",
                "empty_shot(hand, shot, beverage)",
                "clean_shot(shot, beverage, hand1, hand2)",
                "pour_shot_to_clean_shaker(shot, ingredient, shaker, hand1, level1, level2)",
                "pour_shot_to_used_shaker(shot, ingredient, shaker, hand1, level1, level2)",
                "empty_shaker(hand, shaker, cocktail, level1, level2)",
                "clean_shaker(hand1, hand2, shaker)",
                "shake(cocktail, ingredient1, ingredient2, shaker, hand1, hand2)",
                "pour_shaker_to_shot(beverage, shot, hand, shaker, level1, level2)",
            ],
        ),
    ],
)
def test_primitives_follow_the_benchmark_text_actions(domain: str, signatures: list[str]) -> None:
    assert [p.signature() for p in PddlEnv.builtin(domain).primitives()] == signatures


def test_primitive_docs_state_preconditions_and_effects_in_words() -> None:
    docs = {p.name: p.doc for p in PddlEnv.builtin("blockworld").primitives()}
    assert "Preconditions: block is clear; block is on the table; your arm is empty." in docs["Pickup"]
    assert "Effects: you are holding block." in docs["Pickup"]
    barman = {p.name: p.doc for p in PddlEnv.builtin("barman").primitives()}
    assert "Parameters: hand (a hand), container (a container)" in barman["grasp"]


def test_reset_describes_facts_and_goal_like_agentboard(blocks: PddlEnv) -> None:
    info = blocks.reset("two")
    assert info.observation == (
        "Your arm is empty. b1 is on the table. b2 is clear. b2 is on b1. b3 is clear. b3 is on the table."
    )
    assert info.goal == "The goal is to satisfy the following conditions: b1 is on b3, b2 is on b1."
    assert blocks.observation() == info.observation


def test_a_valid_call_changes_the_state_and_answers_the_new_facts(blocks: PddlEnv) -> None:
    out = blocks.call("Unstack", ["b2", "b1"])
    assert out.valid and not out.done
    assert out.observation == "You are holding b2. b1 is clear. b1 is on the table. b3 is clear. b3 is on the table."
    assert blocks.observation() == out.observation


def test_an_inapplicable_call_leaves_the_state_unchanged(blocks: PddlEnv) -> None:
    before = blocks.observation()
    out = blocks.call("Pickup", ["b1"])  # b1 is not clear
    assert out.observation == INVALID_ACTION + (
        " Not true now: b1 is clear. True now: b2 is clear; b3 is clear; b2 is on b1; b1 is on the table."
    )
    assert INVALID_ACTION == "The action is not valid and therefore takes no effect."
    assert not out.valid and not out.done and not out.success
    assert blocks.observation() == before


def test_unknown_objects_and_wrongly_typed_objects_are_invalid_calls() -> None:
    env = PddlEnv.builtin("tyreworld")
    env.reset("tyreworld-01")
    before = env.observation()
    assert env.call("open", ["garage"]).observation == INVALID_ACTION + " There is no garage in this task."
    wrong_type = env.call("open", ["the-hub1"])
    assert not wrong_type.valid and wrong_type.observation == INVALID_ACTION + " the-hub1 is not a container."
    assert env.observation() == before
    assert env.call("open", ["boot"]).valid


def test_an_invalid_call_names_every_precondition_that_does_not_hold(blocks: PddlEnv) -> None:
    """What a weak agent needs to correct its arguments: Stack(b2, b1) while the arm is empty and b2 lies on b1."""
    out = blocks.call("Stack", ["b2", "b1"])
    assert not out.valid
    assert out.observation == INVALID_ACTION + (
        " Not true now: b1 is clear; you are holding b2."
        " True now: b2 is clear; b3 is clear; b2 is on b1; b1 is on the table."
    )


def test_an_invalid_call_says_what_holds_instead_of_its_unmet_preconditions() -> None:
    """The changing facts about the objects the call named, and where the robot is (a fact of one object): not
    the static ones ("ball1 is a ball"), nor facts about other objects ("right is free")."""
    env = PddlEnv.builtin("gripper")
    env.reset("gripper-01")  # the robot and ball1 in rooma, ball2 in roomb
    out = env.call("pick", ["ball1", "roomb", "left"])
    assert out.observation == INVALID_ACTION + (
        " Not true now: ball1 is at roomb; robby is at roomb."
        " True now: ball1 is at rooma; ball2 is at roomb; robby is at rooma."
    )


def test_object_names_are_case_insensitive_like_pddl(blocks: PddlEnv) -> None:
    assert blocks.call("Unstack", ["B2", "B1"]).valid


def test_arguments_are_validated_before_the_environment_sees_them(blocks: PddlEnv) -> None:
    before = blocks.observation()
    with pytest.raises(ArgumentError, match="takes 2 argument"):
        blocks.call("Stack", ["b1"])
    with pytest.raises(ArgumentError, match="must be a string"):
        blocks.call("Pickup", [3])
    with pytest.raises(ArgumentError, match="unknown primitive 'pickup'"):
        blocks.call("pickup", ["b1"])
    assert blocks.observation() == before


def test_progress_is_the_running_maximum_of_the_goal_fraction(blocks: PddlEnv) -> None:
    assert blocks.call("Pickup", ["b1"]).progress == 0.0  # invalid call at the start
    assert blocks.call("Unstack", ["b2", "b1"]).progress == 0.0  # on(b2, b1) no longer holds
    assert blocks.call("Putdown", ["b2"]).progress == 0.0
    assert blocks.call("Pickup", ["b1"]).progress == 0.0
    out = blocks.call("Stack", ["b1", "b3"])
    assert out.progress == 0.5 and not out.done
    assert blocks.call("Unstack", ["b1", "b3"]).progress == 0.5  # undoing keeps the best so far
    blocks.call("Stack", ["b1", "b3"])
    blocks.call("Pickup", ["b2"])
    out = blocks.call("Stack", ["b2", "b1"])
    assert (out.progress, out.done, out.success) == (1.0, True, True)
    assert out.observation == (
        "Your arm is empty. b1 is on b3. b2 is clear. b2 is on b1. b3 is on the table. The goal is satisfied."
    )


def test_reset_restarts_the_task_and_its_progress(blocks: PddlEnv) -> None:
    first = blocks.observation()
    assert blocks.call("Pickup", ["b3"]).progress == 0.5  # on(b2, b1) still holds
    blocks.reset("two")
    assert blocks.observation() == first
    assert blocks.call("Pickup", ["b1"]).progress == 0.0  # invalid: nothing reached yet


def test_benchmark_files_load_with_their_quirks() -> None:
    # tyreworld: :constants after :predicates, no :typing requirement, constants repeated as objects
    env = PddlEnv.from_files(BENCHMARK / "tyreworld.pddl", sorted((BENCHMARK / "tyreworld").glob("*.pddl")))
    assert env.name == "pddl"
    assert [(t.id, t.type) for t in env.tasks()] == [("p01", "tyreworld"), ("p10", "tyreworld")]
    info = env.reset("p01")
    assert "jack is in boot." in info.observation and "The nut nuts1 on the hub the-hub1 is tight." in info.observation
    for name, args in [("open", ["boot"]), ("fetch", ["wrench", "boot"])]:
        assert env.call(name, args).valid
    assert env.call("loosen", ["nuts1", "the-hub1"]).valid  # precondition (have wrench) on a constant
    for domain, expected in [
        ("blockworld", "Your arm is empty."),
        ("gripper", "Robby is at rooma."),
        ("barman", "Hand left is empty."),
    ]:
        env = PddlEnv.from_files(BENCHMARK / f"{domain}.pddl", sorted((BENCHMARK / domain).glob("*.pddl")))
        assert {t.type for t in env.tasks()} == {domain}
        assert expected in env.reset(env.tasks()[0].id).observation


def test_the_normaliser_reorders_sections_and_declares_typing_only_when_needed() -> None:
    text = normalise_domain_text((BENCHMARK / "tyreworld.pddl").read_text(), "tyreworld.pddl")
    assert text.index("(:requirements :strips :typing)") < text.index("(:types")
    assert text.index("(:constants") < text.index("(:predicates")
    canonical = (BENCHMARK / "barman.pddl").read_text()
    assert normalise_domain_text(canonical, "barman.pddl") == canonical


GENERIC_DOMAIN = """(define (domain Logistics-Lite)
  (:requirements :strips :typing)
  (:types place truck - object)
  (:predicates (at ?t - truck ?p - place) (road ?a - place ?b - place))
  (:action drive-to
    :parameters (?t - truck ?from - place ?to - place)
    :precondition (and (at ?t ?from) (road ?from ?to))
    :effect (and (at ?t ?to) (not (at ?t ?from)))))
"""


def test_other_typed_strips_domains_get_generic_text(tmp_path: Path) -> None:
    (tmp_path / "d.pddl").write_text(GENERIC_DOMAIN)
    (tmp_path / "p1.pddl").write_text(
        "(define (problem p1) (:domain logistics-lite) (:objects t1 - truck x y - place)"
        " (:init (at t1 x) (road x y)) (:goal (and (at t1 y))))"
    )
    env = PddlEnv.from_files(tmp_path / "d.pddl", [tmp_path / "p1.pddl"])
    [spec] = env.primitives()
    assert spec.signature() == "drive_to(t, from_, to)"  # 'from' is a Python keyword
    assert env.tasks()[0].type == "logistics-lite"
    info = env.reset("p1")
    assert info.observation == "at(t1, x) holds. road(x, y) holds."
    assert info.goal == "The goal is to satisfy the following conditions: at(t1, y) holds."
    out = env.call("drive_to", ["t1", "x", "y"])
    assert out.success and out.observation == "at(t1, y) holds. road(x, y) holds. The goal is satisfied."
    assert env.expert_plan("p1") == [("drive_to", ["t1", "x", "y"])]


@pytest.mark.parametrize(
    ("domain_text", "problem_text", "message"),
    [
        (BLOCKS_DOMAIN[:-3], None, r"domain.pddl: unbalanced parentheses"),
        (
            BLOCKS_DOMAIN.replace("(holding ?ob) (not (clear", "(holdin ?ob) (not (clear"),
            None,
            r"domain.pddl: action 'pickup': predicate 'holdin' is not declared",
        ),
        (
            BLOCKS_DOMAIN.replace("(clear ?underob) (holding ?ob))", "(or (clear ?underob) (holding ?ob)))"),
            None,
            r"domain.pddl: not a valid PDDL domain: Missing PDDL requirement, :disjunctive-preconditions",
        ),
        (
            BLOCKS_DOMAIN.replace("(clear ?underob) (holding ?ob))", "(or (clear ?underob) (holding ?ob)))").replace(
                ":strips)", ":strips :disjunctive-preconditions)"
            ),
            None,
            r"domain.pddl: action 'stack': the precondition must be a conjunction of atoms \(STRIPS\)",
        ),
        (
            BLOCKS_DOMAIN,
            "(define (problem p) (:domain other) (:objects b1) (:init) (:goal (and (clear b1))))",
            r"p.pddl: the problem is for domain 'other'",
        ),
        (
            BLOCKS_DOMAIN,
            "(define (problem p) (:domain blocksworld-4ops) (:objects b1) (:init (clear b9)) (:goal (and (clear b1))))",
            r"p.pddl: unknown object 'b9' in \(clear b9\)",
        ),
        (
            BLOCKS_DOMAIN,
            "(define (problem p) (:domain blocksworld-4ops) (:objects b1) (:init (clear b1 b1))"
            " (:goal (and (clear b1))))",
            r"p.pddl: predicate 'clear' takes 1 argument\(s\), 2 given",
        ),
        (
            BLOCKS_DOMAIN,
            "(define (problem p) (:domain blocksworld-4ops) (:objects b1) (:init (clear b1)",
            r"p.pddl: not a valid PDDL problem",
        ),
    ],
)
def test_malformed_pddl_names_the_file_and_the_fault(
    tmp_path: Path, domain_text: str, problem_text: str | None, message: str
) -> None:
    (tmp_path / "domain.pddl").write_text(domain_text)
    problem = tmp_path / "p.pddl"
    problem.write_text(
        problem_text
        or "(define (problem p) (:domain blocksworld-4ops) (:objects b1) (:init (clear b1)) (:goal (and (clear b1))))"
    )
    with pytest.raises(PddlError, match=message) as caught:
        PddlEnv.from_files(tmp_path / "domain.pddl", [problem])
    assert isinstance(caught.value, LearnactError)
    assert str(tmp_path) in str(caught.value)


def test_missing_files_and_clashing_task_ids_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PddlError, match=r"nowhere.pddl: domain file not found"):
        PddlEnv.from_files(tmp_path / "nowhere.pddl", [])
    (tmp_path / "d.pddl").write_text(BLOCKS_DOMAIN)
    with pytest.raises(PddlError, match=r"gone.pddl: problem file not found"):
        PddlEnv.from_files(tmp_path / "d.pddl", [tmp_path / "gone.pddl"])
    first = write_blocks_problem(tmp_path, "(arm-empty)", "(clear b1)", name="p")
    (tmp_path / "other").mkdir()
    second = write_blocks_problem(tmp_path / "other", "(arm-empty)", "(clear b1)", name="p")
    with pytest.raises(PddlError, match="task id 'p' is also the name of"):
        PddlEnv.from_files(tmp_path / "d.pddl", [first, second])
