"""Reading the learner model's answers: functions, their descriptions and usage examples, Update or Plan.

Every answer is untrusted text: functions are read with ``ast`` (never run on the host), sizes are bounded,
names are checked, and one broken function does not hide the others. What is wrong is a :class:`Problem`
worded for the model, naming the function and the remedy.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from learnact.actions.library import ACTION_NAME, Origin, VersionDraft
from learnact.actions.models import Finding

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 40_000  # a longer answer is cut before it is parsed
MAX_FUNCTION_CHARS = 6_000
MAX_REASON_CHARS = 1_000


@dataclass(frozen=True)
class Problem:
    """What is wrong with one function (or, named ``""``, with the whole answer), as shown to the model; one
    that does not ``needs_fix`` drops the function without asking the model again (a duplicate: the set loses
    nothing)."""

    kind: Literal["finding", "traceback"]
    text: str
    needs_fix: bool = True


@dataclass(frozen=True)
class ParsedAction:
    """One function of an answer: its name, its code, and the description and usage example its docstring gives."""

    name: str
    code: str
    description: str
    example: str

    def draft(self, origin: Origin, verdict: Sequence[Finding]) -> VersionDraft:
        """This function as a new version of its action, written as ``origin``, with the static checker's
        ``verdict``; where it comes from (its parent, call, round, feedback) is the writer's to add."""
        return VersionDraft(
            name=self.name,
            code=self.code,
            description=self.description,
            example=self.example,
            origin=origin,
            verdict=tuple(verdict),
        )


@dataclass
class ParsedAnswer:
    actions: list[ParsedAction] = field(default_factory=list)
    problems: dict[str, Problem] = field(default_factory=dict)  # by function name; "" for the answer


_FENCE = re.compile(r"```[ \t]*(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_EXAMPLE = re.compile(r"^(?:usage[ \t]+)?example[ \t]*:[ \t]*(.+)$", re.IGNORECASE)  # on a stripped line


def code_of(answer: str) -> str:
    """The code of an answer: its fenced blocks joined, else the whole text."""
    answer = answer[:MAX_ANSWER_CHARS]
    blocks = _FENCE.findall(answer)
    return "\n\n".join(b.strip("\n") for b in blocks) if blocks else answer


_TOP_DEF = re.compile(r"^def[ \t]+([A-Za-z_]\w*)", re.MULTILINE)


def _definitions(code: str) -> tuple[list[tuple[ast.FunctionDef, str]], dict[str, Problem]]:
    """The top-level functions of ``code`` with their source. When the whole does not parse, each top-level
    ``def`` is parsed on its own, so that one broken function does not hide the others (a weak model's
    answer often has one)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        whole = Problem("finding", f"line {exc.lineno or 1}: SyntaxError: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        return [], {"": Problem("finding", f"the code cannot be parsed: {type(exc).__name__}")}
    else:
        return [(n, ast.get_source_segment(code, n) or "") for n in tree.body if isinstance(n, ast.FunctionDef)], {}
    starts = [m.start() for m in _TOP_DEF.finditer(code)]
    if not starts:
        return [], {"": whole}
    found: list[tuple[ast.FunctionDef, str]] = []
    problems: dict[str, Problem] = {}
    for index, start in enumerate(starts):
        chunk = code[start : starts[index + 1] if index + 1 < len(starts) else len(code)]
        name = _TOP_DEF.match(chunk).group(1)  # type: ignore[union-attr]
        chunk = "\n" * code.count("\n", 0, start) + chunk  # line numbers as in the whole answer
        try:
            tree = ast.parse(chunk)
        except SyntaxError as exc:
            problems[name] = Problem("finding", f"line {exc.lineno or 1}: SyntaxError: {exc.msg}")
            continue
        except (ValueError, RecursionError, MemoryError) as exc:
            problems[name] = Problem("finding", f"{name} cannot be parsed: {type(exc).__name__}")
            continue
        found += [(n, ast.get_source_segment(chunk, n) or "") for n in tree.body if isinstance(n, ast.FunctionDef)]
    return found, problems


def parse_actions(answer: str, primitives: Iterable[str], max_actions: int) -> ParsedAnswer:
    """The functions an answer defines, each with its description (the docstring's first line) and usage
    example (a docstring line ``Example: call(...)``); what cannot be used is a problem to send back."""
    parsed = ParsedAnswer()
    code = code_of(answer)
    no_function = Problem("finding", "the answer defines no Python function (def ...) in a ```python block")
    if not re.search(r"^[ \t]*def\s", code, re.MULTILINE):
        parsed.problems[""] = no_function
        return parsed
    functions, parsed.problems = _definitions(code)
    reserved = {p.lower() for p in primitives}
    if not functions and not parsed.problems:
        parsed.problems[""] = no_function
    if len(functions) > max_actions:
        parsed.problems[""] = Problem("finding", f"write at most {max_actions} functions, not {len(functions)}")
    if "" in parsed.problems:
        return parsed
    seen: set[str] = set()
    for node, source in functions:
        name = node.name
        if name in seen:
            parsed.problems[name] = Problem("finding", f"{name} is defined twice; define each function once")
            continue
        seen.add(name)
        docstring = ast.get_docstring(node) or ""
        lines = [line.strip() for line in docstring.splitlines() if line.strip()]
        description = next((line for line in lines if not _EXAMPLE.match(line)), "")
        example = next((m.group(1).strip().strip("`") for line in lines if (m := _EXAMPLE.match(line))), "")
        action = ParsedAction(name, source.strip() + "\n", description, example)
        found = []
        if node.decorator_list:
            found.append(f"{name} has a decorator; write plain functions")
        if not re.match(ACTION_NAME, name):
            found.append(f"the name {name!r} is too long or not a plain identifier")
        elif name.lower() in reserved:
            found.append(
                f"{name} is a primitive action's name: the primitive actions exist already; call them, and give "
                "your function another name"
            )
        if len(source) > MAX_FUNCTION_CHARS:
            found.append(f"{name} is {len(source)} characters long; keep each function under {MAX_FUNCTION_CHARS}")
        if not description:
            found.append(f"{name} has no docstring; its first line must describe in one sentence what it does")
        if not example:
            found.append(f"{name}'s docstring has no usage example, a line `Example: {name}(...)`")
        elif not _parses(example):
            found.append(f"the usage example of {name} ({example}) is not one line of valid Python")
        elif not _calls_name(example, name):
            found.append(f"the usage example of {name} ({example}) does not call {name}")
        if found:
            parsed.problems[name] = Problem("finding", "\n".join(found))
        if re.match(ACTION_NAME, name):  # a name that cannot name a version is reported, never recorded
            parsed.actions.append(action)
    return parsed


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _calls_name(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(tree))


def called_names(code: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` that ``code`` calls, in the order of their first call."""
    wanted = set(names)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    calls.sort(key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.func.id for n in calls if n.func.id in wanted))  # type: ignore[attr-defined]


def combines_actions(action: ParsedAction, callable_names: Iterable[str]) -> bool:
    """Whether the function calls primitives (or other actions) at least twice: two call sites, or one in a
    loop. Statements after a ``return``, ``raise``, ``break`` or ``continue`` in the same block never run, so
    their calls do not count (``return Pickup(b)`` then ``return Putdown(b)`` calls one primitive)."""
    wanted = set(callable_names)

    def calls_in(node: ast.AST) -> int:
        return sum(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in wanted for n in ast.walk(node)
        )

    def sites(statements: list[ast.stmt]) -> int:
        count = 0
        for statement in statements:
            if isinstance(statement, (ast.For, ast.AsyncFor, ast.While)) and calls_in(statement):
                return 2  # one call site in a loop runs again and again
            nested = [getattr(statement, field, None) for field in ("body", "orelse", "finalbody", "handlers")]
            blocks = [block for block in nested if isinstance(block, list) and block]
            if blocks and not isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own = [n for n in ast.iter_child_nodes(statement) if not isinstance(n, (ast.stmt, ast.excepthandler))]
                count += sum(calls_in(n) for n in own)
                count += max(sites(_statements(block)) for block in blocks)
            else:
                count += calls_in(statement)
            if isinstance(statement, (ast.Return, ast.Raise, ast.Break, ast.Continue)):
                break  # what follows in this block never runs
        return count

    functions = [n for n in ast.parse(action.code).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return any(sites(function.body) >= 2 for function in functions)


def duplicates(actions: Sequence[ParsedAction]) -> dict[str, str]:
    """The functions that do what an earlier one of ``actions`` does, each with the earlier one's name: the
    same code once names, docstrings and the names they bind are set aside (``clear_table`` written line for
    line as ``clear_tower``)."""
    seen: dict[str, str] = {}
    found: dict[str, str] = {}
    for action in actions:
        form = _form(action.code)
        if form is None:
            continue
        if form in seen:
            found[action.name] = seen[form]
        seen.setdefault(form, action.name)
    return found


def _form(code: str) -> str | None:
    """The first function of ``code`` without its name and docstring, the names it binds (parameters,
    assignment and loop targets) renamed in the order they are bound: equal forms run the same calls."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    function = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if function is None:
        return None
    function.name = "_"
    if function.body and isinstance(function.body[0], ast.Expr) and isinstance(function.body[0].value, ast.Constant):
        function.body = function.body[1:]
    nodes = list(ast.walk(function))
    bound = [n.arg for n in nodes if isinstance(n, ast.arg)]
    bound += [n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    renamed = {name: f"_{i}" for i, name in enumerate(dict.fromkeys(bound))}
    for node in nodes:
        if isinstance(node, ast.arg):
            node.arg = renamed[node.arg]
        elif isinstance(node, ast.Name) and node.id in renamed:
            node.id = renamed[node.id]
    try:
        return ast.dump(function, include_attributes=False)
    except RecursionError:  # nested deeper than the host's stack allows: compared with nothing
        return None


def _statements(block: list) -> list[ast.stmt]:
    """A block's statements; an ``except`` handler's are its body."""
    return [s for item in block for s in (item.body if isinstance(item, ast.excepthandler) else [item])]


@dataclass(frozen=True)
class Improvement:
    """An Optimise answer: the failure reason and either an Update (code) or a Plan (a usage note)."""

    kind: Literal["update", "plan"]
    reason: str
    content: str


# Each pattern stays on one line where it may fail (``[^\w\n]``), so that hostile text cannot make it slow.
_IMPROVE = re.compile(r"^[^\w\n]*improve[^\w\n]*(update|plan)\b", re.IGNORECASE | re.MULTILINE)
_REASON = re.compile(
    r"failed[ \t]+reason[ \t]*:(.*?)(?=^[^\w\n]*improve\b|\Z)", re.IGNORECASE | re.DOTALL | re.MULTILINE
)
_CONTENT = re.compile(r"^[^\w\n]*content[ \t]*:(.*)\Z", re.IGNORECASE | re.DOTALL | re.MULTILINE)


def parse_improvement(answer: str) -> Improvement | None:
    """The Optimise answer's parts; None when it says neither Update nor Plan."""
    answer = answer[:MAX_ANSWER_CHARS]
    improve = _IMPROVE.search(answer)
    if improve is None:
        return None
    reason = _REASON.search(answer)
    content = _CONTENT.search(answer, improve.end())
    text = content.group(1).strip() if content else answer[improve.end() :].strip()
    return Improvement(
        kind="plan" if improve.group(1).lower() == "plan" else "update",
        reason=cut(" ".join(reason.group(1).split()), MAX_REASON_CHARS) if reason else "",
        content=text,
    )


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
