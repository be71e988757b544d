"""Usage lines found without the model: a learned action's primitive calls, read off one run with placeholder
arguments, matched against the demonstration's calls; kept only when the lines reach the goal in the sandbox."""

from __future__ import annotations

import pytest

from learnact.actions.models import ActionSet, LearnedAction, UsageDemonstration
from learnact.engine.runs.usage import DemoTask, UsageDemonstrator
from learnact.engine.runs.usage_match import (
    CallTemplate,
    call_templates,
    matched_lines,
    parse_calls,
    placeholder_args,
    shapes,
)
from learnact.envs import env_profile
from learnact.envs.pddl import PddlEnv
from learnact.sandbox import Sandbox, SandboxConfig

A0, A1, A2, A3 = (placeholder_args((None,) * 4)[i] for i in range(4))
ONE_CARRY = ["pick('ball2', 'rooma', 'left')", "move('rooma', 'roomb')", "drop('ball2', 'roomb', 'left')"]
CARRY = CallTemplate("carry", (None,) * 4, (("pick", (A0, A1, A3)), ("move", (A1, A2)), ("drop", (A0, A2, A3))))


def action(name: str, params: str, body: str) -> LearnedAction:
    doc = f'    """Do {name}.\n    Example: {name}({params})\n    """\n'
    return LearnedAction(name=name, code=f"def {name}({params}):\n{doc}{body}")


def test_a_template_matched_on_the_demonstration_binds_each_placeholder_to_its_value() -> None:
    assert matched_lines(parse_calls(ONE_CARRY), [CARRY]) == ["carry('ball2', 'rooma', 'roomb', 'left')"]


def test_calls_that_give_one_placeholder_two_values_or_change_a_written_value_are_not_matched() -> None:
    # the robot moves back to rooma: the room placeholder would stand for roomb and rooma
    back = ["pick('ball2', 'rooma', 'left')", "move('rooma', 'roomb')", "drop('ball2', 'rooma', 'left')"]
    assert matched_lines(parse_calls(back), [CARRY]) == back
    # an action that always moves to roomb matches only a move to roomb
    to_roomb = CallTemplate("to_b", (None,), (("move", (A0, "roomb")), ("pick", ("ball2", "roomb", "left"))))
    assert matched_lines(parse_calls(["move('rooma', 'roomc')", "pick('ball2', 'roomb', 'left')"]), [to_roomb]) == [
        "move('rooma', 'roomc')",
        "pick('ball2', 'roomb', 'left')",
    ]


def test_a_parameter_the_calls_do_not_use_cannot_be_read_off_them() -> None:
    unused = CallTemplate("go", (None, None), (("move", (A0, "roomb")), ("move", ("roomb", A0))))
    demo = ["move('rooma', 'roomb')", "move('roomb', 'rooma')"]
    assert matched_lines(parse_calls(demo), [unused]) == demo


def test_the_longest_template_is_matched_first_and_the_rest_stay_primitive_calls() -> None:
    unstack_putdown = CallTemplate("clear", (None, None), (("Unstack", (A0, A1)), ("Putdown", (A0,))))
    lists = placeholder_args((3,))[0]
    tower = CallTemplate(
        "clear_tower",
        (3,),
        tuple(step for i in range(2) for step in (("Unstack", (lists[i], lists[i + 1])), ("Putdown", (lists[i],)))),
    )
    demo = ["Unstack('b2', 'b1')", "Putdown('b2')", "Unstack('b1', 'b3')", "Putdown('b1')", "Pickup('b2')"]
    assert matched_lines(parse_calls(demo), [unstack_putdown, tower]) == [
        "clear_tower(['b2', 'b1', 'b3'])",
        "Pickup('b2')",
    ]
    assert matched_lines(parse_calls(demo), [unstack_putdown]) == [
        "clear('b2', 'b1')",
        "clear('b1', 'b3')",
        "Pickup('b2')",
    ]


GO_AND_CARRY = CallTemplate("carry", (None,) * 4, (("move", (A2, A1)), *CARRY.calls))  # goes to the room first


def test_a_template_may_match_with_a_call_left_out_that_the_demonstration_did_not_need() -> None:
    # the robot is in rooma already: the action's first call, a move there from roomb, has no counterpart
    assert matched_lines(parse_calls(ONE_CARRY), [GO_AND_CARRY]) == ["carry('ball2', 'rooma', 'roomb', 'left')"]
    # an exact match is preferred: the demonstration that does move first is matched whole
    moved = ["move('roomb', 'rooma')", *ONE_CARRY]
    assert matched_lines(parse_calls(moved), [GO_AND_CARRY]) == ["carry('ball2', 'rooma', 'roomb', 'left')"]
    # only leading calls are left out: the robot moving back after the carry is not matched by leaving out a drop
    back = ["pick('ball2', 'rooma', 'left')", "move('rooma', 'roomb')", "drop('ball2', 'rooma', 'left')"]
    assert matched_lines(parse_calls(back), [CARRY]) == back
    # a call left out cannot bind a parameter the kept ones do not use, nor may a match keep fewer than two calls
    only_there = CallTemplate("go", (None, None), (("move", (A1, A0)), ("pick", ("ball2", A0, "left"))))
    assert matched_lines(parse_calls(["pick('ball2', 'rooma', 'left')"]), [only_there]) == [
        "pick('ball2', 'rooma', 'left')"
    ]
    # at most two calls are left out
    far = CallTemplate("far", (None,) * 4, (("move", (A2, A1)), ("move", (A1, A2)), ("move", (A2, A1)), *CARRY.calls))
    assert matched_lines(parse_calls(ONE_CARRY), [far]) == ONE_CARRY


def test_a_demonstration_line_that_is_not_a_call_with_literal_arguments_leaves_nothing_to_match() -> None:
    assert parse_calls(["pick('ball2', 'rooma', 'left')", "pick(ball, 'rooma', 'left')"]) == ()
    assert parse_calls(["x = 1"]) == ()
    assert shapes(0) == [()] and shapes(1) == [(None,), (2,), (3,)]


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_templates_are_read_off_each_action_run_once_with_placeholders_in_the_sandbox() -> None:
    env = PddlEnv.demonstration("gripper")
    actions = ActionSet(
        actions=(
            action(
                "carry",
                "ball, src, dst, hand",
                "    pick(ball, src, hand)\n    move(src, dst)\n    drop(ball, dst, hand)\n",
            ),
            action("pick_all", "balls, room", "    for ball in balls:\n        pick(ball, room, 'left')\n"),
            action("fails", "room", "    move(room, 'roomb')\n    move('roomb', room)\n    raise ValueError(room)\n"),
            action("forever", "room", "    while True:\n        move(room, room)\n"),
            action("once", "room", "    move(room, 'roomb')\n"),
        )
    )
    with Sandbox(SandboxConfig(pool_size=0)) as sandbox:
        templates = call_templates(sandbox, actions, env.primitives(), limit=8)
    assert CARRY in templates
    lists = placeholder_args((3, None))
    pick_all = [t for t in templates if t.action == "pick_all"]
    # a list parameter runs as lists of two and three items (a string of 19 characters makes too many calls)
    assert [t.shape for t in pick_all] == [(2, None), (3, None)]
    assert pick_all[1].calls == tuple(("pick", (ball, lists[1], "left")) for ball in lists[0])
    # an error, more calls than the limit and a single call make no template
    assert {t.action for t in templates} == {"carry", "pick_all"}


def gripper_demo() -> DemoTask:
    """Gripper's demonstration task and its stored expert calls: ball1 from roomb to rooma, ball2 back."""
    env = PddlEnv.demonstration("gripper")
    (task,) = env.tasks()
    reset = env.reset(task.id)
    stored = env_profile("pddl/gripper").demonstration("gripper")
    assert stored is not None
    return DemoTask(
        "DEMO",
        reset.goal,
        reset.observation,
        parse_calls([step["action"] for step in stored["steps"]]),
        task.id,
        lambda: PddlEnv.demonstration("gripper"),
    )


def assert_carries_both_balls_to_the_goal(usage: UsageDemonstration | None) -> None:
    """``usage`` is the matched lines that solve the gripper demonstration in two calls of carry, one each way."""
    assert usage is not None and usage.matched
    assert [s.code for s in usage.steps] == [
        "carry('ball1', 'roomb', 'rooma', 'left')",
        "carry('ball2', 'rooma', 'roomb', 'left')",
    ]
    assert usage.steps[-1].observation.endswith("The goal is satisfied.")


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_when_no_answer_of_the_model_reaches_the_goal_matched_lines_that_do_are_kept() -> None:
    carry = action(
        "carry", "ball, src, dst, hand", "    pick(ball, src, hand)\n    move(src, dst)\n    drop(ball, dst, hand)\n"
    )
    actions = ActionSet(actions=(carry,))
    asked: list[str] = []

    def ask(call_id: str, messages, sample: int, fixing: bool, form) -> str:
        asked.append(call_id)
        return "```python\ncarry('ball1', 'rooma', 'roomb', 'left')\n```"  # ball1 is in roomb, not rooma

    usage = UsageDemonstrator(gripper_demo(), "SYSTEM", ask, SandboxConfig(pool_size=0), tries=2)(actions, "usage")
    assert asked == ["usage", "usage-fix-1"]
    assert_carries_both_balls_to_the_goal(usage)


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_an_action_that_first_reaches_its_precondition_is_shown_at_work_from_the_lines_it_matches() -> None:
    # move(dst, src) is refused in the demonstration's state (the robot is in src already) and changes nothing
    go_and_carry = action(
        "carry",
        "ball, src, dst, hand",
        "    move(dst, src)\n    pick(ball, src, hand)\n    move(src, dst)\n    drop(ball, dst, hand)\n",
    )
    usage = UsageDemonstrator(gripper_demo(), "SYSTEM", lambda *args: "not code", SandboxConfig(pool_size=0), tries=1)(
        ActionSet(actions=(go_and_carry,)), "usage"
    )
    assert_carries_both_balls_to_the_goal(usage)


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_matched_lines_that_do_not_reach_the_goal_give_no_usage_demonstration() -> None:
    # with the template run's empty observation carry drops the ball where the demonstration does; with the
    # environment's answer it drops it in the room it left, and the line fails
    branching = action(
        "carry",
        "ball, src, dst, hand",
        "    seen = pick(ball, src, hand)\n    move(src, dst)\n    drop(ball, src if seen else dst, hand)\n",
    )
    lines: list[str] = []
    usage = UsageDemonstrator(
        gripper_demo(), "SYSTEM", lambda *args: "not code", SandboxConfig(pool_size=0), tries=1, progress=lines.append
    )(ActionSet(actions=(branching,)), "usage")
    assert usage is None
    assert lines[-1] == "usage demonstration: no lines matched from the demonstration reached the goal"
