"""Static check of model-written action code: the first filter and the source of precise feedback.

The rules (ids, severities, reasons) are the records of :mod:`learnact.actions.rules`; what code may
use is in :mod:`learnact.actions.policy`. Findings carry 1-based lines and 1-based character columns.

One parse, one compile for the errors found after parsing, then one iterative walk over the tree. The
walk follows Python's name scopes (what each scope binds and reads) and hands every node to the rule
families that handle its type; after it, each family resolves the rules that need the whole tree, in
the order of :data:`FAMILIES`. RestrictedPython's transformer runs last, on the same tree (it mutates
it). The compile and RestrictedPython's verdict depend on the text alone and are remembered for recent
texts. The check is not the security boundary: the sandbox must hold without it.

A rule family is a small class with its own state: methods marked ``@_on(ast.NodeType, ...)`` are
called with each node of those types, before the node's children, in source order; ``finish`` runs
after the walk. A family reads another's state through ``check[OtherFamily]``. A new rule is a
:class:`~learnact.actions.rules.RuleId` and a record in :mod:`learnact.actions.rules`, and a handler in
the family it belongs to (or a new family appended to :data:`FAMILIES`).
"""

from __future__ import annotations

import ast
import bisect
import difflib
import re
import string
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from RestrictedPython.transformer import RestrictingNodeTransformer

from learnact.actions.models import CodeKind, Finding, Severity
from learnact.actions.policy import (
    ALLOWED_BUILTINS,
    ALLOWED_MODULES,
    DANGEROUS_BUILTINS,
    DENIED_ATTRIBUTES,
    MAX_CODE_CHARS,
    REVIEWED_CALLS,
    module_api,
)
from learnact.actions.rules import RULES_BY_ID, RuleId

if TYPE_CHECKING:  # envs is a sibling room: only the type is needed here
    from learnact.envs.base import PrimitiveSpec

FORMAT_METHODS = frozenset({"format", "format_map", "vformat"})
_FORMAT_ON_ANY = frozenset({"format", "format_map"})  # LA014; the other denied attributes are LA016
_STDLIB_MODULES = frozenset(sys.stdlib_module_names)
_ALLOWED_MODULE_LIST = ", ".join(sorted(ALLOWED_MODULES))
_FORMATTER = string.Formatter()
# A field with '.' or '[' in a string that is not a complete format string (it may be completed at
# run time by concatenation).
_PARTIAL_FIELD = re.compile(r"\{[^{}!:]*[.\[]")
_RP_LINE = re.compile(r"Line (\d+|None): (.*)", re.DOTALL)
_RP_HINTS = {
    "Augmented assignment of object items": "write x[k] = x[k] + 1 instead of x[k] += 1",
    "Augmented assignment of attributes": "write obj.a = obj.a + 1 instead of obj.a += 1",
}
_BUILTIN_HINTS = {
    "eval": "parse values with int(), float() or json.loads()",
    "exec": "write the code itself",
    "getattr": "access the attribute directly, e.g. obj.name",
    "setattr": "assign the attribute directly, e.g. obj.name = value",
    "type": "use isinstance(value, str) to test a type",
    "open": "actions cannot read or write files",
    "input": "actions cannot read input; use the observations primitives return",
}
_STATEMENT_WORDS: dict[type, str] = {
    ast.Assign: "assignment",
    ast.AugAssign: "assignment",
    ast.AnnAssign: "assignment",
    ast.Expr: "expression",
    ast.If: "if statement",
    ast.For: "for loop",
    ast.While: "while loop",
    ast.Try: "try statement",
    ast.With: "with statement",
}
_LIST_LIMIT = 12


def check(
    code: str,
    kind: CodeKind,
    primitives: Sequence[PrimitiveSpec] = (),
    known: Iterable[str] = (),
    defined: Iterable[str] = (),
) -> list[Finding]:
    """Check ``code`` as ``kind``; return the findings sorted by (line, col, rule).

    ``primitives`` are the environment's primitive actions; ``known`` names the learned action
    functions already loaded in the session (callable, signatures unknown); ``defined`` names the
    other values that code run earlier in the session left in its namespace (see
    :func:`bound_names`): reading them is not reading an undefined name.
    """
    kind = CodeKind(kind)
    if len(code) > MAX_CODE_CHARS:
        message = f"the code is {len(code)} characters long; the limit is {MAX_CODE_CHARS}"
        return [_finding(RuleId.syntax_error, 1, 1, message)]
    restricted = _TEXT_VERDICTS.get(code)  # known: the text compiles, RestrictedPython said this
    try:
        tree = ast.parse(code, "<action>")
        if restricted is None:
            # The parser leaves some errors to the compiler ('return' outside a function, ...). The
            # tree compiles without a second parse; an error is told again from the text, which
            # gives it its line of code.
            try:
                compile(tree, "<action>", "exec", dont_inherit=True)
            except (SyntaxError, RecursionError, MemoryError, ValueError):
                compile(code, "<action>", "exec", dont_inherit=True)
    except SyntaxError as error:
        return [_syntax_finding(error)]
    except (RecursionError, MemoryError):
        return [_finding(RuleId.syntax_error, 1, 1, "the code is nested too deeply to be parsed; simplify it")]
    except ValueError as error:  # null bytes on Python 3.10
        return [_finding(RuleId.syntax_error, 1, 1, f"the code cannot be parsed: {error}")]
    run = _Check(code, kind, primitives, known, defined)
    try:
        run.walk(tree)
        if restricted is None:
            restricted = _restricted_python_errors(tree)
            _TEXT_VERDICTS.put(code, restricted)
    except RecursionError:
        return [_finding(RuleId.syntax_error, 1, 1, "the code is nested too deeply to be checked; simplify it")]
    run.report_restricted_python(restricted)
    return sorted(run.findings, key=lambda f: (f.line, f.col, f.rule))


def bound_names(code: str) -> frozenset[str]:
    """The names that running ``code`` may leave in the session's namespace: its module-level
    bindings (assignments, loop targets, imports, definitions, ...). Empty when it does not parse."""
    if len(code) > MAX_CODE_CHARS:
        return frozenset()
    try:
        return frozenset(_walk(ast.parse(code), {})[0].bound)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return frozenset()


def infer_kind(code: str) -> CodeKind:
    """Without function definitions an agent snippet; with them, an action module when the code holds
    only imports and definitions, a program when it also has top-level statements (calls, assignments)."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return CodeKind.agent_snippet
    if body and _is_docstring(body[0]):
        body = body[1:]
    if not any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) for s in body):
        return CodeKind.agent_snippet
    module_statements = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    if all(isinstance(s, module_statements) for s in body):
        return CodeKind.action_module
    return CodeKind.program


class _TextVerdicts:
    """RestrictedPython's errors for recently checked texts that compile.

    They depend on the text alone and cost more than the rest of the check together; the same
    action module is checked again for every session that loads it.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, code: str) -> tuple[str, ...] | None:
        with self._lock:
            errors = self._entries.get(code)
            if errors is not None:
                self._entries.move_to_end(code)
            return errors

    def put(self, code: str, errors: tuple[str, ...]) -> None:
        with self._lock:
            self._entries[code] = errors
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)


_TEXT_VERDICTS = _TextVerdicts(size=256)


def _restricted_python_errors(tree: ast.Module) -> tuple[str, ...]:
    """RestrictedPython's transformer on our tree (it rewrites the tree, so it comes last)."""
    errors: list[str] = []
    RestrictingNodeTransformer(errors, [], {}).visit(tree)
    return tuple(errors)


def _finding(rule: RuleId, line: int, col: int, message: str) -> Finding:
    return Finding(rule=rule, severity=RULES_BY_ID[rule].severity, line=line, col=col, message=message)


def _syntax_finding(error: SyntaxError) -> Finding:
    text = f"syntax error: {error.msg}"
    if error.text and error.text.strip():
        text += f" in `{error.text.strip()[:80]}`"
    return _finding(RuleId.syntax_error, error.lineno or 1, error.offset or 1, text)


# ---- the walk --------------------------------------------------------------------------------------


@cache
def _child_fields(node_type: type[ast.AST]) -> tuple[str, ...]:
    """The fields that may hold child nodes; `ctx` (Load/Store/Del) never matters to a rule."""
    return tuple(field for field in node_type._fields if field != "ctx")


class _Scope:
    """One of Python's name scopes: what it binds and the names read in it."""

    __slots__ = ("parent", "kind", "bound", "loads", "first")

    def __init__(self, parent: _Scope | None, kind: str) -> None:
        self.parent, self.kind = parent, kind
        self.bound: set[str] = set()
        self.loads: list[ast.Name] = []
        self.first: ast.comprehension | None = None  # a comprehension's first generator


Handler = Callable[[ast.AST], None]
# Where a node's children live: one scope for all of them, or (field, scope) in field order.
_Where = _Scope | tuple[tuple[str, _Scope], ...]


def _walk(tree: ast.Module, handlers: dict[type[ast.AST], Handler]) -> list[_Scope]:
    """Visit every node of ``tree`` once, in source order, each before its children; return its scopes
    (the module's first), as Python's compiler sees them.

    ``handlers[type(node)]`` is called with the node. Functions and lambdas see the names of every
    enclosing function and of the module, not those of a class body; a comprehension is a scope of
    its own whose first iterable is read outside it; a walrus in a comprehension binds in the
    enclosing function. Iterative: deeply nested code costs memory, not Python's stack.
    """
    scopes = _Scopes()
    stack: list[tuple[ast.AST, _Scope]] = [(tree, scopes.found[0])]
    pop, push, handler_of, scoping_of = stack.pop, stack.append, handlers.get, _SCOPING.get
    while stack:
        node, scope = pop()
        node_type = type(node)
        handler = handler_of(node_type)
        if handler is not None:
            handler(node)  # before the children: parents mark children (docstrings, `m.attr`)
        if node_type is ast.Name:  # no children
            if type(node.ctx) is ast.Load:  # type: ignore[attr-defined]
                scope.loads.append(node)  # type: ignore[arg-type]
            else:
                scope.bound.add(node.id)  # type: ignore[attr-defined]
            continue
        scoping = scoping_of(node_type)
        where = scope if scoping is None else scoping(node, scope, scopes)
        # Children go on the stack last-first, so that nodes are visited in source order.
        if type(where) is _Scope:
            for field in reversed(_child_fields(node_type)):
                value = getattr(node, field, None)
                if type(value) is list:
                    for item in reversed(value):
                        if isinstance(item, ast.AST):
                            push((item, where))
                elif isinstance(value, ast.AST):
                    push((value, where))
        else:
            for field, inner in reversed(where):  # type: ignore[arg-type]
                value = getattr(node, field, None)
                if type(value) is list:
                    for item in reversed(value):
                        if isinstance(item, ast.AST):
                            push((item, inner))
                elif isinstance(value, ast.AST):
                    push((value, inner))
    return scopes.found


class _Scopes:
    """The scopes found so far, the module's first, and one for what no rule reads: type parameters
    (3.12) and everything inside them."""

    __slots__ = ("found", "ignored")

    def __init__(self) -> None:
        self.found = [_Scope(None, "module")]
        self.ignored = _Scope(None, "ignored")

    def open(self, parent: _Scope, kind: str) -> _Scope:
        if parent is self.ignored:
            return parent
        scope = _Scope(parent, kind)
        self.found.append(scope)
        return scope


def _function_scope(node: ast.FunctionDef | ast.AsyncFunctionDef, scope: _Scope, scopes: _Scopes) -> _Where:
    scope.bound.add(node.name)
    inner = scopes.open(scope, "function")
    return (
        ("args", inner),
        ("body", inner),
        ("decorator_list", scope),
        ("returns", scope),
        ("type_params", scopes.ignored),
    )


def _lambda_scope(node: ast.Lambda, scope: _Scope, scopes: _Scopes) -> _Where:
    return scopes.open(scope, "function")


def _arguments_scope(node: ast.arguments, scope: _Scope, scopes: _Scopes) -> _Where:
    outer = scope.parent or scope  # defaults are evaluated where the function is defined
    return (
        ("posonlyargs", scope),
        ("args", scope),
        ("vararg", scope),
        ("kwonlyargs", scope),
        ("kw_defaults", outer),
        ("kwarg", scope),
        ("defaults", outer),
    )


def _arg_scope(node: ast.arg, scope: _Scope, scopes: _Scopes) -> _Where:
    scope.bound.add(node.arg)
    return (("annotation", scope.parent or scope),)


def _class_scope(node: ast.ClassDef, scope: _Scope, scopes: _Scopes) -> _Where:
    scope.bound.add(node.name)
    inner = scopes.open(scope, "class")
    return (
        ("bases", scope),
        ("keywords", scope),
        ("body", inner),
        ("decorator_list", scope),
        ("type_params", scopes.ignored),
    )


def _comprehension_scope(node: ast.ListComp, scope: _Scope, scopes: _Scopes) -> _Where:
    inner = scopes.open(scope, "comprehension")
    inner.first = node.generators[0]
    return inner


def _generator_scope(node: ast.comprehension, scope: _Scope, scopes: _Scopes) -> _Where:
    if scope.first is not node:
        return scope
    return (("target", scope), ("iter", scope.parent or scope), ("ifs", scope))  # the first iterable: outside


def _walrus_scope(node: ast.NamedExpr, scope: _Scope, scopes: _Scopes) -> _Where:
    target = scope
    while target.kind == "comprehension" and target.parent is not None:
        target = target.parent
    return (("target", target), ("value", scope))


def _import_scope(node: ast.Import | ast.ImportFrom, scope: _Scope, scopes: _Scopes) -> _Where:
    for alias in node.names:
        if alias.name != "*":
            scope.bound.add(alias.asname or alias.name.split(".")[0])
    return scope


def _global_scope(node: ast.Global | ast.Nonlocal, scope: _Scope, scopes: _Scopes) -> _Where:
    scope.bound.update(node.names)
    if type(node) is ast.Global:
        scopes.found[0].bound.update(node.names)
    return scope


def _capture_scope(node: ast.ExceptHandler | ast.MatchAs | ast.MatchStar, scope: _Scope, scopes: _Scopes) -> _Where:
    if node.name:
        scope.bound.add(node.name)
    return scope


def _rest_scope(node: ast.MatchMapping, scope: _Scope, scopes: _Scopes) -> _Where:
    if node.rest:
        scope.bound.add(node.rest)
    return scope


# Nodes that bind names or open a scope: what they bind, and the scope of each of their children.
_SCOPING: dict[type[ast.AST], Callable[[Any, _Scope, _Scopes], _Where]] = {
    ast.FunctionDef: _function_scope,
    ast.AsyncFunctionDef: _function_scope,
    ast.Lambda: _lambda_scope,
    ast.arguments: _arguments_scope,
    ast.arg: _arg_scope,
    ast.ClassDef: _class_scope,
    ast.ListComp: _comprehension_scope,
    ast.SetComp: _comprehension_scope,
    ast.GeneratorExp: _comprehension_scope,
    ast.DictComp: _comprehension_scope,
    ast.comprehension: _generator_scope,
    ast.NamedExpr: _walrus_scope,
    ast.Import: _import_scope,
    ast.ImportFrom: _import_scope,
    ast.Global: _global_scope,
    ast.Nonlocal: _global_scope,
    ast.ExceptHandler: _capture_scope,
    ast.MatchAs: _capture_scope,
    ast.MatchStar: _capture_scope,
    ast.MatchMapping: _rest_scope,
}


def _unresolved(scopes: list[_Scope]) -> list[ast.Name]:
    """Names read where neither their scope nor an enclosing one (class bodies skipped) binds them."""
    unresolved = []
    for scope in scopes:
        bound = scope.bound
        for name in scope.loads:
            ident = name.id
            if ident in bound:
                continue
            outer = scope.parent
            while outer is not None and (outer.kind == "class" or ident not in outer.bound):
                outer = outer.parent
            if outer is None:
                unresolved.append(name)
    return unresolved


# ---- one check: the shared context and the rule families ------------------------------------------

F = TypeVar("F", bound="_Family")


class _Check:
    """One check of one text: the inputs and findings every family shares, the families, the walk."""

    def __init__(
        self,
        code: str,
        kind: CodeKind,
        primitives: Sequence[PrimitiveSpec],
        known: Iterable[str],
        defined: Iterable[str] = (),
    ) -> None:
        self.code = code
        self.kind = kind
        self.primitives = {spec.name: spec for spec in primitives}
        self.known = frozenset(known)
        self.defined = frozenset(defined)
        self.findings: list[Finding] = []
        self.scopes: list[_Scope] = []  # filled by the walk, the module's first
        self.tree: ast.Module | None = None
        self._lines: list[str] | None = None
        self._families: dict[type[_Family], _Family] = {}
        for family_type in FAMILIES:  # in order: a family may look up the ones before it
            self._families[family_type] = family_type(self)

    def __getitem__(self, family_type: type[F]) -> F:
        return self._families[family_type]  # type: ignore[return-value]

    def walk(self, tree: ast.Module) -> None:
        """The one walk, then each family's rules that need the whole tree, in registry order."""
        self.tree = tree
        self.scopes = _walk(tree, self._handlers())
        for family in self._families.values():
            family.finish()

    def _handlers(self) -> dict[type[ast.AST], Handler]:
        """Each node type's handlers, in registry order, as one callable."""
        by_type: dict[type[ast.AST], list[Handler]] = {}
        for family in self._families.values():
            for node_type, method in family.handles.items():
                by_type.setdefault(node_type, []).append(getattr(family, method))
        return {node_type: found[0] if len(found) == 1 else _chain(found) for node_type, found in by_type.items()}

    # -- reporting -------------------------------------------------------------------------------

    def report(self, rule: RuleId, node: ast.AST, message: str) -> None:
        if isinstance(node, ast.Attribute) and node.end_lineno is not None and node.end_col_offset is not None:
            # Point at the attribute's name, not at the start of `receiver.name`.
            line = node.end_lineno
            col = max(1, self._column(line, node.end_col_offset) - len(node.attr))
        else:
            line = getattr(node, "lineno", 1)
            col = self._column(line, getattr(node, "col_offset", 0))
        self.findings.append(_finding(rule, line, col, message))

    def report_restricted_python(self, errors: Sequence[str]) -> None:
        """Report RestrictedPython's errors on lines where no other rule reported an error (LA008)."""
        lines_with_errors = {f.line for f in self.findings if f.severity is Severity.error}
        for error in errors:
            match = _RP_LINE.match(error)
            line = int(match.group(1)) if match and match.group(1) != "None" else 1
            message = (match.group(2) if match else error).rstrip(".")
            if line in lines_with_errors:
                continue
            hint = next((h for key, h in _RP_HINTS.items() if message.startswith(key)), None)
            text = f"RestrictedPython: {message}" + (f"; {hint}" if hint else "")
            self.findings.append(_finding(RuleId.restricted_python, line, self._first_column(line), text))

    def _line(self, line: int) -> str:
        if self._lines is None:  # only code with findings pays for the split
            self._lines = re.split(r"\r\n|\r|\n", self.code)
        return self._lines[line - 1] if 0 < line <= len(self._lines) else ""

    def _column(self, line: int, byte_offset: int) -> int:
        """ast columns count UTF-8 bytes; findings count characters from 1."""
        return len(self._line(line).encode()[:byte_offset].decode(errors="ignore")) + 1

    def _first_column(self, line: int) -> int:
        text = self._line(line)
        return len(text) - len(text.lstrip()) + 1


def _chain(handlers: list[Handler]) -> Handler:
    def run(node: ast.AST) -> None:
        for handler in handlers:
            handler(node)

    return run


def _on(*node_types: type[ast.AST]) -> Callable[[Callable], Callable]:
    """Marks a family's method as the handler of ``node_types``."""

    def mark(method: Callable) -> Callable:
        method._node_types = node_types  # type: ignore[attr-defined]
        return method

    return mark


class _Family:
    """A family of rules: its own state, its node handlers (``@_on``), and ``finish`` after the walk."""

    handles: ClassVar[dict[type[ast.AST], str]] = {}  # node type -> method name, from the @_on marks

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.handles = {}
        for name, member in vars(cls).items():
            for node_type in getattr(member, "_node_types", ()):
                if node_type in cls.handles:
                    raise TypeError(f"{cls.__name__} handles {node_type.__name__} twice")
                cls.handles[node_type] = name

    def __init__(self, check: _Check) -> None:
        self.check = check
        self.report = check.report

    def finish(self) -> None:
        """The rules that need the whole tree."""


class _Names(_Family):
    """Names the code binds and reads: LA003 dangerous builtins, LA004 private names, LA013 shadowing.

    The other families bind and check names through :meth:`bind` and :meth:`private`.
    """

    def __init__(self, check: _Check) -> None:
        super().__init__(check)
        self.primitives, self.known = check.primitives, check.known
        self.bound: set[str] = set()  # every name the code binds
        self.functions: set[str] = set()  # the functions it defines
        self.loads: list[ast.Name] = []  # the names it reads (dangerous ones are reported instead)
        self._shadow_reported: set[str] = set()

    def bind(self, name: str, node: ast.AST, what: str) -> None:
        """A name the code binds: checked, remembered, and warned about when it hides something."""
        if self.dangerous(name, node):
            return
        self.private(name, node, what)
        self.bound.add(name)
        if name in self._shadow_reported or name in self.known:
            return
        if name in self.primitives:
            hidden = f"the primitive {self.primitives[name].signature()}"
        elif name in ALLOWED_BUILTINS:
            hidden = f"the builtin {name}()"
        else:
            return
        self._shadow_reported.add(name)
        self.report(RuleId.shadowed_name, node, f"'{name}' hides {hidden} in this code; choose another name")

    def dangerous(self, name: str, node: ast.AST) -> bool:
        # Primitives and known actions are bound by the runner, above the builtins.
        if name in DANGEROUS_BUILTINS and name not in self.primitives and name not in self.known:
            hint = _BUILTIN_HINTS.get(name)
            self.report(
                RuleId.dangerous_builtin,
                node,
                f"'{name}' is not allowed in action code"
                + (f"; {hint}" if hint else "")
                + " (a variable or function of that name is not allowed either)",
            )
            return True
        return False

    def private(self, name: str, node: ast.AST, what: str) -> None:
        if not _is_private(name):
            return
        if what == "attribute":
            advice = "private and special attributes cannot be used; use the object's public methods"
        else:
            advice = f"rename it (e.g. '{name.strip('_') or 'value'}')"
        self.report(
            RuleId.private_name,
            node,
            f"{what} '{name}' starts with '_': names, attributes, parameters and keywords "
            f"starting with '_' are not allowed in action code; {advice}",
        )

    @_on(ast.Name)
    def name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self.bind(node.id, node, "name")
            return
        if self.dangerous(node.id, node):
            return
        self.private(node.id, node, "name")
        if isinstance(node.ctx, ast.Load):
            self.loads.append(node)

    @_on(ast.arg)
    def arg(self, node: ast.arg) -> None:
        self.bind(node.arg, node, "parameter")

    @_on(ast.keyword)
    def keyword(self, node: ast.keyword) -> None:
        if node.arg is not None:
            self.private(node.arg, node, "keyword argument")

    @_on(ast.ExceptHandler, ast.MatchAs, ast.MatchStar)
    def capture(self, node: ast.ExceptHandler | ast.MatchAs | ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name, node, "name")

    @_on(ast.MatchMapping)
    def match_mapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.bind(node.rest, node, "name")

    @_on(ast.FunctionDef, ast.AsyncFunctionDef)
    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.bind(node.name, node, "function")
        self.functions.add(node.name)

    @_on(ast.ClassDef)
    def class_(self, node: ast.ClassDef) -> None:
        self.bind(node.name, node, "class")


class _Shape(_Family):
    """What each kind of code may hold: LA009 action-module shape, LA010 snippet shape, LA017 program
    shape, LA012 forbidden constructs (classes, async, global, decorators, string annotations)."""

    @_on(ast.Module)
    def module(self, node: ast.Module) -> None:
        if self.check.kind is CodeKind.program:
            self._program(node)
            return
        if self.check.kind is not CodeKind.action_module:
            return
        for index, stmt in enumerate(node.body):
            if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.AsyncFunctionDef, ast.ClassDef)):
                continue  # imports are checked on their own; async and class are LA012
            if isinstance(stmt, ast.FunctionDef):
                docstring = ast.get_docstring(stmt, clean=False)
                if not (docstring and docstring.strip()):
                    self.report(
                        RuleId.module_shape,
                        stmt,
                        f"action '{stmt.name}' has no docstring; start its body with a string that "
                        "says what it does, when it can be used and what it returns",
                    )
            elif not (index == 0 and _is_docstring(stmt)):
                word = _STATEMENT_WORDS.get(type(stmt), f"{type(stmt).__name__.lower()} statement")
                self.report(
                    RuleId.module_shape,
                    stmt,
                    f"a top-level {word} is not allowed in an action module (it would run when the "
                    "module is loaded); an action module holds only imports and function definitions "
                    "with docstrings: move this code into a function",
                )

    def _program(self, node: ast.Module) -> None:
        """A program runs once: one that only defines functions does nothing (LA017, a warning)."""
        definitions = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        body = node.body[1:] if node.body and _is_docstring(node.body[0]) else node.body
        functions = [s for s in body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
        if functions and all(isinstance(s, definitions) for s in body):
            self.report(
                RuleId.program_shape,
                functions[-1],
                "this program only defines functions, so running it does nothing; end it with the "
                f"top-level call that does the task, e.g. {functions[-1].name}(...)",
            )

    @_on(ast.FunctionDef, ast.AsyncFunctionDef)
    def function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.report(
                RuleId.forbidden_construct,
                decorator,
                "decorators are not allowed (they run code when the function is defined); "
                "call the helper inside the function instead",
            )
        if isinstance(node, ast.AsyncFunctionDef):
            self.report(
                RuleId.forbidden_construct, node, f"async function '{node.name}' is not allowed; write a plain def"
            )
        elif self.check.kind is CodeKind.agent_snippet:
            self.report(
                RuleId.snippet_shape,
                node,
                f"function '{node.name}' cannot be defined in an agent snippet; a snippet calls "
                "primitives and learned actions (new actions belong in an action module; code that "
                "defines helpers and calls them is a program)",
            )
        self._string_annotation(node.returns)

    @_on(ast.arg)
    def arg(self, node: ast.arg) -> None:
        self._string_annotation(node.annotation)

    @_on(ast.AnnAssign)
    def ann_assign(self, node: ast.AnnAssign) -> None:
        self._string_annotation(node.annotation)

    @_on(ast.ClassDef)
    def class_(self, node: ast.ClassDef) -> None:
        self.report(
            RuleId.forbidden_construct,
            node,
            f"class '{node.name}' is not allowed: actions are plain functions; use dicts, lists or tuples for data",
        )

    @_on(ast.Global, ast.Nonlocal)
    def global_(self, node: ast.Global | ast.Nonlocal) -> None:
        word = "global" if isinstance(node, ast.Global) else "nonlocal"
        self.report(
            RuleId.forbidden_construct,
            node,
            f"'{word}' is not allowed: actions must not keep state between calls; "
            "pass values as arguments and return results",
        )

    @_on(ast.AsyncFor, ast.AsyncWith, ast.Await)
    def async_(self, node: ast.AST) -> None:
        self.report(RuleId.forbidden_construct, node, "async code ('await', 'async for', 'async with') is not allowed")

    def _string_annotation(self, annotation: ast.expr | None) -> None:
        if annotation is None:
            return
        for sub in ast.walk(annotation):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                self.report(
                    RuleId.forbidden_construct,
                    sub,
                    "string annotations are not allowed (typing helpers evaluate them as code); "
                    "write the type itself, e.g. list[str], or leave the annotation out",
                )


class _Attributes(_Family):
    """Attribute names: LA004 private attributes, LA016 attributes the sandbox denies on every object."""

    def __init__(self, check: _Check) -> None:
        super().__init__(check)
        self.names = check[_Names]

    @_on(ast.Attribute)
    def attribute(self, node: ast.Attribute) -> None:
        self.names.private(node.attr, node, "attribute")
        if node.attr in DENIED_ATTRIBUTES and node.attr not in _FORMAT_ON_ANY:
            self.report(
                RuleId.denied_attribute,
                node,
                f"attribute '{node.attr}' is not available in action code: the sandbox refuses it on "
                "every object (frame, code, traceback and generator internals, mro and vformat lead "
                "to other modules' globals); work with the values themselves",
            )

    @_on(ast.MatchClass)
    def match_class(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:
            self.names.private(attr, node, "attribute")


class _Undefined(_Family):
    """Names read that no enclosing scope binds and that the session does not provide: LA015."""

    def __init__(self, check: _Check) -> None:
        super().__init__(check)
        self.names = check[_Names]
        self.undefined: set[int] = set()  # ids of the Name nodes read that nothing binds

    def is_undefined(self, node: ast.AST) -> bool:
        return id(node) in self.undefined

    def finish(self) -> None:
        check = self.check
        available = ALLOWED_BUILTINS | check.known | check.defined
        calls = {id(call.func) for call in check[_Calls].calls}
        reported: set[str] = set()
        unresolved = sorted(_unresolved(check.scopes), key=lambda n: (n.lineno, n.col_offset))
        for name in unresolved:
            ident = name.id
            if ident in available or ident in check.primitives or ident in DANGEROUS_BUILTINS or _is_private(ident):
                continue  # dangerous and private names have their own rules
            self.undefined.add(id(name))
            if id(name) in calls or ident in reported:
                continue  # a call is LA006; one finding per name is enough
            reported.add(ident)
            self._undefined_name(name)
        if check.kind is CodeKind.program and check.tree is not None:
            self._used_before_definition(check.tree, check.known | check.defined)

    def _used_before_definition(self, tree: ast.Module, available: frozenset[str]) -> None:
        """Top-level code that reads a function defined only further down fails with a NameError.

        Function bodies run later, so they may call functions defined after them; the top level and
        the comprehensions it runs at once may not. Only names that nothing but a top-level ``def``
        binds are considered (an earlier assignment or session value makes the read valid).
        """
        body = tree.body
        defined_at: dict[str, int] = {}
        for index, stmt in enumerate(body):
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined_at.setdefault(stmt.name, index)
        if not defined_at:
            return
        others = [s for s in body if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))]
        assigned = _walk(ast.Module(body=others, type_ignores=[]), {})[0].bound if others else set()
        starts = [(stmt.lineno, stmt.col_offset) for stmt in body]
        reported: set[str] = set()
        for scope in self.check.scopes:
            outer = scope
            while outer.kind == "comprehension" and outer.parent is not None:
                outer = outer.parent
            if outer.kind != "module":
                continue  # a function or lambda body runs later, when everything is defined
            for name in scope.loads:
                ident = name.id
                index = defined_at.get(ident)
                if index is None or ident in reported or ident in assigned or ident in available:
                    continue
                if scope.kind == "comprehension" and ident in scope.bound:
                    continue
                if bisect.bisect_right(starts, (name.lineno, name.col_offset)) - 1 >= index:
                    continue
                reported.add(ident)
                self.report(
                    RuleId.undefined_name,
                    name,
                    f"'{ident}' is used before it is defined: 'def {ident}' comes at line "
                    f"{body[index].lineno}, after this line, and top-level code runs in order; move "
                    "this code below the definition (functions may call functions defined later)",
                )

    def _undefined_name(self, node: ast.Name) -> None:
        name, primitives = node.id, self.check.primitives
        if name in ALLOWED_MODULES:
            self.report(RuleId.undefined_name, node, f"'{name}' is not defined: import it first ('import {name}')")
            return
        actions = self.check.known | self.names.functions
        text = f"'{name}' is not defined: nothing in this code assigns it"
        if name in _STDLIB_MODULES:
            text += f"; module '{name}' cannot be used in an action (allowed imports: {_ALLOWED_MODULE_LIST})"
        else:
            text += (
                f"; assign it first, or use a primitive ({_listing(primitives) or 'none'})"
                + (f", an action ({_listing(actions)})" if actions else "")
                + " or an allowed builtin (len, range, sorted, ...)"
            )
            candidates = self.names.bound | set(primitives) | actions | ALLOWED_BUILTINS
            close = difflib.get_close_matches(name, candidates, n=1)
            if close:
                text += f"; did you mean '{close[0]}'?"
        self.report(RuleId.undefined_name, node, text)


class _Calls(_Family):
    """Calls of plain names: LA006 unknown calls, LA007 primitive calls with wrong arguments."""

    def __init__(self, check: _Check) -> None:
        super().__init__(check)
        self.names = check[_Names]
        self.calls: list[ast.Call] = []  # `name(...)`

    @_on(ast.Call)
    def call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            self.calls.append(node)

    def finish(self) -> None:
        undefined, bound, known = self.check[_Undefined], self.names.bound, self.check.known
        primitives = self.check.primitives
        for call in self.calls:
            name = call.func.id  # type: ignore[attr-defined]
            if name in DANGEROUS_BUILTINS:
                continue  # dangerous names are reported where they appear
            if undefined.is_undefined(call.func):
                self._unknown_call(name, call)
            elif name in primitives and name not in bound and name not in known:
                self._primitive_call(primitives[name], call)

    def _unknown_call(self, name: str, call: ast.Call) -> None:
        primitives = self.check.primitives
        actions = self.check.known | self.names.functions
        candidates = set(primitives) | actions | ALLOWED_BUILTINS
        close = difflib.get_close_matches(name, candidates, n=1)
        text = f"'{name}' is not defined: call a primitive ({_listing(primitives) or 'none'})"
        text += f", an action ({_listing(actions)})" if actions else ", an action defined in this code"
        text += " or an allowed builtin (len, range, sorted, ...)"
        if close:
            text += f"; did you mean '{close[0]}'?"
        self.report(RuleId.unknown_call, call, text)

    def _primitive_call(self, spec: PrimitiveSpec, call: ast.Call) -> None:
        params = [p.name for p in spec.params]
        call_name = f"{spec.name}()"
        takes = f"takes {_plural(len(params), 'argument')} ({', '.join(params)})" if params else "takes no arguments"
        unpacked = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
        given: dict[str, ast.expr] = {}
        if not unpacked and len(call.args) > len(params):
            count = len(call.args)
            text = f"{call_name} {takes} but {count} {'was' if count == 1 else 'were'} given"
            self.report(RuleId.primitive_call, call, text)
            return
        given.update(zip(params, call.args))
        for keyword in call.keywords:
            if keyword.arg is None:
                continue
            if keyword.arg not in params:
                self.report(
                    RuleId.primitive_call,
                    keyword,
                    f"{call_name} got an unexpected keyword argument '{keyword.arg}'; it {takes}",
                )
            elif keyword.arg in given:
                text = f"{call_name} got multiple values for argument '{keyword.arg}'"
                self.report(RuleId.primitive_call, keyword, text)
            else:
                given[keyword.arg] = keyword.value
        missing = [p for p in params if p not in given]
        if missing and not unpacked:
            self.report(
                RuleId.primitive_call,
                call,
                f"{call_name} missing {_plural(len(missing), 'required argument')}: "
                + ", ".join(f"'{p}'" for p in missing)
                + f" (it {takes})",
            )
        for param in spec.params:
            value = given.get(param.name)
            if not isinstance(value, ast.Constant):
                continue
            wanted = str if param.type == "str" else int
            if not isinstance(value.value, wanted) or isinstance(value.value, bool):
                word = "a string" if param.type == "str" else "an integer"
                self.report(
                    RuleId.primitive_call,
                    value,
                    f"{call_name} argument '{param.name}' must be {word}, got {value.value!r}",
                )


class _Modules(_Family):
    """Imports and the use of allowed modules: LA002 imports, LA011 module members, module values and
    the arguments the sandbox refuses to reviewed members."""

    def __init__(self, check: _Check) -> None:
        super().__init__(check)
        self.names = check[_Names]
        self.modules: dict[str, str] = {}  # name bound by an import -> allowed module
        self.imported_members: dict[str, tuple[str, str]] = {}  # `from m import name as bound`
        self.module_bases: set[int] = set()  # ids of Name nodes that are the `m` of `m.attr`
        self.attributes_of_names: list[ast.Attribute] = []  # `m.attr`
        self.member_calls: list[ast.Call] = []  # `m.name(...)`

    @_on(ast.Import)
    def import_(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                self._import_refused(alias.name, alias)
                continue
            bound = alias.asname or alias.name
            self.names.bind(bound, alias, "import alias")
            self.modules[bound] = alias.name

    @_on(ast.ImportFrom)
    def import_from(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.report(
                RuleId.import_not_allowed,
                node,
                f"relative imports are not allowed in an action; allowed modules: {_ALLOWED_MODULE_LIST}",
            )
            return
        module = node.module or ""
        if module not in ALLOWED_MODULES:
            self._import_refused(module, node)
            return
        api = module_api(module)
        for alias in node.names:
            if alias.name == "*":
                text = f"'from {module} import *' is not allowed; import the names you use"
                self.report(RuleId.import_not_allowed, alias, text)
                continue
            if _is_private(alias.name):
                self.names.private(alias.name, alias, "imported name")
            elif alias.name not in api:
                self._member_refused(module, alias.name, alias)
            self.names.bind(alias.asname or alias.name, alias, "import alias")
            self.imported_members[alias.asname or alias.name] = (module, alias.name)

    @_on(ast.Attribute)
    def attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            self.attributes_of_names.append(node)
            self.module_bases.add(id(node.value))

    @_on(ast.Call)
    def call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            self.member_calls.append(node)

    def finish(self) -> None:
        if self.modules:
            self._module_uses()
        self._reviewed_calls()

    def _module_uses(self) -> None:
        for node in self.attributes_of_names:
            module = self.modules.get(node.value.id)  # type: ignore[attr-defined]
            if module and not _is_private(node.attr) and node.attr not in module_api(module):
                self._member_refused(module, node.attr, node)
        for name in self.names.loads:
            module = self.modules.get(name.id)
            if module and id(name) not in self.module_bases:
                self.report(
                    RuleId.module_attribute,
                    name,
                    f"module '{name.id}' can only be used as {name.id}.NAME (e.g. {name.id}."
                    f"{min(module_api(module))}), not as a value",
                )

    def _reviewed_calls(self) -> None:
        """``json.dumps(cls=...)``, ``copy.deepcopy(x, memo)``: arguments the sandbox refuses (LA011)."""
        for call in self.member_calls:
            func = call.func
            module = self.modules.get(func.value.id)  # type: ignore[attr-defined]
            if module is not None and (module, func.attr) in REVIEWED_CALLS:  # type: ignore[attr-defined]
                self._reviewed_call((module, func.attr), call)  # type: ignore[attr-defined]
        for call in self.check[_Calls].calls:
            member = self.imported_members.get(call.func.id)  # type: ignore[attr-defined]
            if member in REVIEWED_CALLS:
                self._reviewed_call(member, call)

    def _reviewed_call(self, member: tuple[str, str], call: ast.Call) -> None:
        positional, keywords = REVIEWED_CALLS[member]
        name = ".".join(member)
        accepted = ", ".join(sorted(keywords)) or "none"
        if len(call.args) > positional:
            self.report(
                RuleId.module_attribute,
                call,
                f"{name}() takes {_plural(positional, 'positional argument')} in action code "
                f"(keyword arguments accepted: {accepted})",
            )
        for keyword in call.keywords:
            if keyword.arg is not None and keyword.arg not in keywords:
                self.report(
                    RuleId.module_attribute,
                    keyword,
                    f"{name}() does not accept '{keyword.arg}' in action code (the sandbox refuses "
                    f"arguments that choose classes or collect internal objects); accepted: {accepted}",
                )

    def _import_refused(self, module: str, node: ast.AST) -> None:
        self.report(
            RuleId.import_not_allowed,
            node,
            f"module '{module}' cannot be imported in an action; allowed: {_ALLOWED_MODULE_LIST}",
        )

    def _member_refused(self, module: str, member: str, node: ast.AST) -> None:
        self.report(
            RuleId.module_attribute,
            node,
            f"'{module}.{member}' is not available to actions: only the reviewed members of "
            f"'{module}' can be used ({_listing(module_api(module))}), not its submodules, imported "
            "modules or helpers that read attributes by name",
        )


class _FormatStrings(_Family):
    """Format strings and the format methods: LA005 fields that read attributes, LA014 ``.format``."""

    def __init__(self, check: _Check) -> None:
        super().__init__(check)
        self.docstrings: set[int] = set()  # ids of docstring constants (never format strings)
        self.strings: list[ast.Constant] = []  # string literals with a '{'
        self.uses_format = False
        self.str_formats: list[ast.Attribute] = []  # `"...".format`, `x.format_map`, ...

    @_on(ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)
    def docstring(self, node: ast.Module | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        body = node.body
        if body and _is_docstring(body[0]):
            self.docstrings.add(id(body[0].value))  # type: ignore[attr-defined]

    @_on(ast.Constant)
    def constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and id(node) not in self.docstrings and "{" in node.value:
            self.strings.append(node)

    @_on(ast.Attribute)
    def attribute(self, node: ast.Attribute) -> None:
        if node.attr in FORMAT_METHODS:
            self.uses_format = True
            if node.attr != "vformat":  # refused at run time on every object, not only on str
                self.str_formats.append(node)

    def finish(self) -> None:
        if not self.uses_format:
            return
        unsafe: set[int] = set()
        for node in self.strings:
            for field in _bad_format_fields(node.value):
                unsafe.add(id(node))
                self.report(
                    RuleId.format_attribute,
                    node,
                    f"format field '{field}' reads an attribute or an index; fields used with "
                    "str.format may only name an argument ('{0}', '{name}'): pass the value itself",
                )
        for node in self.str_formats:
            if id(node.value) in unsafe:  # one finding per literal is enough
                continue
            receiver = node.value
            if (isinstance(receiver, ast.Constant) and isinstance(receiver.value, str)) or (
                isinstance(receiver, ast.Name) and receiver.id == "str"
            ):
                what = f"str.{node.attr}() is not available in action code (the sandbox refuses it)"
            else:
                what = (
                    f"'.{node.attr}()' is not available in action code (the sandbox refuses the "
                    "format methods on every object: they read attributes named in the text)"
                )
            self.report(RuleId.str_format, node, what + '; use an f-string, e.g. f"{block} is clear"')


# The rule families, in order: each node goes to its families' handlers in this order, and their
# `finish` runs in this order (LA015 before LA006: an unknown call is a call of an undefined name).
FAMILIES: tuple[type[_Family], ...] = (_Names, _Shape, _Attributes, _Undefined, _Calls, _Modules, _FormatStrings)


# ---- helpers -----------------------------------------------------------------------------------------


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_private(name: str) -> bool:
    return name.startswith("_") and name != "_"


def _listing(names: Iterable[str]) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:_LIST_LIMIT])
    return shown + (", ..." if len(ordered) > _LIST_LIMIT else "")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _bad_format_fields(text: str) -> list[str]:
    """Replacement fields of ``text`` that read an attribute or an index, nested specs included."""
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError:
        match = _PARTIAL_FIELD.search(text)
        return [match.group(0)] if match else []
    bad: list[str] = []
    for _literal, field, spec, _conversion in parsed:
        if field is None:
            continue
        if "." in field or "[" in field:
            bad.append("{" + field + "}")
        if spec and "{" in spec:
            bad.extend(_bad_format_fields(spec))
    return bad
