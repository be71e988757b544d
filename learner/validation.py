"""Validation of candidate functions in the sandbox: the static check as an action module, at least two
primitive calls, no function that repeats another's code under other names, and each function's usage example
run on the example task (the demonstration the model was shown, where its arguments must fit). An example fails
when it raises, calls no primitive action, or changes nothing: the environment refused every primitive call it
made at the task's start and in each state the demonstration's solution passes through (`Unstack(b, b)` for each
block, a tower's blocks in an order no state has), or, where every observation is the whole state, the calls it
accepted left the state they found (`Stack(a, b)` then `Unstack(a, b)`). An example that needs a later state
(`Pickup` of a block the start has covered) is judged in the first state where it acts; a refused call among
accepted ones is for scoring to judge. What fails becomes a :class:`~learnact.learner.answers.Problem` with the
exact findings, traceback or refusal; a duplicate is dropped without asking the model for a fix, unless other
functions call it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from learnact.actions import check
from learnact.actions.models import CodeKind, Finding, Severity
from learnact.actions.transcript import call_code
from learnact.envs import Environment, PrimitiveSpec, env_profile
from learnact.learner.answers import ParsedAction, Problem, called_names, combines_actions, cut, duplicates
from learnact.sandbox import ExecutionResult, ExecutionStatus, PrimitiveCall, Sandbox

log = logging.getLogger(__name__)

MAX_REFUSAL_CHARS = 400  # the refused call and the environment's message, as the fix request shows them
MAX_UNDONE_SHOWN = 4  # the accepted calls of an example that undid itself, as the fix request shows them


class SandboxValidator:
    """Checks functions (kind *action module*) and runs each one's usage example in the sandbox, on the
    environment reset to ``task`` (the example task); a function that fails gets its exact findings or traceback.

    ``solution``: the primitive calls of the example task's demonstrated solution, whose states an example that
    changed nothing at the start is tried in; None when the example task is not the one the model was shown (its
    states unknown to the model, an example the environment refused entirely at the start is not judged).
    """

    def __init__(
        self,
        sandbox: Sandbox,
        env: Environment,
        task: str,
        solution: Sequence[tuple[str, Sequence[Any]]] | None = None,
    ) -> None:
        self.sandbox, self.env, self.task = sandbox, env, task
        self.solution = None if solution is None else tuple(solution)
        self.whole_states = env_profile(env.name).final_state_observations
        self.primitives: list[PrimitiveSpec] = env.primitives()

    def verdict(self, action: ParsedAction, others: Iterable[str]) -> list[Finding]:
        """The static checker's findings on the function (the other functions of its set are callable)."""
        return check(action.code, CodeKind.action_module, self.primitives, known=set(others) - {action.name})

    def problems(
        self, actions: Sequence[ParsedAction], known: Mapping[str, Problem] | None = None
    ) -> dict[str, Problem]:
        """The problems of ``actions`` by name (none for a function that passed): ``known`` ones (from reading
        the answer) with the static checker's errors added; the usage example of a function without any is run.

        :raises SandboxUnavailable: when the sandbox cannot start.
        """
        names = [a.name for a in actions]
        primitive_names = {p.name for p in self.primitives}
        callable_names = primitive_names | set(names)
        known = known or {}
        problems: dict[str, Problem] = dict(known)
        for action in actions:
            found = [known[action.name].text] if action.name in known else []
            errors = [f for f in self.verdict(action, names) if f.severity is Severity.error]
            found += shown_findings(errors, f"{action.name}.py")
            if not errors and not combines_actions(action, callable_names):
                found.append(f"{action.name} calls the primitive actions fewer than two times; combine at least two")
            if found:
                problems[action.name] = Problem("finding", "\n".join(found))
        # the answer's call graph: the functions each one calls, in the order of their first call; a function
        # under a primitive's name is refused and never loaded, so a call of that name calls the primitive
        called = set(names) - primitive_names
        calls = {a.name: [n for n in called_names(a.code, called) if n != a.name] for a in actions}
        for name, original in duplicates(actions).items():
            if name not in problems:
                problems[name] = _duplicate(name, original, calls)
        _add_callers(calls, problems)
        loadable = [a for a in actions if a.name not in problems]
        module = "\n\n".join(a.code for a in loadable)
        for action in loadable:
            failure = self._run_example(module, action)
            if failure is not None:
                problems[action.name] = failure
        _add_callers(calls, problems)
        return problems

    def _run_example(self, module: str, action: ParsedAction) -> Problem | None:
        doing = f"running the usage example {action.example}"
        with self.sandbox.session(self.primitives, self.env.call) as session:
            before = self.env.reset(self.task).observation
            loaded = session.load_actions(module)
            if not loaded.ok:
                return _problem_of(loaded, "loading the functions")
            ran = session.execute(action.example)
            if not ran.ok:
                return _problem_of(ran, doing)
            if ran.did_nothing:
                return Problem(
                    "finding",
                    f"{doing} did nothing: no primitive action was called inside it (a condition that is never true,"
                    " or a `return` before the calls); make it call the primitive actions",
                )
            first, reached, undone = ran, 0, None
            solution = self.solution or ()
            while True:
                accepted = _accepted(ran)
                if accepted and not (self.whole_states and accepted[-1].observation == before):
                    if reached:
                        log.debug("%s acts after %d step(s) of the solution", action.example, reached)
                    return None
                if accepted and len(accepted) == len(ran.calls):  # it fits this state, and undoes itself
                    return _undone(doing, reached, ran)
                if accepted and undone is None:
                    undone = (reached, ran)
                if reached == len(solution):
                    break
                # It did not act, so the task is where the solution's first calls left it (a refused call takes no
                # effect; accepted ones ended where they began): the solution's next call goes on from there.
                name, args = solution[reached]
                before = self.env.call(name, list(args)).observation
                reached += 1
                ran = session.execute(action.example)
                if not ran.ok:  # a later state the example does not fit makes it raise, or ends the session
                    return _problem_of(ran, f"{doing} after {reached} step(s) of the demonstration's solution")
            if undone is not None:
                return _undone(doing, *undone)
            return None if self.solution is None else _all_refused(doing, first, len(solution))


def _accepted(ran: ExecutionResult) -> list[PrimitiveCall]:
    return [call for call in ran.calls if call.valid]


def _undone(doing: str, reached: int, ran: ExecutionResult) -> Problem:
    """The problem of an example whose accepted calls (after ``reached`` steps of the solution) left the state as
    they found it: calls that undo each other (`Stack(a, b)` then `Unstack(a, b)`)."""
    accepted = [call_code(call.name, call.args) for call in _accepted(ran)]
    shown = " then ".join(accepted[:MAX_UNDONE_SHOWN]) + (", …" if len(accepted) > MAX_UNDONE_SHOWN else "")
    where = "at the start of the example task"
    if reached:
        where = f"after {reached} step(s) of the demonstration's solution"
    return Problem(
        "finding",
        f"{doing} changed nothing: {where} the environment accepted {shown}, and the state they left is the state"
        " they found (calls that undo each other do nothing); make it end in another state",
    )


def _all_refused(doing: str, ran: ExecutionResult, later_states: int) -> Problem:
    """The problem of an example whose every primitive call the environment refused at the start of the example
    task and in its ``later_states`` states along the solution, with the first refusal at the start (its message
    says which condition was false and what was true instead)."""
    first = ran.calls[0]
    count = len(ran.calls)
    every = "its primitive call" if count == 1 else f"all {count} of its primitive calls"
    later = f", and every call in each of the {later_states} states the solution passes through" if later_states else ""
    refusal = cut(f"{call_code(first.name, first.args)} -> {first.observation}", MAX_REFUSAL_CHARS)
    return Problem(
        "finding",
        f"{doing} changed nothing: the environment refused {every} at the start of the example task (the first:"
        f" {refusal}){later}\nMake the calls fit the state (the example task is the demonstration: its first"
        " observation is the state the example starts from), and make the docstring's example a call that works"
        " there",
    )


def _add_callers(calls: Mapping[str, list[str]], problems: dict[str, Problem]) -> None:
    """A problem for each function that calls, directly or through others, one with a problem (``calls``: the
    functions each one calls): kept without it, it would fail when it is loaded or called (and, loaded with the
    others, one function's problem would fail every example)."""
    while True:
        found = {
            name: Problem("finding", f"{name} calls {', '.join(broken)}, which cannot be used as written")
            for name, called in calls.items()
            if name not in problems and (broken := [n for n in called if n in problems])
        }
        if not found:
            return
        problems.update(found)


def _duplicate(name: str, original: str, calls: Mapping[str, list[str]]) -> Problem:
    """The problem of ``name``, which does what ``original`` does: dropped without a fix, unless other functions
    call it (dropping it would break them): then the model is asked to call ``original`` there instead."""
    callers = [caller for caller, called in calls.items() if name in called]
    same = f"{name} does what {original} does (the same code under other names)"
    if callers:
        return Problem("finding", f"{same}: remove {name} and call {original} in {', '.join(callers)} instead")
    return Problem("finding", f"{same}: {name} is dropped; write one function for each job", needs_fix=False)


def shown_findings(findings: Sequence[Finding], path: str) -> list[str]:
    """The findings as the model reads them: each kind (rule and message) once, at its first line, with the
    other lines it recurs on counted. A function that repeats one wrong line 300 times gets one finding, not
    300 (which filled a small model's whole context and buried the other findings)."""
    by_kind: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        by_kind.setdefault((finding.rule, finding.message), []).append(finding)
    shown = []
    for same in by_kind.values():
        line = same[0].render(path)
        if len(same) > 1:
            line += f" (and on {len(same) - 1} more line{'s' if len(same) > 2 else ''}: {same[-1].line} the last)"
        shown.append(line)
    return shown


def _problem_of(result: ExecutionResult, doing: str) -> Problem:
    if result.status is ExecutionStatus.rejected:
        lines = "\n".join(f.render("<example>") for f in result.findings if f.severity is Severity.error)
        return Problem("finding", f"{doing} was refused by the static check:\n{lines}")
    if result.error is not None:
        trace = result.error.traceback.rstrip()
        last = f"{result.error.type}: {result.error.message}"
        text = f"{trace}\n{last}" if trace and last not in trace else trace or last
        return Problem("traceback", f"{doing} raised an exception:\n{text}")
    return Problem("traceback", f"{doing} ended with the status {result.status.value}")
