"""The usage demonstration of a learned action set: a task solved with the actions, grounded in the sandbox.

The agent at test time plans better with learned actions when it has seen them at work (the paper shows a
usage trajectory before the primitive one). The paper's usage trajectories were written by the model with
invented observations; here the learner model rewrites the demonstration's solution to call the learned
actions, and the rewritten lines run in the sandbox on the demonstration's task, from its start: they are
kept only when they reach its goal, with the observations the environment really gave. When they do not,
what went wrong (the line, and what was observed) goes back to the model, as any finding does. When no answer of
the model reached the goal, lines found by matching the actions' primitive calls against the demonstration's
(:mod:`learnact.engine.runs.usage_match`) are tried the same way.

Every line is untrusted model output: parsed here as one call with literal arguments, then checked and run
in the sandbox like an agent's step.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from learnact.actions.errors import LearnactError
from learnact.actions.models import ActionSet, UsageDemonstration, UsageStep
from learnact.actions.transcript import ChatMessage, call_code
from learnact.engine.agents.prompts import fill
from learnact.engine.runs.episode import OutcomeTracker, observation_of
from learnact.engine.runs.usage_match import PrimitiveCall, call_templates, matched_lines
from learnact.envs import Environment, env_profile, step_worked
from learnact.learner.answers import called_names, code_of
from learnact.learner.learnact import AnswerForm, Ask
from learnact.learner.scoring import shown_substeps
from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig

log = logging.getLogger(__name__)

MAX_EXTRA_LINES = 5  # lines a rewritten solution may have beyond the primitive one's
MAX_LINE_CHARS = 300


@dataclass(frozen=True)
class DemoTask:
    """A solved task the learner is shown: as text (``text``: goal, first observation, the primitive calls
    with what was observed), its goal and first observation, its solution's primitive calls (``calls``), and how
    to open it again to try learned actions on it (``open_env``, ``task``; None: it cannot be opened)."""

    text: str
    goal: str
    initial: str
    calls: tuple[PrimitiveCall, ...]
    task: str
    open_env: Callable[[], Environment | None]

    @property
    def steps(self) -> int:
        return len(self.calls)


@dataclass(frozen=True)
class Replay:
    """The rewritten lines as they ran: the steps up to the goal or the first failure, and what failed."""

    steps: tuple[UsageStep, ...]
    success: bool
    problem: str | None


def parse_lines(answer: str, max_lines: int) -> tuple[list[str], str | None]:
    """The call lines of an answer (its ```python block, else its text), and the problem with them (None: none).
    A line is one call of a name with literal arguments."""
    lines = [line.strip() for line in code_of(answer).splitlines() if line.strip() and not line.strip().startswith("#")]
    if not lines:
        return [], "the answer holds no line of code"
    if len(lines) > max_lines:
        return [], f"the answer has {len(lines)} lines; write at most {max_lines}, one call each"
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS or not _is_literal_call(line):
            return [], f"line {number}, `{line[:MAX_LINE_CHARS]}`, is not one call with literal arguments"
    return lines, None


def _is_literal_call(line: str) -> bool:
    try:
        node = ast.parse(line, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return False
    try:
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            ast.literal_eval(arg)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return False
    return True


def replay(env: Environment, task: str, actions: ActionSet, lines: Sequence[str], sandbox: Sandbox) -> Replay:
    """Run ``lines`` one by one in a session holding ``actions``, on ``task`` from its start; stop at the goal or
    at the first line that fails (an error, a rejected line, a line that called no primitive action, or one whose
    primitive calls did not do what they were written for: :func:`~learnact.envs.step_worked`).
    A failure says what a small model needs to fix it: the state before the line, and the primitive calls that
    ran inside it with what each returned (the first few: :func:`~learnact.learner.scoring.shown_substeps`).

    :raises SandboxUnavailable: when the sandbox cannot start.
    :raises LearnactError: when the environment cannot reset to ``task``.
    """
    before = env.reset(task).observation
    tracker = OutcomeTracker(env)
    final_state = env_profile(env.name).final_state_observations  # the observations the agent will see
    steps: list[UsageStep] = []
    with sandbox.session(env.primitives(), tracker) as session:
        loaded = session.load_actions(actions.module)
        if not loaded.ok:
            return Replay((), False, f"the learned actions could not be loaded: {observation_of(loaded)}")
        for number, line in enumerate(lines, start=1):
            before_line = len(tracker.verdicts)
            result = session.execute(line)
            observation = observation_of(result, final_state)
            steps.append(UsageStep(code=line, observation=observation))
            if result.did_nothing:
                problem = f"line {number}, `{line}`, did nothing: no action was called inside it. Before it: {before}"
                return Replay(
                    tuple(steps), False, problem + "\nCall it with arguments for which it acts, or another line."
                )
            if result.status is not ExecutionStatus.ok or not step_worked(tracker.verdicts[before_line:]):
                inside = "; ".join(
                    shown_substeps(
                        [f"{call_code(call.name, call.args)} -> {call.observation}" for call in result.calls]
                    )
                )
                problem = f"line {number}, `{line}`, failed. Before it: {before}"
                problem += f"\nInside it: {inside}" if inside else f"\nIt gave: {observation}"
                return Replay(tuple(steps), False, problem)
            if tracker.success:
                return Replay(tuple(steps), True, None)
            before = observation
    return Replay(tuple(steps), False, f"all {len(lines)} lines ran and the goal was not reached")


class UsageDemonstrator:
    """Asks the learner model for the demonstration's solution rewritten with a set of learned actions, and
    keeps it once it reaches the goal in the sandbox (``tries`` answers: the first and its fixes)."""

    def __init__(
        self,
        demo: DemoTask,
        system: str,
        ask: Ask,
        sandbox: SandboxConfig,
        tries: int,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.demo, self.system, self.ask, self.sandbox = demo, system, ask, sandbox
        self.tries, self.progress = tries, progress

    def __call__(self, actions: ActionSet, call_id: str) -> UsageDemonstration | None:
        """The grounded usage demonstration of ``actions``; None when no answer reached the goal. ``call_id``
        names the first request; its fixes are ``<call_id>-fix-N``.

        :raises LLMError: when the learner model gives no answer.
        :raises SandboxUnavailable: when the sandbox cannot start.
        """
        env = self.demo.open_env()
        if env is None:
            self.progress("usage demonstration: the demonstration's task cannot be opened to try the actions on")
            return None
        request = fill("learnact_usage", actions=actions.module.strip(), demonstration=self.demo.text).strip()
        messages = [ChatMessage(role="system", content=self.system), ChatMessage(role="user", content=request)]
        try:
            with Sandbox(self.sandbox) as sandbox:
                return self._attempts(env, sandbox, actions, messages, call_id) or self._matched(env, sandbox, actions)
        finally:
            close_env(env)

    def _attempts(
        self, env: Environment, sandbox: Sandbox, actions: ActionSet, messages: list[ChatMessage], first_call: str
    ) -> UsageDemonstration | None:
        """Each try is the request, the last answer and what was wrong with it (not every earlier answer: a small
        model copies its own mistake), sampled with the try's seed. An answer the model gave before ends the tries:
        it failed on the same task from the same start, and a model that repeats itself once does again (told it
        had repeated itself, the local model wrote the same lines in every one of 18 tries)."""
        max_lines = self.demo.steps + MAX_EXTRA_LINES
        learned = actions.names()
        form = AnswerForm(calls=(*learned, *(p.name for p in env.primitives())), max_lines=max_lines)
        asked = list(messages)
        tried: set[tuple[str, ...]] = set()
        for attempt in range(self.tries):
            call_id = first_call if attempt == 0 else f"{first_call}-fix-{attempt}"
            answer = self.ask(call_id, asked, attempt, False, form)
            lines, problem = parse_lines(answer, max_lines)
            written = tuple(lines) or (answer.strip(),)
            if written in tried:
                self.progress(f"usage demonstration, answer {attempt + 1}: the same answer again; no more asked")
                return None
            tried.add(written)
            if problem is None and not any(called_names(line, learned) for line in lines):
                problem = f"the lines call none of the learned actions ({', '.join(learned)}); use them where they fit"
            if problem is None:
                ran = replay(env, self.demo.task, actions, lines, sandbox)
                if ran.success:
                    self.progress(f"usage demonstration: {len(ran.steps)} lines reached the goal")
                    return UsageDemonstration(
                        task=self.demo.task, goal=self.demo.goal, initial=self.demo.initial, steps=ran.steps
                    )
                problem = ran.problem or "the goal was not reached"
            self.progress(f"usage demonstration, answer {attempt + 1}: {problem.splitlines()[0]}")
            asked = [
                *messages,
                ChatMessage(role="assistant", content=answer),
                ChatMessage(role="user", content=fill("learnact_usage_fix", problem=problem).strip()),
            ]
        return None

    def _matched(self, env: Environment, sandbox: Sandbox, actions: ActionSet) -> UsageDemonstration | None:
        """The demonstration's calls with the runs an action makes replaced by its call, matched with the
        templates of all actions, then of each action alone (a long template can hide a shorter one that
        fits); the first lines that call a learned action and reach the goal."""
        limit = self.demo.steps + MAX_EXTRA_LINES
        templates = call_templates(sandbox, actions, env.primitives(), limit)
        tried: set[tuple[str, ...]] = set()
        for subset in [templates, *([t for t in templates if t.action == name] for name in actions.names())]:
            lines = tuple(matched_lines(self.demo.calls, subset))
            if lines in tried or not any(called_names(line, actions.names()) for line in lines):
                continue
            tried.add(lines)
            ran = replay(env, self.demo.task, actions, lines, sandbox)
            if ran.success:
                self.progress(
                    f"usage demonstration: {len(ran.steps)} lines matched from the demonstration reached the goal"
                )
                return UsageDemonstration(
                    task=self.demo.task, goal=self.demo.goal, initial=self.demo.initial, steps=ran.steps, matched=True
                )
        self.progress("usage demonstration: no lines matched from the demonstration reached the goal")
        return None


def close_env(env: Environment) -> None:
    """Close ``env``; a failure to close is logged, never raised over what the caller is returning."""
    try:
        env.close()
    except (LearnactError, OSError) as exc:
        log.debug("closing the demonstration's environment: %s", exc)
