"""Usage lines found without the model: the demonstration's primitive calls, with runs of them that a learned
action makes replaced by a call of that action.

A small learner model asked to rewrite the demonstration with its actions copies the arguments of the actions'
docstring examples whatever the state (measured on the local model: ``carry('ball1', 'rooma', 'roomb', 'left')``
with ball1 already in roomb, in every try of four runs), so no usage demonstration was grounded and the agent,
never shown its actions at work, seldom called them. What an action does can be read off the action itself:
called once with placeholder arguments, on a host handler that records each primitive call and answers it
with an empty observation, a straight-line action makes a template of primitive calls over its parameters.
Where the demonstration's calls match a template, with one value for each placeholder, the action's call
with those values does what they did. Each call the matching proposes is still only a proposal: the lines
are kept only when they reach the demonstration's goal in the sandbox, like the model's lines.

A template may match with up to :data:`MAX_SKIPPED` of its first calls left out, the demonstration having no
call there: an action that first reaches its own precondition, ``move(to_room, from_room)`` before carrying (a
call the environment refuses, changing nothing, where the robot is in from_room already), does in the
demonstration's state what the rest of its calls match. Only leading calls: a call left out after the action
acted would be one that does something the demonstration did not. Exact matches are tried first; the sandbox
run judges the rest like any other line.

What it cannot find: an action whose calls depend on what the environment answers (its branches see empty
observations here), or on values it computes; a list parameter is tried as a list of two and of three items.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from learnact.actions.models import ActionSet
from learnact.actions.transcript import call_code
from learnact.envs.base import ArgumentError, PrimitiveSpec, StepOutcome
from learnact.sandbox import ExecutionStatus, Sandbox

PrimitiveCall = tuple[str, tuple[Any, ...]]
MAX_PARAMETERS = 6  # an action with more is not tried (templates grow as 1 + 2 * parameters)
LIST_LENGTHS = (2, 3)  # the lengths a list parameter is tried with
PLACEHOLDER = "__learnact_arg_{}__"
MAX_SKIPPED = 2  # a template's first calls that a match may leave out (taken to change nothing there)


@dataclass(frozen=True)
class CallTemplate:
    """The primitive calls ``action`` made when called with placeholders of ``shape`` (per parameter: None,
    one value; k, a list of k values), its arguments being placeholders or values it wrote itself."""

    action: str
    shape: tuple[int | None, ...]
    calls: tuple[PrimitiveCall, ...]


def parse_calls(lines: Sequence[str]) -> tuple[PrimitiveCall, ...]:
    """``lines`` as the names and literal arguments of calls, one a line; () when one is not such a call (a
    demonstration in another form has nothing to match)."""
    calls = []
    for line in lines:
        try:
            node = ast.parse(line.strip(), mode="eval").body
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.keywords:
                return ()
            calls.append((node.func.id, tuple(ast.literal_eval(arg) for arg in node.args)))
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
            return ()
    return tuple(calls)


def parameter_counts(actions: ActionSet) -> dict[str, int]:
    """How many positional parameters each action takes (those with ``*args``, keyword-only parameters without
    defaults or more than :data:`MAX_PARAMETERS` parameters are left out)."""
    counts: dict[str, int] = {}
    for action in actions.actions:
        tree = ast.parse(action.code)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == action.name:
                args = node.args
                required_keywords = any(d is None for d in args.kw_defaults)
                if args.vararg is None and not required_keywords and len(args.args) <= MAX_PARAMETERS:
                    counts[action.name] = len(args.args)
    return counts


def shapes(parameters: int) -> list[tuple[int | None, ...]]:
    """Every parameter a single value; then each one in turn a list of each of :data:`LIST_LENGTHS`."""
    single: tuple[int | None, ...] = (None,) * parameters
    listed = [single[:i] + (k,) + single[i + 1 :] for i in range(parameters) for k in LIST_LENGTHS]
    return [single, *listed] if parameters else [single]


def placeholder_args(shape: tuple[int | None, ...]) -> list[Any]:
    """The placeholder arguments of ``shape``: ``__learnact_arg_0__``, or a list ``__learnact_arg_0.1__``..."""
    return [
        PLACEHOLDER.format(i) if length is None else [PLACEHOLDER.format(f"{i}.{j}") for j in range(length)]
        for i, length in enumerate(shape)
    ]


class _Recorder:
    """The host handler of a template run: records each call, answers it as valid with an empty observation,
    and refuses calls beyond ``limit`` (an action that loops on what it observes would never stop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: list[PrimitiveCall] = []

    def __call__(self, name: str, args: list[Any]) -> StepOutcome:
        if len(self.calls) >= self.limit:
            raise ArgumentError(f"more than {self.limit} primitive calls")
        self.calls.append((name, tuple(args)))
        return StepOutcome(observation="", valid=True, done=False, success=False, progress=0.0)


def call_templates(
    sandbox: Sandbox, actions: ActionSet, primitives: Sequence[PrimitiveSpec], limit: int
) -> list[CallTemplate]:
    """The templates of ``actions`` that made at least two primitive calls, at most ``limit``, and ended
    without an error, each shape of :func:`shapes` run once in one session of ``sandbox``.

    :raises SandboxUnavailable: when the sandbox cannot start.
    """
    recorder = _Recorder(limit)
    templates: list[CallTemplate] = []
    with sandbox.session(primitives, recorder) as session:
        if not session.load_actions(actions.module).ok:
            return []
        for name, count in parameter_counts(actions).items():
            for shape in shapes(count):
                recorder.calls = []
                result = session.execute(call_code(name, placeholder_args(shape)))
                if result.status is ExecutionStatus.ok and 2 <= len(recorder.calls) <= limit:
                    templates.append(CallTemplate(name, shape, tuple(recorder.calls)))
    return templates


def _bind(template: CallTemplate, calls: Sequence[PrimitiveCall], skipped: int) -> str | None:
    """The call of the template's action that makes ``calls`` after its first ``skipped`` calls, or None: the
    names and the values the action wrote itself must be equal, each placeholder must stand for one value, and
    the calls made must use every parameter (the value of one only a left-out call uses cannot be read)."""
    if len(calls) + skipped != len(template.calls):
        return None
    values = _values(template.calls[skipped:], calls)
    if values is None:
        return None
    try:
        args = [
            values[p] if isinstance(p, str) else [values[item] for item in p] for p in placeholder_args(template.shape)
        ]
    except KeyError:  # a parameter the calls did not use: its value cannot be read off them
        return None
    return call_code(template.action, args)


def _values(template_calls: Sequence[PrimitiveCall], calls: Sequence[PrimitiveCall]) -> dict[str, Any] | None:
    """The value of each placeholder when ``template_calls`` make ``calls``, or None when they cannot."""
    values: dict[str, Any] = {}
    for (name, args), (demo_name, demo_args) in zip(template_calls, calls, strict=True):
        if name != demo_name or len(args) != len(demo_args):
            return None
        for arg, value in zip(args, demo_args, strict=True):
            if isinstance(arg, str) and arg.startswith("__learnact_arg_"):
                if values.setdefault(arg, value) != value:
                    return None
            elif arg != value:
                return None
    return values


def matched_lines(demo_calls: Sequence[PrimitiveCall], templates: Sequence[CallTemplate]) -> list[str]:
    """The demonstration's calls as lines, each run of calls that a template makes written as the call of its
    action: exact matches first (the longest template first), then matches leaving out a template's first call,
    then its first two, each still replacing at least two calls; the lines call no learned action when no
    template matched."""
    lines: list[str] = []
    position = 0
    longest_first = sorted(templates, key=lambda t: len(t.calls), reverse=True)
    tries = [(t, skipped) for skipped in range(MAX_SKIPPED + 1) for t in longest_first if len(t.calls) - skipped >= 2]
    while position < len(demo_calls):
        for template, skipped in tries:
            run = demo_calls[position : position + len(template.calls) - skipped]
            line = _bind(template, run, skipped)
            if line is not None:
                lines.append(line)
                position += len(run)
                break
        else:
            name, args = demo_calls[position]
            lines.append(call_code(name, list(args)))
            position += 1
    return lines
