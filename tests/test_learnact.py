"""LearnAct's learner end to end against the scripted OpenAI-protocol stand-in (tests/llm_server.py) and the
real sandbox: an action that fails in the sandbox is sent back with its real traceback and finding, the
model's fix is kept, a Plan note wins by score, a round that scores lower is rolled back, an interrupted run
resumes without asking the model again, and the learned set is what `learnact eval --library` uses. The
stand-in answers by what each prompt asks (create, fix, optimise, or the agent's next step)."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer, Status

from learnact.actions.library import CandidateScore, LearningProgress, Library, Origin
from learnact.engine.llm import CALLS, CachedBackbone, OpenAIBackbone, ResponseCache
from learnact.engine.llm.grammar import call_grammar, definitions_grammar
from learnact.engine.records import Method, ModelSettings, RunSettings
from learnact.engine.reports.audit import build_audit
from learnact.engine.reports.audit_html import audit_html
from learnact.engine.rundir import CONFIG, RunDir
from learnact.engine.runs.evaluation import EvalConfig, run_evaluation
from learnact.engine.runs.learnact_run import LearningServices, learnact_run_config, learned_library, run_learnact
from learnact.engine.splits import Split
from learnact.envs import EnvSpec, env_profile, make_env
from learnact.learner.answers import ParsedAction, combines_actions, duplicates, parse_actions, parse_improvement
from learnact.learner.learnact import AnswerForm, LearnactConfig, chosen_placement
from learnact.learner.scoring import MAX_SHOWN_SUBSTEPS, CallView, StepView, Trajectory, score_trajectories
from learnact.sandbox import SandboxConfig

BLOCKS = EnvSpec(name="pddl/blockworld")
TASK = "blockworld-01"  # b2 is on b1; the goal: b3 on b2. Pickup('b3'), Stack('b3', 'b2') solve it


def agent_run(
    spec: EnvSpec, agent: ModelSettings, train: tuple[str, ...], max_steps: int | None = None
) -> tuple[RunSettings, Split]:
    """The scoring agent's settings and the split of a learning run on ``train`` (seed 0), as planned."""
    steps = max_steps or env_profile(spec.name).learn_steps
    sandbox = SandboxConfig(pool_size=1)
    run = RunSettings(env=spec, method=Method.learnact, max_steps=steps, sandbox=sandbox, model=agent)
    return run, Split(seed=0, train=train, test=())


PRIMITIVES = ("Pickup", "Putdown", "Stack", "Unstack")
NOTE = "Only call pick_and_stack on a block that is clear."

BUGGY = '''```python
def pick_and_stack(top, bottom):
    """Pick up the clear block top from the table and stack it on the clear block bottom.
    Example: pick_and_stack('b3', 'b2')
    """
    Pickup(top)
    Stack(top, bottom)
    return int(top)


def clear_block(block, under):
    """Take block off the block under it and put it down on the table.
    Example: clear_block('b2', 'b1')
    """
    import os
    Unstack(block, under)
    Putdown(block)
```'''
FIXED = BUGGY.replace("    return int(top)\n", "").replace("    import os\n", "")
PLAN = f"Failed reason: b1 was not clear, so Pickup did nothing.\nImprove: Plan\nContent: {NOTE}"
CHECKED = """def pick_and_stack(top, bottom):
    \"\"\"Pick up the clear block top and stack it on bottom; stop when top cannot be picked up.
    Example: pick_and_stack('b3', 'b2')
    \"\"\"
    seen = Pickup(top)
    if "not valid" in seen:
        return seen
    return Stack(top, bottom)
"""
# The blockworld demonstration (b2 on b1 on b3; the goal: b2 on b3) rewritten with the learned actions: first
# with a line that fails (b2 is not on the table), then right.
USAGE_WRONG = "```python\npick_and_stack('b2', 'b3')\n```"
USAGE = "```python\nclear_block('b2', 'b1')\nclear_block('b1', 'b3')\npick_and_stack('b2', 'b3')\n```"
UPDATE = f"Failed reason: b1 was covered.\nImprove: Update\nContent:\n```python\n{CHECKED}```\n"


PRIMITIVE_DEMONSTRATION = "Here is an example of a task solved this way"


def usage_read_last(prompt: str) -> bool:
    """Whether an agent's prompt shows the usage demonstration as its last example: after the primitive one, or
    without it."""
    usage = prompt.find("Here is a task solved with the learned actions")
    return usage >= 0 and usage > prompt.find(PRIMITIVE_DEMONSTRATION)


class StandIn:
    """Answers the learner (create, fix, optimise) and the act agent. The agent calls pick_and_stack on a
    covered block first, unless its instruction holds the Plan note (or, with ``copies_last``, it read the usage
    demonstration last); with ``worse_on_repeat`` every episode after the first of a set fails (a noisy agent, so
    that a round scores lower); with ``ignores_first`` it calls primitives only unless it read the usage
    demonstration last or holds the note."""

    def __init__(
        self,
        worse_on_repeat: bool = False,
        improve: str = PLAN,
        fix: str = FIXED,
        primitives_only: bool = False,
        create: str = BUGGY,
        copies_last: bool = False,
        ignores_first: bool = False,
    ) -> None:
        self.worse_on_repeat, self.improve, self.fix, self.create = worse_on_repeat, improve, fix, create
        self.primitives_only, self.copies_last, self.ignores_first = primitives_only, copies_last, ignores_first
        self.episodes = 0

    def __call__(self, body: dict) -> Answer:
        system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
        if system.startswith("You design reusable actions"):
            if "Rewrite that solution" in user:
                return Answer(USAGE_WRONG)
            if "did not reach its goal" in user:
                return Answer(USAGE)
            if "could not be used" in user:
                return Answer(self.fix)
            if "Improve: <Update or Plan>" in user:
                return Answer(self.improve)
            return Answer(self.create)
        own = user.split("Now it is your turn.")[-1]
        done = own.count("Action:")
        if done == 0:
            self.episodes += 1
        if self.primitives_only or (self.ignores_first and NOTE not in system and not usage_read_last(user)):
            return Answer(["Pickup('b3')", "Stack('b3', 'b2')"][min(done, 1)])
        if self.worse_on_repeat and self.episodes > 1:
            return Answer("pick_and_stack('b1', 'b3')")
        if NOTE in system or done >= 1 or (self.copies_last and usage_read_last(user)):
            return Answer("pick_and_stack('b3', 'b2')")
        return Answer("pick_and_stack('b1', 'b3')")


def learner_requests(server: ScriptedServer) -> list[dict]:
    return [r.body for r in server.received if r.body["messages"][0]["content"].startswith("You design")]


def learn(
    server: ScriptedServer,
    out: Path,
    cache: ResponseCache | None,
    progress: Callable[[str], None] = lambda line: None,
    rounds: int = 2,
    usage_placement: str = "chosen",
    samples: int = 1,
):
    agent = ModelSettings(model="m", base_url=server.base_url)
    run, split = agent_run(BLOCKS, agent, (TASK,))
    learner = LearnactConfig.for_env(BLOCKS.name, samples=samples, rounds=rounds, usage_placement=usage_placement)
    config = learnact_run_config(run, split, learner)
    backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=1)
    if cache is not None:
        backbone = CachedBackbone(backbone, cache)
    return run_learnact(config, out, LearningServices(backbone, progress=progress))


# --- the pure parts -------------------------------------------------------------------------------------


def test_functions_are_read_from_an_answer_with_their_description_and_example() -> None:
    parsed = parse_actions("Here they are:\n" + FIXED + "\nThat is all.", PRIMITIVES, max_actions=8)
    assert [a.name for a in parsed.actions] == ["pick_and_stack", "clear_block"]
    assert parsed.problems == {}
    first = parsed.actions[0]
    assert first.description.startswith("Pick up the clear block top")
    assert first.example == "pick_and_stack('b3', 'b2')"
    assert first.code.startswith("def pick_and_stack(top, bottom):") and "clear_block" not in first.code


@pytest.mark.parametrize(
    ("answer", "where", "says"),
    [
        ("```python\ndef f(:\n```", "f", "line 1: SyntaxError"),
        ("I would stack the blocks.", "", "defines no Python function"),
        ("```python\ndef f(a):\n    Pickup(a)\n    Putdown(a)\n```", "f", "no docstring"),
        ('```python\ndef f(a):\n    """Lift and drop."""\n    Pickup(a)\n```', "f", "no usage example"),
        ('```python\ndef f(a):\n    """Lift.\n    Example: g(1)\n    """\n```', "f", "does not call f"),
        ('```python\ndef f(a):\n    """Lift.\n    Example: f(1)"\n    """\n```', "f", "not one line of valid Python"),
        ('```python\ndef pickup(a):\n    """Lift.\n    Example: pickup(1)\n    """\n```', "pickup", "primitive"),
    ],
)
def test_an_answer_that_cannot_be_used_says_why(answer: str, where: str, says: str) -> None:
    assert says in parse_actions(answer, PRIMITIVES, max_actions=8).problems[where].text


def test_one_broken_function_does_not_hide_the_others() -> None:
    answer = "```python\ndef broken(block):\n    # to do\n\n" + FIXED.split("```python\n", 1)[1]
    parsed = parse_actions(answer, PRIMITIVES, max_actions=8)
    assert [a.name for a in parsed.actions] == ["pick_and_stack", "clear_block"]
    assert parsed.problems["broken"].text == (
        "line 3: SyntaxError: expected an indented block after function definition on line 1"
    )


@pytest.mark.parametrize(
    ("body", "combines"),
    [
        ("    Pickup(b)\n    return Putdown(b)\n", True),
        ("    return Pickup(b)\n    return Putdown(b)\n", False),  # the second call never runs (seen on Qwen 1.5B)
        ("    for x in b:\n        Pickup(x)\n", True),  # one call site in a loop
        ("    if b:\n        Pickup(b)\n    else:\n        Putdown(b)\n", False),  # one primitive either way
        ("    seen = Pickup(b)\n    if 'not' in seen:\n        return seen\n    return Stack(b, 'a')\n", True),
        ("    if Pickup(b):\n        Putdown(b)\n", True),
    ],
)
def test_a_learned_action_must_run_at_least_two_primitive_calls(body: str, combines: bool) -> None:
    action = ParsedAction("f", f"def f(b):\n{body}", "does it", "f('b1')")
    assert combines_actions(action, PRIMITIVES) is combines


CLEAR_TOWER = """def clear_tower(blocks):
    \"\"\"Put every block of a tower on the table, top first.
    Example: clear_tower(['b3', 'b2', 'b1'])
    \"\"\"
    for upper, lower in zip(blocks, blocks[1:]):
        Unstack(upper, lower)
        Putdown(upper)
"""


@pytest.mark.parametrize(
    ("other", "duplicate"),
    [
        (CLEAR_TOWER.replace("clear_tower", "clear_table").replace("top first", "one by one"), True),
        (CLEAR_TOWER.replace("clear_tower", "unbuild").replace("upper", "a").replace("lower", "b"), True),
        (CLEAR_TOWER.replace("clear_tower", "swapped").replace("Unstack(upper, lower)", "Unstack(lower, upper)"),
         False),
        (CLEAR_TOWER.replace("clear_tower", "stacked").replace("Putdown(upper)", "Stack(upper, 'b1')"), False),
    ],
)  # fmt: skip
def test_a_function_with_another_ones_code_under_other_names_is_a_duplicate(other: str, duplicate: bool) -> None:
    actions = [ParsedAction(code.split("(")[0][4:], code, "", "") for code in (CLEAR_TOWER, other)]
    assert duplicates(actions) == ({actions[1].name: "clear_tower"} if duplicate else {})


@pytest.mark.parametrize("depth", [990, 5000])  # parsed but too deep to compare; too deep to parse
def test_a_function_nested_too_deep_to_compare_is_no_duplicate(depth: int) -> None:
    deep = "def f(a):\n    return " + "-" * depth + "a\n"
    assert duplicates([ParsedAction("f", deep, "", ""), ParsedAction("g", deep.replace("f(", "g("), "", "")]) == {}


def test_an_optimise_answer_is_a_plan_or_an_update() -> None:
    plan = parse_improvement(PLAN)
    assert plan is not None and plan.kind == "plan" and plan.content == NOTE and plan.reason.startswith("b1 was")
    update = parse_improvement("Failed reason: x\nImprove: Update: pick_and_stack\nContent:\n" + FIXED)
    assert update is not None and update.kind == "update" and "def pick_and_stack" in update.content
    assert parse_improvement("I am not sure what went wrong.") is None


def test_the_score_counts_successful_learned_action_calls_per_call_and_per_step() -> None:
    invalid = "The action is not valid and therefore takes no effect."
    steps = [
        StepView(index=0, code="pick_and_stack('b1', 'b3')", observation=invalid, status="ok",
                 calls=[CallView(name="Pickup", args=["b1"], observation=invalid, valid=False)]),
        StepView(index=1, code="Pickup('b3')", observation="held", status="ok"),
        StepView(index=2, code="pick_and_stack('b3', 'b2')", observation="done", status="ok",
                 calls=[CallView(name="Pickup", args=["b3"], observation="held")]),
    ]  # fmt: skip
    trajectory = Trajectory(task=TASK, goal="g", initial="start", success=True, progress=1.0, steps=steps)
    scored, outcomes = score_trajectories([trajectory], {"pick_and_stack": 2, "unused": 1}, ("step_correction",
                                          "call_ratio", "success"), 0, 0)  # fmt: skip
    assert scored.score.components == {"step_correction": 0.5, "call_ratio": 1 / 3, "success": 1.0}
    assert scored.score.score == pytest.approx(0.5 + 1 / 3 + 1.0)
    assert scored.calls == {"pick_and_stack": 2, "unused": 0}
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].error == invalid and outcomes[0].primitive_steps == [f"Pickup('b1') -> {invalid}"]
    failure = scored.failure
    assert failure is not None and failure.name == "pick_and_stack" and failure.version == 2
    assert failure.history == "Observation: start\nAction: pick_and_stack('b1', 'b3')"


def test_a_call_is_scored_by_the_environments_own_verdict_whatever_its_text() -> None:
    # A plugin environment's words for a call that did not apply are its own: the verdict travels with the call.
    steps = [
        StepView(index=0, code="press_twice('x')", observation="The machine hums politely.", status="ok",
                 calls=[CallView(name="press", args=["x"], observation="The machine hums politely.", valid=False)]),
        StepView(index=1, code="press_twice('y')", observation="The action is not valid", status="ok",
                 calls=[CallView(name="press", args=["y"], observation="The action is not valid", valid=True)]),
    ]  # fmt: skip
    trajectory = Trajectory(task=TASK, goal="g", initial="start", success=False, progress=0.0, steps=steps)
    _, outcomes = score_trajectories([trajectory], {"press_twice": 1}, ("step_correction",), 0, 0)
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].error == "The machine hums politely."


def test_calls_refused_before_a_learned_call_first_acted_changed_nothing_and_do_not_fail_it() -> None:
    from learnact.envs import counted_refusals, step_worked

    # go_and_carry moves to the ball's room first: refused where the robot is there already, and harmless
    refused, moved = "The action is not valid and therefore takes no effect.", "Robby is at rooma."
    steps = [
        StepView(index=0, code="go_and_carry('ball1', 'rooma', 'roomb', 'left')", observation="x", status="ok",
                 calls=[CallView(name="move", args=["roomb", "rooma"], observation=refused, valid=False),
                        CallView(name="pick", args=["ball1", "rooma", "left"], observation="held"),
                        CallView(name="move", args=["rooma", "roomb"], observation="moved"),
                        CallView(name="drop", args=["ball1", "roomb", "left"], observation="dropped")]),
        # refused after it acted: the ball was not there, the robot went on without it
        StepView(index=1, code="go_and_carry('ball9', 'roomb', 'rooma', 'left')", observation="y", status="ok",
                 calls=[CallView(name="move", args=["rooma", "roomb"], observation=moved),
                        CallView(name="pick", args=["ball9", "roomb", "left"], observation=refused + "!", valid=False),
                        CallView(name="move", args=["roomb", "rooma"], observation=moved),
                        CallView(name="drop", args=["ball9", "rooma", "left"], observation=refused, valid=False)]),
    ]  # fmt: skip
    trajectory = Trajectory(task=TASK, goal="g", initial="start", success=False, progress=0.0, steps=steps)
    _, outcomes = score_trajectories([trajectory], {"go_and_carry": 1}, ("step_correction",), 0, 0)
    assert [o.ok for o in outcomes] == [True, False]
    assert outcomes[1].error == refused + "!"  # the first refusal that counts
    assert counted_refusals([False, True, False, True, False]) == [2, 4] and counted_refusals([False, False]) == [0, 1]
    assert step_worked([False, True, True]) and not step_worked([False, False]) and not step_worked([])
    assert not step_worked([True, False]) and step_worked([True])


def test_a_learned_action_call_that_calls_no_primitive_action_did_nothing_and_failed() -> None:
    steps = [
        StepView(index=0, code="clear_tower(['b3', 'b2'])", observation="Nothing was done.", status="ok"),
        StepView(index=1, code="clear_tower(['b2', 'b1'])", observation="b2 is on the table.", status="ok",
                 calls=[CallView(name="Unstack", args=["b2", "b1"], observation="b2 is held."),
                        CallView(name="Putdown", args=["b2"], observation="b2 is on the table.")]),
    ]  # fmt: skip
    trajectory = Trajectory(task=TASK, goal="g", initial="start", success=False, progress=0.0, steps=steps)
    scored, outcomes = score_trajectories([trajectory], {"clear_tower": 1}, ("step_correction", "call_ratio"), 0, 0)
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].error == "it did nothing: no primitive action was called inside it"
    assert scored.score.components["step_correction"] == 0.5 and scored.failure is not None


def test_the_optimise_request_shows_the_first_substeps_of_a_long_failed_call_and_the_audit_keeps_all() -> None:
    """A loop over a 20-item list ran 38 primitive calls; the first ones say what went wrong."""
    invalid = "The action is not valid and therefore takes no effect."
    calls = [CallView(name="Unstack", args=[f"b{i}", f"b{i + 1}"], observation=invalid, valid=False) for i in range(38)]
    steps = [StepView(index=0, code="clear_tower([...])", observation=invalid, status="ok", calls=calls)]
    trajectory = Trajectory(task=TASK, goal="g", initial="start", success=False, progress=0.0, steps=steps)
    scored, outcomes = score_trajectories([trajectory], {"clear_tower": 1}, ("step_correction",), 0, 0)
    assert scored.failure is not None
    assert scored.failure.substeps == (
        *(f"Unstack('b{i}', 'b{i + 1}') -> {invalid}" for i in range(MAX_SHOWN_SUBSTEPS)),
        f"({38 - MAX_SHOWN_SUBSTEPS} more primitive calls ran)",
    )
    assert len(outcomes[0].primitive_steps) == 38


def test_a_finding_repeated_on_many_lines_is_shown_once_with_its_count() -> None:
    from learnact.actions import check
    from learnact.actions.models import CodeKind
    from learnact.envs import primitive_specs
    from learnact.learner.validation import shown_findings

    body = "".join("    gripper_free(room)\n" for _ in range(300))
    code = f'def carry(room):\n    """Carry."""\n    move(room, room)\n{body}    pick(room, room, room)\n'
    findings = check(code, CodeKind.action_module, primitive_specs("pddl/gripper"))
    assert len([f for f in findings if "gripper_free" in f.message]) == 300
    shown = [line for line in shown_findings(findings, "carry.py") if "gripper_free" in line]
    assert len(shown) == 1 and shown[0].startswith("carry.py:4:5: LA006 'gripper_free' is not defined")
    assert shown[0].endswith("(and on 299 more lines: 303 the last)")


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_validation_refuses_an_action_whose_example_calls_no_primitive_action() -> None:
    from learnact.envs.pddl import PddlEnv
    from learnact.learner.validation import SandboxValidator
    from learnact.sandbox import Sandbox

    never = (
        "```python\ndef clear_tower(blocks):\n"
        "    \"\"\"Put the blocks of a tower on the table.\n    Example: clear_tower(['b2', 'b1', 'b3'])\n    \"\"\"\n"
        "    for upper, lower in zip(blocks, blocks[1:]):\n        if lower not in blocks:\n"
        "            Unstack(upper, lower)\n            Putdown(upper)\n```"
    )
    fixed = never.replace("        if lower not in blocks:\n    ", "    ")
    fixed = fixed.replace("\n            Putdown", "\n        Putdown")
    env = PddlEnv.demonstration("blockworld")
    (task,) = env.tasks()
    with Sandbox(SandboxConfig(pool_size=0)) as sandbox:
        validator = SandboxValidator(sandbox, env, task.id)
        refused = validator.problems(parse_actions(never, PRIMITIVES, 8).actions)
        kept = validator.problems(parse_actions(fixed, PRIMITIVES, 8).actions)
    assert refused["clear_tower"].text.startswith(
        "running the usage example clear_tower(['b2', 'b1', 'b3']) did nothing: no primitive action was called"
    )
    assert kept == {}


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_validation_refuses_an_example_that_changes_no_state_of_the_demonstration() -> None:
    from learnact.engine.runs.learnact_run import demo_task
    from learnact.learner.validation import SandboxValidator
    from learnact.sandbox import Sandbox

    def action(name: str, body: str, example: str) -> str:
        return f'def {name}(blocks):\n    """Doc.\n    Example: {example}\n    """\n{body}'

    loop = "    for upper, lower in zip(blocks, blocks[1:]):\n        Unstack(upper, lower)\n        Putdown(upper)\n"
    answer = "```python\n" + "\n".join([
        # a block is never on itself: refused in every state
        action("unstack_all", "    for block in blocks:\n        Unstack(block, block)\n        Stack(block, block)\n",
               "unstack_all(['b2', 'b1'])"),
        # a good function whose example names a tower no state has (b3 is never on b2, nor held)
        action("clear_tower", loop, "clear_tower(['b3', 'b2'])"),
        # refused at the start (b3 is covered) and accepted once the solution has cleared b3
        action("pick_and_stack", "    Pickup(blocks[0])\n    Stack(blocks[0], blocks[1])\n",
               "pick_and_stack(['b3', 'b2'])"),
        # Stack then Unstack: accepted once b1 is held and b2 clear, and back where it started
        action("move_block", "    Stack(blocks[0], blocks[1])\n    Unstack(blocks[0], blocks[1])\n",
               "move_block(['b1', 'b2'])"),
        # undoes itself at the start: judged on any example task
        action("lift", "    Unstack(blocks[0], blocks[1])\n    Stack(blocks[0], blocks[1])\n", "lift(['b2', 'b1'])"),
        # its last call is refused (b2 is on the table by then), the first two are accepted at the start
        action("clear_top", "    Unstack(blocks[0], blocks[1])\n    Putdown(blocks[0])\n    Putdown(blocks[0])\n",
               "clear_top(['b2', 'b1'])"),
    ]) + "```"  # fmt: skip
    env = make_env(BLOCKS)
    demo = demo_task(env, BLOCKS, "blockworld", ())  # b2 on b1 on b3, b3 on the table; the goal: b2 on b3
    example_env = demo.open_env()
    assert example_env is not None
    actions = parse_actions(answer, PRIMITIVES, 8).actions
    with Sandbox(SandboxConfig(pool_size=0)) as sandbox:
        problems = SandboxValidator(sandbox, example_env, demo.task, demo.calls).problems(actions)
        # an example task the model was not shown: its states unknown to the model, refusals are not judged
        unjudged = SandboxValidator(sandbox, example_env, demo.task).problems(actions)
    assert sorted(problems) == ["clear_tower", "lift", "move_block", "unstack_all"]
    assert problems["unstack_all"].text.startswith(
        "running the usage example unstack_all(['b2', 'b1']) changed nothing: the environment refused all 4 of its"
        " primitive calls at the start of the example task (the first: Unstack('b2', 'b2') -> The action is not"
        " valid"
    )
    assert (
        f"and every call in each of the {demo.steps} states the solution passes through" in problems["unstack_all"].text
    )
    refusal = problems["clear_tower"].text
    assert "(the first: Unstack('b3', 'b2') -> The action is not valid" in refusal
    assert "Not true now: b3 is on b2" in refusal  # the environment's own reason
    assert "make the docstring's example a call that works there" in refusal
    assert problems["move_block"].text == (
        "running the usage example move_block(['b1', 'b2']) changed nothing: after 3 step(s) of the demonstration's"
        " solution the environment accepted Stack('b1', 'b2') then Unstack('b1', 'b2'), and the state they left is"
        " the state they found (calls that undo each other do nothing); make it end in another state"
    )
    assert problems["lift"].text.startswith(
        "running the usage example lift(['b2', 'b1']) changed nothing: at the start of the example task the"
        " environment accepted Unstack('b2', 'b1') then Stack('b2', 'b1'), and the state they left"
    )
    assert all(p.needs_fix for p in problems.values())
    assert {name: p.text for name, p in unjudged.items()} == {"lift": problems["lift"].text}


def test_the_defaults_follow_the_domain() -> None:
    assert LearnactConfig.for_env("pddl/gripper").score_terms == ("step_correction", "call_ratio", "success")
    alfworld = LearnactConfig.for_env("alfworld/pick_and_place", samples=2)
    assert (alfworld.style, alfworld.score_terms, alfworld.history, alfworld.samples) == (
        "decompose", ("call_ratio", "success"), "full", 2,
    )  # fmt: skip


def test_alfworld_create_prompt_decomposes_the_demonstrated_plan(alfworld_data: Path) -> None:
    from learnact.engine.agents.prompts import demonstration
    from learnact.engine.runs.learnact_run import LearnactPrompts, demo_task
    from learnact.envs import make_env

    spec = EnvSpec(name="alfworld/clean", alfworld_data=str(alfworld_data), split="valid_seen")
    env = make_env(spec)
    train = [t.id for t in env.tasks()][:3]
    demo = demo_task(env, spec, "clean", train)
    prompts = LearnactPrompts(env, "clean", LearnactConfig.for_env(env.name), demo.text)
    system, user = (m.content for m in prompts.create(0))
    assert "goto(" in system and "clean(" in system  # the primitive API
    assert "Split the solution above into its high-level steps" in user  # ALFWorld's default style
    stored = demonstration(env.name, "clean", False)
    assert stored is not None and f"{stored.goal}\nObservation: {stored.initial}\nAction: " in user
    # the demonstration's own game opens, from the training games, to try learned actions on
    opened = demo.open_env()
    assert opened is not None and demo.task == stored.task and opened.reset(demo.task).goal == stored.goal


def test_a_domain_without_a_stored_demonstration_is_shown_the_expert_on_an_unseen_task(tmp_path: Path) -> None:
    from learnact.engine.runs.learnact_run import demo_task
    from learnact.envs import make_env

    builtin = Path(__file__).resolve().parents[1] / "envs" / "pddl"
    domain = tmp_path / "towers.pddl"
    domain.write_text((builtin / "domains" / "blockworld.pddl").read_text().replace("blocksworld-4ops", "towers"))
    problems = []
    for number in (1, 2):
        problem = tmp_path / f"towers-0{number}.pddl"
        text = (builtin / "problems" / "blockworld" / f"blockworld-0{number}.pddl").read_text()
        problem.write_text(text.replace("blocksworld-4ops", "towers").replace("blockworld-0", "towers-0"))
        problems.append(str(problem))
    spec = EnvSpec(name="pddl", pddl_domain=str(domain), pddl_problems=tuple(problems))
    env = make_env(spec)
    task_type = env.tasks()[0].type
    demo = demo_task(env, spec, task_type, ["towers-01"])
    shown = demo.text
    assert demo.task == "towers-02" and demo.open_env().reset("towers-02").goal in shown  # tried on the same task
    unseen = env.reset("towers-02")
    assert f"{unseen.goal}\nObservation: {unseen.observation}\nAction: " in shown
    assert env.reset("towers-01").goal not in shown


# --- whole runs in the sandbox ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_learning_run_fixes_annotates_selects_and_is_used_at_test_time(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedServer(responder=StandIn()) as server:
        result = learn(server, out, ResponseCache(tmp_path / "cache"))

        # The first answer failed in the sandbox: the next prompt holds the real traceback and finding.
        asked = learner_requests(server)
        fix_prompt = asked[1]["messages"][-1]["content"]
        assert "could not be used" in fix_prompt
        assert "ValueError: invalid literal for int() with base 10: 'b3'" in fix_prompt
        assert "Traceback" in fix_prompt and "line" in fix_prompt
        assert "In clear_block:" in fix_prompt and "os" in fix_prompt
        assert asked[1]["messages"][-2] == {"role": "assistant", "content": BUGGY}
        # the create request samples; the fix follows the feedback at temperature 0
        assert (asked[0]["temperature"], asked[1]["temperature"]) == (0.7, 0.0)
        # the scoring agent saw the candidate at work before its first step
        scoring = [r.body for r in server.received if not r.body["messages"][0]["content"].startswith("You design")]
        assert "Here is a task solved with the learned actions" in scoring[0]["messages"][-1]["content"]
        # create and fix answers are asked under the grammar of function definitions, the usage demonstration under
        # one of call lines; the optimise answer (a reason and Update or Plan) is free text
        assert [body.get("grammar") for body in asked[:2]] == [definitions_grammar(LearnactConfig().max_actions)] * 2
        usage = [body for body in asked[2:] if "Rewrite that solution" in body["messages"][1]["content"]]
        assert usage and all('call ::= name "(" args? ")"' in body["grammar"] for body in usage)
        assert all("grammar" not in body for body in asked[2:] if body not in usage)
        optimise_prompt = asked[4]["messages"][-1]["content"]
        assert "That call of pick_and_stack failed: The action is not valid" in optimise_prompt
        assert "Pickup('b1') -> The action is not valid" in optimise_prompt

        library = Library.open_existing(out / "library")
        history = library.versions("pick_and_stack")
        assert [(v.version, v.origin, v.parent) for v in history] == [
            (1, Origin.created, None), (2, Origin.validated_fix, 1), (3, Origin.plan_note, 2),
        ]  # fmt: skip
        assert history[0].dropped is None and history[1].feedback is not None
        assert history[1].feedback.kind == "traceback" and "invalid literal for int()" in history[1].feedback.text
        assert history[0].call_id == "create/s0/t0" and history[1].call_id == "create/s0/t1"
        assert history[2].notes == (NOTE,) and history[2].code == history[1].code
        assert "-    return int(top)" in library.diff("pick_and_stack", 1, 2)
        assert NOTE in library.diff("pick_and_stack", 2, 3)
        clear = library.versions("clear_block")
        assert clear[1].feedback is not None and clear[1].feedback.kind == "finding"
        assert clear[-1].dropped is None  # never called while scoring, yet kept: the best set is kept whole

        # Selection by score: the Plan note made the agent call the action right (3.0 against 2.0); the
        # round after it had nothing failed, so learning stopped early.
        rounds = library.rounds()
        assert [r.best_score for r in rounds] == [2.0, 3.0] and rounds[1].best == 1 and not rounds[1].rolled_back
        assert result.selected == {"pick_and_stack": 3, "clear_block": clear[-1].version} == library.selected()
        outcomes = library.outcomes("pick_and_stack")
        assert [(o.round, o.candidate, o.ok) for o in outcomes][:2] == [(0, 0, False), (0, 0, True)]
        calls = [json.loads(line)["episode"] for line in (out / CALLS).read_text().splitlines()]
        # The candidate's usage demonstration is asked for before it is scored; the Plan note's set has the same
        # code and is shown the same demonstration, as is the selected set.
        assert calls == [
            "learn:create/s0/t0", "learn:create/s0/t1", "learn:usage/r0/c0", "learn:usage/r0/c0-fix-1",
            "learn:r1/optimise/s0/t0",
        ]  # fmt: skip

        # The candidate at work: its first rewrite failed in the sandbox, and the failure went back to the
        # model; the second reached the demonstration's goal, with the environment's own observations.
        usage_fix = asked[3]["messages"][-1]["content"]
        assert "line 1, `pick_and_stack('b2', 'b3')`, failed. Before it: " in usage_fix  # the state it met
        assert "Inside it: Pickup('b2') -> The action is not valid" in usage_fix  # the primitive call that failed
        assert asked[3]["messages"][-2]["content"] == USAGE_WRONG  # the last answer only, sampled again
        usage = library.current().usage
        assert usage is not None and usage.task == "blockworld-demo"
        assert [step.code for step in usage.steps] == USAGE.split("\n")[1:-1]
        assert "b2 is on b3" in usage.steps[-1].observation and usage.goal.endswith("b2 is on b3.")

        # At test time the selected set is loaded and shown, the fixed code runs.
        library, trained_on = learned_library(out)
        assert trained_on == (TASK,)
        config = json.loads((out / CONFIG).read_text())
        settings = config["run"] | {"method": "learnact", "max_steps": 5}
        test_run = EvalConfig.model_validate({"run": settings, "tasks": [TASK]})
        test_run = test_run.model_copy(update={"run": test_run.run.model_copy(update={"actions": library.current()})})
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=1)
        summary = run_evaluation(test_run, tmp_path / "test", backbone=backbone)
        assert summary.success_rate == 1.0
        record = next(iter(RunDir(tmp_path / "test").latest().values()))
        assert [s.code for s in record.steps] == ["pick_and_stack('b3', 'b2')"]
        # a learned action's step shows the state it left, not each state on the way (PDDL)
        (step,) = record.steps
        assert step.result is not None and len(step.result.calls) == 2
        assert step.observation == step.result.calls[-1].observation
        # the agent's step is asked under the grammar of one call of its actions, learned first
        learned = [action.name for action in library.current().actions]
        primitives = [p.name for p in make_env(BLOCKS).primitives()]
        objects = make_env(BLOCKS).reset(record.task).objects
        assert server.received[-1].body["grammar"] == call_grammar([*learned, *primitives], max_list_items=len(objects))
        assert server.received[-1].body["messages"][0]["content"].count(NOTE) == 1
        # the agent saw the usage demonstration before the primitive one
        prompt = server.received[-1].body["messages"][-1]["content"]
        shown_usage = prompt.index("Here is a task solved with the learned actions")
        assert shown_usage < prompt.index("Here is an example of a task solved this way")
        assert f"Action: clear_block('b1', 'b3')\nObservation: {usage.steps[1].observation}" in prompt

    # The audit page of this run shows it all: the versions and their origins, the traceback behind the fix,
    # the diff, the Plan note, the dropped action and why, the rounds.
    page = audit_html(build_audit(out))
    for shown_text in ("validated_fix", "plan_note", "invalid literal for int() with base 10: &#x27;b3&#x27;",
                       "-    return int(top)", "never called", "clear_block"):  # fmt: skip
        assert shown_text in page, shown_text
    assert html.escape(NOTE) in page


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.parametrize(("option", "placement"), [("chosen", "last"), ("first", "first"), ("last", "last"),
                                                  ("alone", "alone")])  # fmt: skip
def test_the_usage_demonstration_is_placed_where_the_selected_set_did_best_on_the_training_tasks(
    tmp_path: Path, option: str, placement: str
) -> None:
    out, lines = tmp_path / "run", []
    # an agent that calls the action right at once only when the usage demonstration is the last example it read
    with ScriptedServer(responder=StandIn(copies_last=True)) as server:
        learn(server, out, cache=None, progress=lines.append, rounds=0, usage_placement=option)
        library, _ = learned_library(out)
        usage = library.current().usage
        assert usage is not None and usage.placement == placement
        # chosen: the selected set was scored once more, on the same training tasks, for each other placement: 3.0
        # last and alone (its one call right) against 2.0 as it was scored first (a wrong call, then right); the
        # tie between last and alone keeps the earlier placement
        for other in ("last", "alone"):
            assert (out / "score" / f"usage-{other}").is_dir() is (option == "chosen")
        if option == "chosen":
            told = "first 2.000 (100% progress), last 3.000 (100% progress), alone 3.000 (100% progress)"
            assert f"usage demonstration placed last: the best set scored {told}" in lines
        assert library.score() == (2.0 if placement == "first" else 3.0)

        # At test time the agent reads the demonstrations as the library places them.
        config = json.loads((out / CONFIG).read_text())
        test_run = EvalConfig.model_validate({"run": config["run"] | {"max_steps": 5}, "tasks": [TASK]})
        test_run = test_run.model_copy(update={"run": test_run.run.model_copy(update={"actions": library.current()})})
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=1)
        run_evaluation(test_run, tmp_path / "test", backbone=backbone)
        prompt = server.received[-1].body["messages"][-1]["content"]
        assert usage_read_last(prompt) is (placement != "first")
        assert (PRIMITIVE_DEMONSTRATION in prompt) is (placement != "alone")


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_the_placement_is_chosen_before_the_optimisation_rounds_which_then_see_the_calls_it_brings(
    tmp_path: Path,
) -> None:
    out, lines = tmp_path / "run", []
    # an agent that ignores the learned action while its usage demonstration comes first, and calls it wrongly
    # when it reads the demonstration last
    with ScriptedServer(responder=StandIn(ignores_first=True)) as server:
        learn(server, out, cache=None, progress=lines.append, rounds=1)
        library, _ = learned_library(out)
    # placed first, round 0's best set was never called: nothing to optimise. Placed last (chosen after round 0),
    # its wrong call is the failure round 1 works on, and that round's candidates are scored placed last too.
    placed = next(i for i, line in enumerate(lines) if line.startswith("usage demonstration placed last"))
    optimised = next(i for i, line in enumerate(lines) if line.startswith("round 1: improving pick_and_stack"))
    scoring = next(i for i, line in enumerate(lines) if line.startswith("round 1: scoring candidate"))
    assert placed < optimised < scoring
    assert not any("nothing to optimise" in line for line in lines)
    calls = [json.loads(line)["episode"] for line in (out / CALLS).read_text().splitlines()]
    assert "learn:r1/optimise/s0/t0" in calls
    usage = library.current().usage
    assert usage is not None and usage.placement == "last"
    # the Plan note the failure brought made the agent call the action right: 3.0, kept
    assert NOTE in library.get("pick_and_stack", library.selected()["pick_and_stack"]).notes
    assert [r.best_score for r in library.rounds()] == [1.0, 3.0] and library.score() == 3.0
    agent_prompts = [
        r.body["messages"][-1]["content"] for r in server.received if r.body not in learner_requests(server)
    ]
    assert all(usage_read_last(prompt) for prompt in agent_prompts[-2:])  # round 1's scoring


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_samples_are_asked_for_different_kinds_of_improvement_and_a_set_written_twice_is_scored_once(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    with ScriptedServer(responder=StandIn()) as server:
        learn(server, out, cache=None, rounds=1, samples=3, usage_placement="first")
        optimise = [r for r in learner_requests(server) if "Improve: <Update or Plan>" in r["messages"][-1]["content"]]
    # the samples' Optimise prompts differ by the kind of answer they ask for, not by temperature alone
    asked = [r["messages"][-1]["content"] for r in optimise]
    assert len(asked) == 3
    assert "Choose whichever of Update and Plan fits this failure best." in asked[0]
    assert "This time answer with a Plan: a note that tells the agent what must be true before it calls" in asked[1]
    assert "This time answer with an Update: change the code of pick_and_stack" in asked[2]
    # the stand-in wrote the same functions for each Create sample and the same Plan note for each Optimise
    # sample: one set in round 0, and in round 1 that set and one with the note, each scored once
    state = json.loads((out / "learn_state.json").read_text())
    assert [len(state["candidates"][r]) for r in ("0", "1")] == [1, 2]
    assert sorted(state["scored"]) == ["0/0", "1/0", "1/1"]


def test_a_usage_placement_is_chosen_by_score_then_by_progress_then_in_the_papers_order() -> None:
    def scored(score: float, progress: float) -> CandidateScore:
        return CandidateScore(candidate=0, actions={}, score=score, components={}, successes=0, tasks=3,
                              progress=progress)  # fmt: skip

    # the paper's terms tie at zero when no learned call works: the agent that got further decides
    assert chosen_placement({"first": scored(0, 0.2), "last": scored(0, 0.1), "alone": scored(0, 0.3)}) == "alone"
    assert chosen_placement({"first": scored(0, 0.9), "last": scored(0.5, 0.0), "alone": scored(0, 0.3)}) == "last"
    assert chosen_placement({"first": scored(1, 0.5), "last": scored(1, 0.5), "alone": scored(1, 0.5)}) == "first"
    assert chosen_placement({"first": scored(0, 0.0), "last": scored(0, 0.4), "alone": scored(0, 0.4)}) == "last"


def test_the_usage_placement_is_an_option_of_learning_actions_only(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app

    args = ["learn", "--method", "act_reflexion", "--env", "pddl/blockworld", "--model", "m", "--usage-placement"]
    result = CliRunner().invoke(app, [*args, "last", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "--usage-placement: reflexion learns notes, not actions" in result.output
    wrong = CliRunner().invoke(app, ["learn", "--method", "learnact", "--env", "pddl/blockworld", *args[-1:], "x"])
    assert wrong.exit_code == 2 and all(name in wrong.output for name in ("first", "last", "alone", "chosen"))


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_function_the_fixed_answer_leaves_out_is_dropped_with_the_reason(tmp_path: Path) -> None:
    only_one = FIXED[: FIXED.index("def clear_block")].rstrip() + "\n```"  # the fix renames nothing, drops one
    with ScriptedServer(responder=StandIn(fix=only_one)) as server:
        learn(server, tmp_path / "run", cache=None, rounds=0)
    library = Library.open_existing(tmp_path / "run" / "library")
    clear = library.versions("clear_block")
    assert [(v.origin, v.parent, v.call_id) for v in clear] == [
        (Origin.created, None, "create/s0/t0"), (Origin.validated_fix, 1, "create/s0/t1"),
    ]  # fmt: skip
    assert clear[-1].code == clear[0].code
    assert clear[-1].dropped == "the model's last answer (create/s0/t1) left clear_block out (renamed or removed)"
    assert "clear_block" not in library.selected()


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_learning_where_no_candidate_passes_validation_ends_with_no_action_kept(tmp_path: Path) -> None:
    lines: list[str] = []
    with ScriptedServer(responder=StandIn(fix=BUGGY)) as server:  # every fix repeats both failing functions
        result = learn(server, tmp_path / "run", cache=None, progress=lines.append, rounds=0)
    assert result.selected == {} and "none of the 1 candidate action sets passed validation" in lines
    library = Library.open_existing(tmp_path / "run" / "library")
    assert library.selected() == {} and all(library.versions(n)[-1].dropped for n in library.names())
    assert learned_library(tmp_path / "run")[0].current().actions == ()  # finished: eval may use it


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_function_that_still_fails_after_every_fix_is_dropped_with_the_reason(tmp_path: Path) -> None:
    still_importing = BUGGY.replace("    return int(top)\n", "")  # clear_block keeps its `import os`
    with ScriptedServer(responder=StandIn(fix=still_importing)) as server:
        result = learn(server, tmp_path / "run", cache=None, rounds=0)
        fixes = [b for b in learner_requests(server) if "could not be used" in b["messages"][-1]["content"]]
    # the second fix repeats the first: asking again would send the same request at temperature 0
    assert len(fixes) == 2
    library = Library.open_existing(tmp_path / "run" / "library")
    clear = library.versions("clear_block")
    assert [(v.origin, v.call_id) for v in clear] == [
        (Origin.created, "create/s0/t0"),
        (Origin.validated_fix, "create/s0/t1"),
    ]
    assert clear[-1].dropped is not None and "os" in clear[-1].dropped and clear[-1].verdict
    assert result.selected == {"pick_and_stack": 2}


TAKE_OFF = FIXED.split("def clear_block", 1)[1].split("```")[0].replace("clear_block(", "take_off(")
RESET_PAIR = '''def reset_pair(block, under):
    """Take block off the block under it, then pick it up again from the table.
    Example: reset_pair('b2', 'b1')
    """
    take_off(block, under)
    Pickup(block)
'''


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_duplicate_is_dropped_with_the_reason_and_no_fix_is_asked_for_it(tmp_path: Path) -> None:
    with_copy = FIXED.replace("\n```", f"\n\ndef take_off{TAKE_OFF}```")
    with ScriptedServer(responder=StandIn(create=with_copy)) as server:
        result = learn(server, tmp_path / "run", cache=None, rounds=0)
        fixes = [b for b in learner_requests(server) if "could not be used" in b["messages"][-1]["content"]]
    assert fixes == []
    library = Library.open_existing(tmp_path / "run" / "library")
    (take_off,) = library.versions("take_off")
    assert take_off.dropped is not None and "take_off does what clear_block does" in take_off.dropped
    assert result.selected == {"pick_and_stack": 1, "clear_block": 1}


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_duplicate_another_function_calls_is_sent_back_to_call_the_original(tmp_path: Path) -> None:
    with_copy = FIXED.replace("\n```", f"\n\ndef take_off{TAKE_OFF}\n{RESET_PAIR}```")
    fixed = FIXED.replace("\n```", f"\n\n{RESET_PAIR.replace('take_off(', 'clear_block(')}```")
    with ScriptedServer(responder=StandIn(create=with_copy, fix=fixed)) as server:
        result = learn(server, tmp_path / "run", cache=None, rounds=0)
        fixes = [b for b in learner_requests(server) if "could not be used" in b["messages"][-1]["content"]]
    assert len(fixes) == 1
    assert "remove take_off and call clear_block in reset_pair instead" in fixes[0]["messages"][-1]["content"]
    library = Library.open_existing(tmp_path / "run" / "library")
    assert "take_off" not in library.selected() and "clear_block(block, under)" in library.get("reset_pair", 2).code
    assert result.selected == {"pick_and_stack": 1, "clear_block": 1, "reset_pair": 2}


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_function_with_a_problem_fails_its_callers_and_no_other_function(tmp_path: Path) -> None:
    helper = '''def lift(block):
    """Pick a block up from the table and put it down again.
    Example: lift('b2')
    """
    import os
    Pickup(block)
    Putdown(block)
'''
    with_helper = FIXED.replace(
        "\n```", f"\n\n{helper}\n{RESET_PAIR.replace('take_off(block, under)', 'lift(block)')}```"
    )
    with ScriptedServer(responder=StandIn(create=with_helper, fix=with_helper)) as server:
        result = learn(server, tmp_path / "run", cache=None, rounds=0)
        (fix,) = [b for b in learner_requests(server) if "could not be used" in b["messages"][-1]["content"]]
    shown = fix["messages"][-1]["content"]
    assert "In lift:" in shown and "reset_pair calls lift, which cannot be used as written" in shown
    assert "In pick_and_stack:" not in shown and "In clear_block:" not in shown
    library = Library.open_existing(tmp_path / "run" / "library")
    assert library.versions("reset_pair")[-1].dropped == "reset_pair calls lift, which cannot be used as written"
    assert result.selected == {"pick_and_stack": 1, "clear_block": 1}


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_learning_run_drops_a_function_that_changes_no_state_of_its_demonstration(tmp_path: Path) -> None:
    idle = '''def shuffle(block):
    """Lift a block and put it back where it was.
    Example: shuffle('b2')
    """
    Unstack(block, 'b1')
    Stack(block, 'b1')
'''
    nowhere = '''def unstack_self(block):
    """Take a block off itself.
    Example: unstack_self('b2')
    """
    Unstack(block, block)
    Stack(block, block)
'''
    answer = FIXED.replace("\n```", f"\n\n{idle}\n{nowhere}```")
    with ScriptedServer(responder=StandIn(create=answer, fix=answer)) as server:
        result = learn(server, tmp_path / "run", cache=None, rounds=0)
        (fix,) = [b for b in learner_requests(server) if "could not be used" in b["messages"][-1]["content"]]
    because = (
        "running the usage example shuffle('b2') changed nothing: at the start of the example task the environment"
        " accepted Unstack('b2', 'b1') then Stack('b2', 'b1')"
    )
    assert because in fix["messages"][-1]["content"]
    # refused in every state the demonstration's solution passes through (the learner gave the validator its calls)
    assert (
        "unstack_self('b2') changed nothing: the environment refused all 2 of its primitive calls"
        in (fix["messages"][-1]["content"])
    )
    # pick_and_stack's example fits no state before the solution clears b3: judged there, and kept
    assert "In pick_and_stack:" not in fix["messages"][-1]["content"]
    library = Library.open_existing(tmp_path / "run" / "library")
    assert (library.versions("shuffle")[-1].dropped or "").startswith(because)
    assert library.versions("unstack_self")[-1].dropped is not None
    assert result.selected == {"pick_and_stack": 1, "clear_block": 1}


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_function_that_calls_a_refused_redefinition_of_a_primitive_calls_the_primitive() -> None:
    from learnact.engine.runs.learnact_run import demo_task
    from learnact.learner.validation import SandboxValidator
    from learnact.sandbox import Sandbox

    # the local model's gripper answer: the primitives redefined (printing), and a good action over their names
    answer = """```python
def pick(obj, room, gripper):
    \"\"\"Pick up the object.
    Example: pick('ball2', 'rooma', 'left')
    \"\"\"
    print(f"pick('{obj}', '{room}', '{gripper}')")

def carry(obj, from_room, to_room, gripper):
    \"\"\"Pick an object up in one room, carry it to another room and drop it there.
    Example: carry('ball2', 'rooma', 'roomb', 'left')
    \"\"\"
    pick(obj, from_room, gripper)
    move(from_room, to_room)
    drop(obj, to_room, gripper)

def carry_twice(obj, from_room, to_room, gripper):
    \"\"\"Carry there and back, with an import the checker refuses.
    Example: carry_twice('ball2', 'rooma', 'roomb', 'left')
    \"\"\"
    import os
    carry(obj, from_room, to_room, gripper)
    carry(obj, to_room, from_room, gripper)

def carry_back(obj, from_room, to_room, gripper):
    \"\"\"Carry an object there and back.
    Example: carry_back('ball2', 'rooma', 'roomb', 'left')
    \"\"\"
    carry_twice(obj, from_room, to_room, gripper)
    move(from_room, to_room)
```"""
    spec = EnvSpec(name="pddl/gripper")
    demo = demo_task(make_env(spec), spec, "gripper", ())
    example_env = demo.open_env()
    assert example_env is not None
    parsed = parse_actions(answer, ("move", "pick", "drop"), 8)
    with Sandbox(SandboxConfig(pool_size=0)) as sandbox:
        validator = SandboxValidator(sandbox, example_env, demo.task, demo.calls)
        problems = validator.problems(parsed.actions, parsed.problems)
    assert sorted(problems) == ["carry_back", "carry_twice", "pick"]
    assert problems["pick"].text.startswith("pick is a primitive action's name")
    # pick is never loaded, so carry's pick(...) is the primitive: carry passed (it was refused as "carry calls
    # pick, which cannot be used as written", and with it every gripper action of the answer)
    assert problems["carry_back"].text == "carry_back calls carry_twice, which cannot be used as written"


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_round_that_scores_lower_is_rolled_back(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedServer(responder=StandIn(worse_on_repeat=True, improve=UPDATE)) as server:
        result = learn(server, out, cache=None, rounds=1)
    library = Library.open_existing(out / "library")
    updated = library.get("pick_and_stack", 3)  # the Update answer, validated in the sandbox like any other
    assert (updated.origin, updated.parent, updated.call_id, updated.round) == (
        Origin.update,
        2,
        "r1/optimise/s0/t0",
        1,
    )
    assert updated.code == CHECKED and updated.feedback is not None and updated.feedback.kind == "failed_call"
    assert "Failed reason: b1 was covered." in updated.feedback.text and "Action: pick_and_stack('b1', 'b3')" in (
        updated.feedback.trajectory
    )
    rounds = library.rounds()
    assert rounds[1].rolled_back and rounds[1].best_score == rounds[0].best_score == 2.0
    assert max(c.score for c in rounds[1].candidates) < 2.0
    restored = library.versions("pick_and_stack")[-1]
    assert (restored.version, restored.origin, restored.parent, restored.call_id) == (4, Origin.rollback, 2, None)
    clear = library.versions("clear_block")[-1]
    assert clear.origin is Origin.rollback
    assert result.selected == {"pick_and_stack": restored.version, "clear_block": clear.version}


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_an_interrupted_run_resumes_without_asking_the_model_again(tmp_path: Path) -> None:
    out, cache = tmp_path / "run", ResponseCache(tmp_path / "cache")

    def stop_at_the_second_round(line: str) -> None:
        if line.startswith("round 1: scoring"):
            raise KeyboardInterrupt

    with ScriptedServer(responder=StandIn()) as server:
        with pytest.raises(KeyboardInterrupt):
            learn(server, out, cache, progress=stop_at_the_second_round)
        before = len(server.received)
        written = len(Library(out / "library").versions("pick_and_stack"))
        result = learn(server, out, cache)
        bodies = [json.dumps(r.body, sort_keys=True) for r in server.received]
    assert len(set(bodies)) == len(bodies), "a request was sent twice"
    assert len(server.received) > before  # the rest of the run was new work
    assert result.selected["pick_and_stack"] == 3 and set(result.selected) == {"pick_and_stack", "clear_block"}
    calls = [json.loads(line)["episode"] for line in (out / CALLS).read_text().splitlines()]
    assert len(calls) == len(set(calls)) == 5  # create, its fix, the candidate's usage and its fix, optimise
    library = Library(out / "library")
    assert len(library.versions("pick_and_stack")) == written == 3  # nothing written twice
    assert [r.round for r in library.rounds()] == [0, 1]


def test_a_retry_is_rebuilt_from_the_first_prompt_the_last_answer_and_its_problems(tmp_path: Path) -> None:
    still_buggy = BUGGY.replace("int(top)", "int(bottom)")  # a second answer that fails again
    answers = iter([BUGGY, still_buggy])

    def stand_in(body: dict) -> Answer:
        if body["messages"][0]["content"].startswith("You design reusable actions"):
            return Answer(next(answers, FIXED))
        return StandIn()(body)

    with ScriptedServer(responder=stand_in) as server:
        learn(server, tmp_path / "run", None, rounds=0)
        asked = learner_requests(server)
    create, first_fix, second_fix = asked[:3]
    assert len(first_fix["messages"]) == len(second_fix["messages"]) == len(create["messages"]) + 2
    assert second_fix["messages"][:2] == create["messages"]  # the create prompt, not every answer so far
    assert second_fix["messages"][2] == {"role": "assistant", "content": still_buggy}
    assert all(message["content"] != BUGGY for message in second_fix["messages"])  # the first answer is gone
    assert second_fix["temperature"] == first_fix["temperature"] == 0.0


def test_samples_differ_by_what_their_prompt_asks_to_look_for_first() -> None:
    from learnact.engine.runs.learnact_run import LearnactPrompts
    from learnact.envs import make_env

    env = make_env(BLOCKS)
    prompts = LearnactPrompts(env, "blockworld", LearnactConfig.for_env(env.name), "DEMO")
    users = [prompts.create(sample)[1].content for sample in range(4)]
    assert len(set(users)) == 4 and all("Look first for" in user for user in users)


def test_the_learner_temperature_is_a_setting_with_a_low_default_for_the_local_model() -> None:
    server = ModelSettings(model="m", base_url="http://x/v1")
    local = ModelSettings(model="local")
    config = LearnactConfig.for_env(BLOCKS.name)
    temperature = {
        (agent.model, given): learnact_run_config(
            *agent_run(BLOCKS, agent, (TASK,)), config, learner_temperature=given
        ).learner.temperature
        for agent in (server, local)
        for given in (None, 0.0)
    }
    assert temperature == {("m", None): 0.7, ("m", 0.0): 0.0, ("local", None): 0.2, ("local", 0.0): 0.0}


def test_a_library_whose_learning_has_not_finished_is_not_taken_for_a_result(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app

    out, cache, runner = tmp_path / "run", ResponseCache(tmp_path / "cache"), CliRunner()

    def stop_at_the_second_round(line: str) -> None:
        if line.startswith("round 1: scoring"):
            raise KeyboardInterrupt

    def cli(*args: str):
        return runner.invoke(app, [*args], env={"COLUMNS": "300"})

    with ScriptedServer(responder=StandIn()) as server:
        with pytest.raises(KeyboardInterrupt):
            learn(server, out, cache, progress=stop_at_the_second_round)
        assert Library(out / "library").selected()  # round 0 chose a best set so far
        use = ["eval", "--method", "learnact", "--env", "pddl/blockworld", "--tasks", TASK, "--seeds", "1"]
        use += ["--model", "m", "--base-url", server.base_url, "--library", str(out), "--out", str(tmp_path / "t")]
        refused = cli(*use)
        assert refused.exit_code == 2
        assert "is not a result yet: learning not finished (round 0 of 2)" in refused.stderr
        assert "--interim" in refused.stderr
        interim = cli(*use, "--interim")
        assert interim.exit_code == 0, interim.output
        assert "evaluating the set selected so far: learning not finished (round 0 of 2)" in interim.stderr
        assert "the set selected so far (learning not finished (round 0 of 2))" in cli("audit", str(out)).stdout
        assert "learning not finished (round 0 of 2)" in cli("actions", "list", str(out)).stdout
        assert (
            "learning not finished (round 0 of 2); its selected set is the best so far"
            in cli("report", str(out)).output
        )
        learn(server, out, cache)  # the same run, finished
    assert Library(out / "library").learning() == LearningProgress(finished=True, round=1, rounds=2)
    audit = cli("audit", str(out)).stdout
    assert "the selected set's score" in audit and "not finished" not in audit


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_learn_then_eval_with_the_library_through_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app

    out, runner = tmp_path / "run", CliRunner()
    with ScriptedServer(responder=StandIn()) as server:
        common = ["--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        args = ["learn", "--method", "learnact", "--env", "pddl/blockworld", "--model", "m", "--learner-model", "w"]
        args += ["--seed", "2", "--train-per-type", "1", "--samples", "1", "--out", str(out), *common]  # blockworld-01
        learned = runner.invoke(app, args)
        assert learned.exit_code == 0, learned.output
        assert "create: sample 1 of 1" in learned.stderr and "round 1: best candidate 2, score 3.000" in learned.stderr
        models = {r.body["model"] for r in server.received if r.body["messages"][0]["content"].startswith("You design")}
        assert models == {"w"}
        assert json.loads((out / CONFIG).read_text())["train"] == [TASK]

        args = ["eval", "--method", "learnact", "--env", "pddl/blockworld", "--tasks", TASK, "--seeds", "1"]
        args += ["--model", "m", "--library", str(out), "--out", str(tmp_path / "test"), "--json", *common]
        tested = runner.invoke(app, args)
        assert tested.exit_code == 0, tested.output
        assert json.loads(tested.stdout)["success_rate"] == 1.0
        # the mechanism, measured: the agent's steps called the learned action, and each call worked (and so acted)
        (record,) = [json.loads(line) for line in (tmp_path / "test" / "episodes.jsonl").read_text().splitlines()]
        code_steps = [s for s in record["steps"] if s["result"] is not None]
        learned = [s for s in code_steps if s["code"].startswith("pick_and_stack(")]
        assert learned and record["learned"] == {
            "code_steps": len(code_steps), "learned_steps": len(learned), "learned_ok": len(learned),
            "learned_acted": len(learned),
        }  # fmt: skip
        assert json.loads(tested.stdout)["learned"] == record["learned"]
        config = json.loads((tmp_path / "test" / "config.json").read_text())
        # the best set whole: the action the agent called, fixed, and the one it never needed
        assert [(a["name"], a["version"]) for a in config["run"]["actions"]["actions"]] == [
            ("pick_and_stack", 3),
            ("clear_block", 2),
        ]
        assert config["run"]["trained_on"] == [TASK]

    missing = runner.invoke(app, ["eval", "--method", "learnact", "--env", "pddl/blockworld", "--model", "m"])
    assert missing.exit_code == 2 and "--library RUN" in missing.stderr


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_the_best_set_is_kept_whole_by_default_even_when_the_agent_never_called_it(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app

    out = tmp_path / "run"
    with ScriptedServer(responder=StandIn(primitives_only=True)) as server:
        args = ["learn", "--method", "learnact", "--env", "pddl/blockworld", "--model", "m", "--seed", "2"]
        args += ["--train-per-type", "1", "--samples", "1", "--rounds", "1", "--out", str(out)]
        result = CliRunner().invoke(app, [*args, "--base-url", server.base_url, "--no-cache"])
    assert result.exit_code == 0, result.output
    library = Library.open_existing(out / "library")
    assert set(library.selected()) == {"pick_and_stack", "clear_block"}  # as the paper keeps it
    assert not any(library.versions(n)[-1].dropped for n in library.selected())


def test_actions_the_agent_never_calls_are_dropped_and_learn_says_nothing_was_kept(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app

    out = tmp_path / "run"
    with ScriptedServer(responder=StandIn(primitives_only=True)) as server:
        args = ["learn", "--method", "learnact", "--env", "pddl/blockworld", "--model", "m", "--seed", "2"]
        args += ["--train-per-type", "1", "--samples", "1", "--rounds", "1", "--out", str(out), "--drop-unused"]
        result = CliRunner().invoke(app, [*args, "--base-url", server.base_url, "--no-cache"])
    assert result.exit_code == 0, result.output
    stop = "round 0: the best set's actions were never called, so there is nothing to optimise; stopping early"
    assert stop in " ".join(result.stderr.split())
    assert "no action was kept (score 1.000)" in " ".join(result.stdout.split())
    library = Library.open_existing(out / "library")
    assert library.selected() == {}
    assert all("never called" in (library.versions(n)[-1].dropped or "") for n in ("pick_and_stack", "clear_block"))
    evaluate = ["eval", "--method", "learnact", "--env", "pddl/blockworld", "--library", str(out), "--tasks", "0"]
    evaluate += ["--seeds", "1", "--max-steps", "1", "--model", "m", "--no-cache", "--out", str(tmp_path / "eval")]
    with ScriptedServer(responder=StandIn(primitives_only=True)) as server:
        tested = CliRunner().invoke(app, [*evaluate, "--base-url", server.base_url])
    assert tested.exit_code == 0, tested.output
    assert "the library keeps no action" in " ".join(tested.stderr.split())  # the agent has the primitives only

    manifest = out / "library" / "library.json"  # the same library while its learning has not finished: refused
    unfinished = json.loads(manifest.read_text())
    assert unfinished["learning"] == {"finished": True, "round": 0, "rounds": 1}
    unfinished["learning"]["finished"] = False
    manifest.write_text(json.dumps(unfinished))
    refused = CliRunner().invoke(app, [*evaluate[:-1], str(tmp_path / "eval2"), "--base-url", "http://127.0.0.1:9"])
    assert refused.exit_code == 2
    assert "is not a result yet: learning not finished (round 0 of 1)" in " ".join(refused.stderr.split())


@pytest.mark.parametrize("method", ["learnact", "act_reflexion"])
def test_a_model_failure_while_learning_exits_3(tmp_path: Path, method: str) -> None:
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app

    with ScriptedServer(responder=lambda body: Status(500, "down")) as server:
        args = ["learn", "--method", method, "--env", "pddl/blockworld", "--model", "m", "--seed", "2"]
        args += ["--train-per-type", "1", "--samples", "1", "--rounds", "1", "--out", str(tmp_path / "run")]
        args += ["--base-url", server.base_url, "--no-cache", "--model-retries", "0"]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    assert "HTTP 500 after 1 try" in " ".join(result.stderr.split())


HAND_WRITTEN = '''def move_onto(block, target):
    """Pick up a clear block from the table and stack it on target.

    Example: move_onto('b3', 'b2')
    """
    Pickup(block)
    Stack(block, target)
'''


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_hand_written_actions_are_imported_checked_validated_and_evaluated_like_learned_ones(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app

    runner, source, library = CliRunner(), tmp_path / "hand.py", tmp_path / "library"
    source.write_text(HAND_WRITTEN.replace("    Stack(block, target)\n", "    import os\n"))
    broken = runner.invoke(app, ["actions", "import", str(source), "--env", "pddl/blockworld", "--out", str(library)])
    assert broken.exit_code == 1 and "nothing imported" in broken.stderr and "os" in broken.stderr
    assert not library.exists()

    # Usage lines are kept only when they solve the demonstration task in the sandbox: this one cannot pick up b2,
    # which lies under nothing but on b1.
    source.write_text(HAND_WRITTEN)
    usage = tmp_path / "usage.txt"
    usage.write_text("move_onto('b2', 'b3')\n")
    import_args = ["actions", "import", str(source), "--env", "pddl/blockworld", "--usage", str(usage)]
    unsolved = runner.invoke(app, [*import_args, "--out", str(library)])
    assert unsolved.exit_code == 1 and "nothing imported" in unsolved.stderr, unsolved.output
    assert "line 1, `move_onto('b2', 'b3')`, failed" in " ".join(unsolved.stderr.split())
    assert not library.exists()

    usage.write_text("Unstack('b2', 'b1')\nPutdown('b2')\nUnstack('b1', 'b3')\nPutdown('b1')\nmove_onto('b2', 'b3')\n")
    made = runner.invoke(app, [*import_args, "--out", str(library)])
    assert made.exit_code == 0, made.output
    imported = Library.open_existing(library)
    (version,) = imported.versions("move_onto")
    assert version.origin is Origin.human and version.example == "move_onto('b3', 'b2')" and not version.verdict
    assert imported.selected() == {"move_onto": 1} and imported.env() == "pddl/blockworld"
    shown_at_work = imported.current().usage
    assert shown_at_work is not None and shown_at_work.task == "blockworld-demo"
    assert (
        shown_at_work.steps[-1].code == "move_onto('b2', 'b3')" and "b2 is on b3" in shown_at_work.steps[-1].observation
    )

    with ScriptedServer(responder=lambda body: Answer("move_onto('b3', 'b2')")) as server:
        args = ["eval", "--method", "learnact", "--env", "pddl/blockworld", "--tasks", TASK, "--seeds", "1"]
        args += ["--model", "m", "--base-url", server.base_url, "--no-cache", "--library", str(library)]
        tested = runner.invoke(app, [*args, "--out", str(tmp_path / "eval"), "--json"])
        prompt = server.received[0].body["messages"][-1]["content"]
    assert tested.exit_code == 0, tested.output
    summary = json.loads(tested.stdout)
    assert summary["success_rate"] == 1.0 and summary["learned"]["learned_steps"] >= 1
    assert "Here is a task solved with the learned actions" in prompt and "Action: move_onto('b2', 'b3')" in prompt
    again = runner.invoke(app, ["actions", "import", str(source), "--env", "pddl/blockworld", "--out", str(library)])
    assert again.exit_code == 2 and "is not an empty folder" in again.stderr


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
@pytest.mark.parametrize("domain", ["blockworld", "gripper"])
def test_the_learning_benchmarks_control_libraries_import_with_their_usage_lines(domain: str, tmp_path: Path) -> None:
    # the control of benchmarks/learning_bench.py: its usage lines must solve the domain's demonstration as it is
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app

    source = Path(__file__).resolve().parents[1] / "benchmarks" / "libraries" / f"{domain}.py"
    args = ["actions", "import", str(source), "--env", f"pddl/{domain}", "--usage", str(source.with_suffix(".usage"))]
    made = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "library")])
    assert made.exit_code == 0, made.output
    usage = Library.open_existing(tmp_path / "library").current().usage
    assert usage is not None and usage.task == f"{domain}-demo"
    assert usage.steps[-1].observation.endswith("The goal is satisfied.")


@pytest.mark.parametrize("domain", ["blockworld", "gripper", "tyreworld", "barman", "alfworld"])
def test_each_domains_worked_example_is_an_action_the_learner_would_accept(domain: str) -> None:
    from learnact.actions import check
    from learnact.actions.models import CodeKind, Severity
    from learnact.envs import env_profile, primitive_specs
    from learnact.learner.answers import combines_actions, parse_actions

    env_name = "alfworld/put" if domain == "alfworld" else f"pddl/{domain}"
    primitives = primitive_specs(env_name)
    code = env_profile(env_name).worked_example(domain)
    parsed = parse_actions(code, [p.name for p in primitives], 8)
    (action,) = parsed.actions
    assert not parsed.problems and action.description and action.example.startswith(f"{action.name}(")
    findings = check(action.code, CodeKind.action_module, primitives)
    assert [f for f in findings if f.severity is Severity.error] == []
    assert combines_actions(action, {p.name for p in primitives})


@pytest.mark.parametrize("domain", ["blockworld", "gripper", "tyreworld", "barman", "alfworld"])
@pytest.mark.parametrize("kind", ["update", "plan"])
def test_each_domains_worked_improvement_is_a_failed_call_of_an_accepted_action_and_an_answer_the_learner_reads(
    domain: str, kind: str
) -> None:
    from learnact.actions import check
    from learnact.actions.models import CodeKind, Severity
    from learnact.envs import env_profile, primitive_specs
    from learnact.learner.answers import parse_actions, parse_improvement

    env_name = "alfworld/put" if domain == "alfworld" else f"pddl/{domain}"
    primitives = primitive_specs(env_name)
    names = [p.name for p in primitives]

    def accepted(code: str) -> str:
        parsed = parse_actions(code, names, 8)
        (action,) = parsed.actions
        assert not parsed.problems and action.example.startswith(f"{action.name}(")
        assert [f for f in check(action.code, CodeKind.action_module, primitives) if f.severity is Severity.error] == []
        return action.name

    text = env_profile(env_name).worked_improvement(domain, kind)  # type: ignore[arg-type]
    case, answer = text.split("\nFailed reason:")
    name = accepted(case.split("Action:")[0])
    call = case.split("Action: ")[1].splitlines()[0]
    assert call.startswith(f"{name}(") and "Inside it:" in case
    improvement = parse_improvement("Failed reason:" + answer)
    assert improvement is not None and improvement.kind == kind and improvement.reason
    if kind == "update":
        assert accepted(improvement.content) == name  # the same action, rewritten
    else:
        assert "def " not in improvement.content and name in improvement.content


def test_the_optimise_prompt_shows_the_domains_worked_update_and_plan_before_the_case() -> None:
    from learnact.engine.runs.learnact_run import LearnactPrompts
    from learnact.envs import env_profile, make_env
    from learnact.learner.scoring import FailureCase

    env = make_env(BLOCKS)
    prompts = LearnactPrompts(env, "blockworld", LearnactConfig.for_env(env.name), "DEMO")
    case = FailureCase(name="pick_and_stack", version=1, task=TASK, goal="b3 is on b2.", step=0, call="c",
                       error="not valid", history="H", substeps=("Pickup('b1') -> not valid",))  # fmt: skip
    user = prompts.optimise(case, CHECKED, 0)[1].content
    profile = env_profile(env.name)
    update, plan = profile.worked_improvement("blockworld", "update"), profile.worked_improvement("blockworld", "plan")
    assert user.index(update) < user.index(plan) < user.index("Your case.") < user.index(CHECKED)
    assert profile.worked_improvement("towers", "update") == ""  # an external domain without one
    bare = (
        LearnactPrompts(env, "towers", LearnactConfig.for_env(env.name), "DEMO").optimise(case, CHECKED, 0)[1].content
    )
    assert "Case 1." not in bare and bare.startswith("The agent was given these actions")


def test_the_create_prompt_shows_the_domains_worked_example() -> None:
    from learnact.engine.runs.learnact_run import LearnactPrompts
    from learnact.envs import env_profile, make_env

    env = make_env(BLOCKS)
    user = LearnactPrompts(env, "blockworld", LearnactConfig.for_env(env.name), "DEMO").create(0)[1].content
    assert env_profile(env.name).worked_example("blockworld") in user and "def clear_tower(blocks):" in user
    assert env_profile("pddl").worked_example("towers") == ""  # an external domain without one


# The blockworld demonstration's solution: b2 on b1 on b3, the goal b2 on b3.
DEMO_SOLUTION = [
    "Unstack('b2', 'b1')", "Putdown('b2')", "Unstack('b1', 'b3')", "Putdown('b1')", "Pickup('b2')", "Stack('b2', 'b3')"
]  # fmt: skip


def demonstrate_usage(answers: list[str], asked: list[tuple[str, list, AnswerForm]]):
    """The usage demonstration of FIXED's actions on the blockworld demonstration, the model answering
    ``answers`` in turn (up to 4 tries); each request is appended to ``asked``."""
    from learnact.actions.models import ActionSet, LearnedAction
    from learnact.engine.runs.usage import DemoTask, UsageDemonstrator
    from learnact.engine.runs.usage_match import parse_calls
    from learnact.envs.pddl import PddlEnv

    parsed = parse_actions(FIXED, PRIMITIVES, 8).actions
    actions = ActionSet(actions=tuple(LearnedAction(name=a.name, code=a.code) for a in parsed))
    given = iter(answers)

    def ask(call_id: str, messages, sample: int, fixing: bool, form: AnswerForm) -> str:
        asked.append((call_id, list(messages), form))
        return next(given)

    env = PddlEnv.demonstration("blockworld")
    (task,) = env.tasks()
    reset = env.reset(task.id)
    calls = parse_calls(DEMO_SOLUTION)
    demo = DemoTask("DEMO", reset.goal, reset.observation, calls, task.id, lambda: PddlEnv.demonstration("blockworld"))
    return UsageDemonstrator(demo, "SYSTEM", ask, SandboxConfig(pool_size=0), tries=4)(actions, "usage")


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_usage_demonstration_must_call_a_learned_action_and_reach_the_goal() -> None:
    from learnact.engine.runs.usage import MAX_EXTRA_LINES

    primitive_only = "```python\n" + "\n".join(DEMO_SOLUTION) + "\n```"  # reaches the goal
    asked: list[tuple[str, list, AnswerForm]] = []
    usage = demonstrate_usage([primitive_only, USAGE_WRONG, USAGE], asked)
    messages = [request[1] for request in asked]
    assert "the lines call none of the learned actions (pick_and_stack, clear_block)" in messages[1][-1].content
    assert "failed" in messages[2][-1].content and USAGE_WRONG in messages[2][-2].content
    assert usage is not None and not usage.matched and [s.code for s in usage.steps] == USAGE.split("\n")[1:-1]
    # each answer is asked as lines of calls of the learned actions, then the primitives, at most 6 + extra lines
    forms = [request[2] for request in asked]
    learned_first = ("pick_and_stack", "clear_block", "Pickup", "Putdown", "Stack", "Unstack")
    assert forms[0].calls == learned_first and forms[0].max_lines == 6 + MAX_EXTRA_LINES and forms[0] == forms[1]


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_an_answer_the_model_gave_before_ends_the_usage_tries_and_matching_takes_over() -> None:
    asked: list[tuple[str, list, AnswerForm]] = []
    usage = demonstrate_usage([USAGE_WRONG, USAGE_WRONG, USAGE], asked)
    # the third answer, which would have worked, is never asked for
    assert [request[0] for request in asked] == ["usage", "usage-fix-1"]
    assert usage is not None and usage.matched and [s.code for s in usage.steps] == USAGE.split("\n")[1:-1]


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_usage_line_that_calls_no_primitive_action_fails_and_says_so() -> None:
    from learnact.actions.models import ActionSet, LearnedAction
    from learnact.engine.runs.usage import replay
    from learnact.envs.pddl import PddlEnv
    from learnact.sandbox import Sandbox

    code = (
        "def unstack_if_on(block, under):\n"
        '    """Unstack block from under when it is on it.\n    Example: unstack_if_on(\'b2\', \'b1\')\n    """\n'
        "    if block == under:\n        Unstack(block, under)\n"
    )
    actions = ActionSet(actions=(LearnedAction(name="unstack_if_on", code=code),))
    env = PddlEnv.demonstration("blockworld")
    (task,) = env.tasks()
    with Sandbox(SandboxConfig(pool_size=0)) as sandbox:
        ran = replay(env, task.id, actions, ["Unstack('b2', 'b1')", "unstack_if_on('b1', 'b3')"], sandbox)
    assert not ran.success and [s.code for s in ran.steps] == ["Unstack('b2', 'b1')", "unstack_if_on('b1', 'b3')"]
    assert ran.problem is not None and ran.problem.startswith(
        "line 2, `unstack_if_on('b1', 'b3')`, did nothing: no action was called inside it. Before it: "
    )
    assert ran.steps[1].observation == "Nothing was done: the code called no action."


def per_type_action(task_type: str) -> str:
    """An action whose example acts in both types' demonstration games (each has a sinkbasin 1)."""
    return (
        f'```python\ndef {task_type}_step(place):\n    """Go to a place and look at it.\n\n'
        f'    Example: {task_type}_step(\'sinkbasin 1\')\n    """\n    goto(place)\n    examine(place)\n```'
    )


def per_type_stand_in(body: dict) -> Answer:
    """The learner writes ``clean_step`` for the clean demonstration and ``heat_step`` for the heat one; the agent
    calls whichever learned action its prompt lists."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system.startswith("You design reusable actions"):
        if "Rewrite that solution" in user or "did not reach its goal" in user or "failed" in user:
            return Answer("```python\nexamine('countertop 1')\n```")
        return Answer(per_type_action("heat" if "heat some egg" in user else "clean"))
    for task_type in ("clean", "heat"):
        if f"{task_type}_step(place)" in system:
            return Answer(f"{task_type}_step('countertop 1')")
    return Answer("inventory()")


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_alfworld_learns_a_library_per_task_type_and_each_episode_uses_its_types_own(
    tmp_path: Path, alfworld_data: Path
) -> None:
    from typer.testing import CliRunner

    from learnact.engine.commands.cli import app
    from learnact.engine.reports.runs import load_runs
    from learnact.engine.runs.learnact_run import BY_TYPE, learn_by_type, learns_by_type
    from learnact.envs import make_env

    spec = EnvSpec(name="alfworld", alfworld_data=str(alfworld_data), split="valid_seen")
    tasks = make_env(spec).tasks()
    clean, heat = (next(t.id for t in tasks if t.type == task_type) for task_type in ("clean", "heat"))
    out = tmp_path / "learn"
    with ScriptedServer(responder=per_type_stand_in) as server:
        run, split = agent_run(spec, ModelSettings(model="m", base_url=server.base_url), (clean, heat), max_steps=2)
        config = learnact_run_config(run, split, LearnactConfig.for_env("alfworld", samples=1, rounds=0, fix_tries=0))
        assert learns_by_type(config)
        assert not learns_by_type(config.model_copy(update={"run": config.run.model_copy(update={"env": BLOCKS})}))
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=1)
        results = learn_by_type(config, out, LearningServices(backbone))

        # one learning run per type, each on its own training task and demonstration, with its own library
        assert {t: r.selected for t, r in results.items()} == {"clean": {"clean_step": 1}, "heat": {"heat_step": 1}}
        for task_type, task in (("clean", clean), ("heat", heat)):
            run_config = json.loads((out / BY_TYPE / task_type / CONFIG).read_text())
            assert run_config["train"] == [task] and run_config["run"]["trained_on"] == [task]
        assert json.loads((out / CONFIG).read_text())["train"] == [clean, heat]  # the whole run's identity
        _, curves = load_runs([out])
        assert sorted(Path(c.library).parent.name for c in curves) == ["clean", "heat"]

        # eval --library RUN: each episode gets its own type's actions, none of the other's
        args = ["eval", "--method", "learnact", "--env", "alfworld", "--alfworld-data", str(alfworld_data)]
        args += ["--split", "valid_seen", "--tasks", f"{clean},{heat}", "--seeds", "1", "--max-steps", "1"]
        args += ["--model", "m", "--base-url", server.base_url, "--no-cache", "--library", str(out)]
        tested = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "eval"), "--json"])
    assert tested.exit_code == 0, tested.output
    records = {r.task: r for r in RunDir(tmp_path / "eval").latest().values()}
    assert [s.code for s in records[clean].steps] == ["clean_step('countertop 1')"]
    assert [s.code for s in records[heat].steps] == ["heat_step('countertop 1')"]
    assert records[clean].learned is not None and records[clean].learned.learned_steps == 1
