"""Static check of model-written action code: the first filter and the source of precise feedback.

The rules (ids, severities, reasons) are listed in :mod:`learnact.actions.rules`; what code may use is
in :mod:`learnact.actions.policy`. Findings carry 1-based lines and 1-based character columns.

One parse, one compile for the errors found after parsing, one iterative walk that collects what the
rules need, then RestrictedPython's transformer on the same tree (it mutates the tree, so it runs
last). The compile and RestrictedPython's verdict depend on the text alone and are remembered for
recent texts. The check is not the security boundary: the sandbox must hold without it.
"""

from __future__ import annotations

import ast
import difflib
import re
import string
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING

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
from learnact.actions.rules import RULES_BY_ID

if TYPE_CHECKING:  # envs is a sibling room: only the type is needed here
    from learnact.envs.base import PrimitiveSpec

FORMAT_METHODS = frozenset({"format", "format_map", "vformat"})
_FORMAT_ON_ANY = frozenset({"format", "format_map"})  # LA014; the other denied attributes are LA016
_STDLIB_MODULES = frozenset(sys.stdlib_module_names)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
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
        return [_finding("LA001", 1, 1, f"the code is {len(code)} characters long; the limit is {MAX_CODE_CHARS}")]
    restricted = _TEXT_VERDICTS.get(code)  # known: the text compiles, RestrictedPython said this
    try:
        tree = ast.parse(code, "<action>")
        if restricted is None:
            # The parser leaves some errors to the compiler ('return' outside a function, ...).
            compile(code, "<action>", "exec", dont_inherit=True)
    except SyntaxError as error:
        return [_syntax_finding(error)]
    except (RecursionError, MemoryError):
        return [_finding("LA001", 1, 1, "the code is nested too deeply to be parsed; simplify it")]
    except ValueError as error:  # null bytes on Python 3.10
        return [_finding("LA001", 1, 1, f"the code cannot be parsed: {error}")]
    scan = _Scan(code, kind, primitives, known, defined)
    try:
        scan.run(tree)
        if restricted is None:
            restricted = _restricted_python_errors(tree)
            _TEXT_VERDICTS.put(code, restricted)
    except RecursionError:
        return [_finding("LA001", 1, 1, "the code is nested too deeply to be checked; simplify it")]
    scan.report_restricted_python(restricted)
    return sorted(scan.findings, key=lambda f: (f.line, f.col, f.rule))


def bound_names(code: str) -> frozenset[str]:
    """The names that running ``code`` may leave in the session's namespace: its module-level
    bindings (assignments, loop targets, imports, definitions, ...). Empty when it does not parse."""
    if len(code) > MAX_CODE_CHARS:
        return frozenset()
    try:
        return frozenset(_scopes(ast.parse(code))[0].bound)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return frozenset()


def infer_kind(code: str) -> CodeKind:
    """An action module when the code holds only imports and function definitions, else a snippet."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return CodeKind.agent_snippet
    if body and _is_docstring(body[0]):
        body = body[1:]
    module_statements = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    if (
        body
        and any(isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) for s in body)
        and all(isinstance(s, module_statements) for s in body)
    ):
        return CodeKind.action_module
    return CodeKind.agent_snippet


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


def _finding(rule: str, line: int, col: int, message: str) -> Finding:
    return Finding(rule=rule, severity=RULES_BY_ID[rule].severity, line=line, col=col, message=message)


def _syntax_finding(error: SyntaxError) -> Finding:
    text = f"syntax error: {error.msg}"
    if error.text and error.text.strip():
        text += f" in `{error.text.strip()[:80]}`"
    return _finding("LA001", error.lineno or 1, error.offset or 1, text)


@cache
def _child_fields(node_type: type[ast.AST]) -> tuple[str, ...]:
    """The fields that may hold child nodes; `ctx` (Load/Store/Del) never matters to a rule."""
    return tuple(field for field in node_type._fields if field != "ctx")


class _Scope:
    """One of Python's name scopes: what it binds and the names read in it."""

    __slots__ = ("parent", "kind", "bound", "loads")

    def __init__(self, parent: _Scope | None, kind: str) -> None:
        self.parent, self.kind = parent, kind
        self.bound: set[str] = set()
        self.loads: list[ast.Name] = []


def _scopes(tree: ast.Module) -> list[_Scope]:
    """The scopes of ``tree`` (the module's first), as Python's compiler sees them.

    Functions and lambdas see the names of every enclosing function and of the module, not those of
    a class body; a comprehension is a scope of its own whose first iterable is read outside it; a
    walrus in a comprehension binds in the enclosing function. Iterative, like the main walk.
    """
    module = _Scope(None, "module")
    scopes = [module]
    stack: list[tuple[ast.AST, _Scope]] = [(tree, module)]
    pop, push = stack.pop, stack.append
    while stack:
        node, scope = pop()
        node_type = type(node)
        if node_type is ast.Name:
            if type(node.ctx) is ast.Load:  # type: ignore[attr-defined]
                scope.loads.append(node)  # type: ignore[arg-type]
            else:
                scope.bound.add(node.id)  # type: ignore[attr-defined]
            continue
        if node_type is ast.FunctionDef or node_type is ast.AsyncFunctionDef or node_type is ast.Lambda:
            inner = _Scope(scope, "function")
            scopes.append(inner)
            args: ast.arguments = node.args  # type: ignore[attr-defined]
            outside: list[ast.AST] = [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
            if node_type is ast.Lambda:
                push((node.body, inner))  # type: ignore[attr-defined]
            else:
                scope.bound.add(node.name)  # type: ignore[attr-defined]
                outside += node.decorator_list  # type: ignore[attr-defined]
                if node.returns is not None:  # type: ignore[attr-defined]
                    outside.append(node.returns)  # type: ignore[attr-defined]
                for stmt in node.body:  # type: ignore[attr-defined]
                    push((stmt, inner))
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            for arg in every:
                if arg is not None:
                    inner.bound.add(arg.arg)
                    if arg.annotation is not None:
                        outside.append(arg.annotation)
            for child in outside:
                push((child, scope))
            continue
        if node_type is ast.ClassDef:
            scope.bound.add(node.name)  # type: ignore[attr-defined]
            inner = _Scope(scope, "class")
            scopes.append(inner)
            for child in (*node.decorator_list, *node.bases, *node.keywords):  # type: ignore[attr-defined]
                push((child, scope))
            for stmt in node.body:  # type: ignore[attr-defined]
                push((stmt, inner))
            continue
        if node_type in _COMPREHENSIONS:
            inner = _Scope(scope, "comprehension")
            scopes.append(inner)
            generators: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
            push((generators[0].iter, scope))
            for index, generator in enumerate(generators):
                push((generator.target, inner))
                for condition in generator.ifs:
                    push((condition, inner))
                if index:
                    push((generator.iter, inner))
            parts = (node.key, node.value) if node_type is ast.DictComp else (node.elt,)  # type: ignore[attr-defined]
            for child in parts:
                push((child, inner))
            continue
        if node_type is ast.NamedExpr:
            target = scope
            while target.kind == "comprehension" and target.parent is not None:
                target = target.parent
            target.bound.add(node.target.id)  # type: ignore[attr-defined]
            push((node.value, scope))  # type: ignore[attr-defined]
            continue
        if node_type is ast.Import or node_type is ast.ImportFrom:
            for alias in node.names:  # type: ignore[attr-defined]
                if alias.name != "*":
                    scope.bound.add(alias.asname or alias.name.split(".")[0])
            continue
        if node_type is ast.Global or node_type is ast.Nonlocal:
            scope.bound.update(node.names)  # type: ignore[attr-defined]
            if node_type is ast.Global:
                module.bound.update(node.names)  # type: ignore[attr-defined]
            continue
        if node_type is ast.ExceptHandler or node_type is ast.MatchAs or node_type is ast.MatchStar:
            if node.name:  # type: ignore[attr-defined]
                scope.bound.add(node.name)  # type: ignore[attr-defined]
        elif node_type is ast.MatchMapping and node.rest:  # type: ignore[attr-defined]
            scope.bound.add(node.rest)  # type: ignore[attr-defined]
        for field in _child_fields(node_type):
            value = getattr(node, field, None)
            if type(value) is list:
                for item in value:
                    if isinstance(item, ast.AST):
                        push((item, scope))
            elif isinstance(value, ast.AST):
                push((value, scope))
    return scopes


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


class _Scan:
    """One walk over the tree; rules that need the whole tree are resolved after it."""

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
        self._lines: list[str] | None = None
        self.functions: set[str] = set()
        self.bound: set[str] = set()
        self.shadow_reported: set[str] = set()
        self.calls: list[ast.Call] = []
        self.modules: dict[str, str] = {}  # name bound by an import -> allowed module
        self.module_bases: set[int] = set()  # ids of Name nodes that are the `m` of `m.attr`
        self.attributes_of_names: list[ast.Attribute] = []
        self.loads: list[ast.Name] = []
        self.docstrings: set[int] = set()
        self.strings: list[ast.Constant] = []
        self.uses_format = False
        self.str_formats: list[ast.Attribute] = []  # `"...".format`, `x.format_map`, ...
        self.member_calls: list[ast.Call] = []  # `m.name(...)`
        self.imported_members: dict[str, tuple[str, str]] = {}  # `from m import name as bound`
        self.undefined: dict[int, ast.Name] = {}  # id -> a Name read that no scope binds
        self.handlers = {
            ast.Module: self._module,
            ast.FunctionDef: self._function,
            ast.AsyncFunctionDef: self._function,
            ast.arg: self._arg,
            ast.ClassDef: self._class,
            ast.Name: self._name,
            ast.Attribute: self._attribute,
            ast.Call: self._call,
            ast.keyword: self._keyword,
            ast.Import: self._import,
            ast.ImportFrom: self._import_from,
            ast.Constant: self._constant,
            ast.ExceptHandler: self._except_handler,
            ast.AnnAssign: self._ann_assign,
            ast.Global: self._global,
            ast.Nonlocal: self._global,
            ast.AsyncFor: self._async,
            ast.AsyncWith: self._async,
            ast.Await: self._async,
            ast.MatchAs: self._match_capture,
            ast.MatchStar: self._match_capture,
            ast.MatchMapping: self._match_mapping,
            ast.MatchClass: self._match_class,
        }

    # -- reporting -------------------------------------------------------------------------------

    def report(self, rule: str, node: ast.AST, message: str) -> None:
        if isinstance(node, ast.Attribute) and node.end_lineno is not None and node.end_col_offset is not None:
            # Point at the attribute's name, not at the start of `receiver.name`.
            line = node.end_lineno
            col = max(1, self._column(line, node.end_col_offset) - len(node.attr))
        else:
            line = getattr(node, "lineno", 1)
            col = self._column(line, getattr(node, "col_offset", 0))
        self.findings.append(_finding(rule, line, col, message))

    def _line(self, line: int) -> str:
        if self._lines is None:  # only code with findings pays for the split
            self._lines = re.split(r"\r\n|\r|\n", self.code)
        return self._lines[line - 1] if 0 < line <= len(self._lines) else ""

    def _column(self, line: int, byte_offset: int) -> int:
        """ast columns count UTF-8 bytes; findings count characters from 1."""
        return len(self._line(line).encode()[:byte_offset].decode(errors="ignore")) + 1

    # -- the walk --------------------------------------------------------------------------------

    def run(self, tree: ast.Module) -> None:
        stack: list[ast.AST] = [tree]
        pop, push, handlers = stack.pop, stack.append, self.handlers
        while stack:
            node = pop()
            node_type = type(node)
            handler = handlers.get(node_type)
            if handler is not None:
                handler(node)  # before the children: parents mark children (docstrings, `m.attr`)
            # Children go on the stack last-first, so that nodes are visited in source order.
            for field in reversed(_child_fields(node_type)):
                value = getattr(node, field, None)
                if type(value) is list:
                    for item in reversed(value):
                        if isinstance(item, ast.AST):
                            push(item)
                elif isinstance(value, ast.AST):
                    push(value)
        self._find_undefined(tree)
        self._resolve_calls()
        self._resolve_modules()
        self._resolve_reviewed_calls()
        if self.uses_format:
            self._format_strings()

    def report_restricted_python(self, errors: Sequence[str]) -> None:
        """Report RestrictedPython's errors on lines where no other rule reported an error."""
        lines_with_errors = {f.line for f in self.findings if f.severity is Severity.error}
        for error in errors:
            match = _RP_LINE.match(error)
            line = int(match.group(1)) if match and match.group(1) != "None" else 1
            message = (match.group(2) if match else error).rstrip(".")
            if line in lines_with_errors:
                continue
            hint = next((h for key, h in _RP_HINTS.items() if message.startswith(key)), None)
            text = f"RestrictedPython: {message}" + (f"; {hint}" if hint else "")
            self.findings.append(_finding("LA008", line, self._first_column(line), text))

    def _first_column(self, line: int) -> int:
        text = self._line(line)
        return len(text) - len(text.lstrip()) + 1

    # -- names -----------------------------------------------------------------------------------

    def _allowed_override(self, name: str) -> bool:
        """Primitives and known actions are bound by the runner, above the builtins."""
        return name in self.primitives or name in self.known

    def _dangerous(self, name: str, node: ast.AST) -> bool:
        if name in DANGEROUS_BUILTINS and not self._allowed_override(name):
            hint = _BUILTIN_HINTS.get(name)
            self.report(
                "LA003",
                node,
                f"'{name}' is not allowed in action code"
                + (f"; {hint}" if hint else "")
                + " (a variable or function of that name is not allowed either)",
            )
            return True
        return False

    def _private(self, name: str, node: ast.AST, what: str) -> None:
        if not _is_private(name):
            return
        if what == "attribute":
            advice = "private and special attributes cannot be used; use the object's public methods"
        else:
            advice = f"rename it (e.g. '{name.strip('_') or 'value'}')"
        self.report(
            "LA004",
            node,
            f"{what} '{name}' starts with '_': names, attributes, parameters and keywords "
            f"starting with '_' are not allowed in action code; {advice}",
        )

    def _bind(self, name: str, node: ast.AST, what: str) -> None:
        """A name the code binds: checked, remembered, and warned about when it hides something."""
        if self._dangerous(name, node):
            return
        self._private(name, node, what)
        self.bound.add(name)
        if name in self.shadow_reported or name in self.known:
            return
        if name in self.primitives:
            hidden = f"the primitive {self.primitives[name].signature()}"
        elif name in ALLOWED_BUILTINS:
            hidden = f"the builtin {name}()"
        else:
            return
        self.shadow_reported.add(name)
        self.report("LA013", node, f"'{name}' hides {hidden} in this code; choose another name")

    def _name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self._bind(node.id, node, "name")
            return
        if self._dangerous(node.id, node):
            return
        self._private(node.id, node, "name")
        if isinstance(node.ctx, ast.Load):
            self.loads.append(node)

    def _arg(self, node: ast.arg) -> None:
        self._bind(node.arg, node, "parameter")
        self._string_annotation(node.annotation)

    def _keyword(self, node: ast.keyword) -> None:
        if node.arg is not None:
            self._private(node.arg, node, "keyword argument")

    def _except_handler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._bind(node.name, node, "name")

    def _match_capture(self, node: ast.MatchAs | ast.MatchStar) -> None:
        if node.name:
            self._bind(node.name, node, "name")

    def _match_mapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self._bind(node.rest, node, "name")

    def _match_class(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:
            self._private(attr, node, "attribute")

    # -- definitions and shape ----------------------------------------------------------------------

    def _module(self, node: ast.Module) -> None:
        body = node.body
        if body and _is_docstring(body[0]):
            self.docstrings.add(id(body[0].value))
        if self.kind is not CodeKind.action_module:
            return
        for index, stmt in enumerate(body):
            if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.AsyncFunctionDef, ast.ClassDef)):
                continue  # imports are checked on their own; async and class are LA012
            if isinstance(stmt, ast.FunctionDef):
                docstring = ast.get_docstring(stmt, clean=False)
                if not (docstring and docstring.strip()):
                    self.report(
                        "LA009",
                        stmt,
                        f"action '{stmt.name}' has no docstring; start its body with a string that "
                        "says what it does, when it can be used and what it returns",
                    )
            elif not (index == 0 and _is_docstring(stmt)):
                word = _STATEMENT_WORDS.get(type(stmt), f"{type(stmt).__name__.lower()} statement")
                self.report(
                    "LA009",
                    stmt,
                    f"a top-level {word} is not allowed in an action module (it would run when the "
                    "module is loaded); an action module holds only imports and function definitions "
                    "with docstrings: move this code into a function",
                )

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._bind(node.name, node, "function")
        self.functions.add(node.name)
        if node.body and _is_docstring(node.body[0]):
            self.docstrings.add(id(node.body[0].value))  # type: ignore[attr-defined]
        for decorator in node.decorator_list:
            self.report(
                "LA012",
                decorator,
                "decorators are not allowed (they run code when the function is defined); "
                "call the helper inside the function instead",
            )
        if isinstance(node, ast.AsyncFunctionDef):
            self.report("LA012", node, f"async function '{node.name}' is not allowed; write a plain def")
        elif self.kind is CodeKind.agent_snippet:
            self.report(
                "LA010",
                node,
                f"function '{node.name}' cannot be defined in an agent snippet; a snippet calls "
                "primitives and learned actions (new actions belong in an action module)",
            )
        self._string_annotation(node.returns)

    def _class(self, node: ast.ClassDef) -> None:
        self._bind(node.name, node, "class")
        self.report(
            "LA012",
            node,
            f"class '{node.name}' is not allowed: actions are plain functions; use dicts, lists or tuples for data",
        )

    def _global(self, node: ast.Global | ast.Nonlocal) -> None:
        word = "global" if isinstance(node, ast.Global) else "nonlocal"
        self.report(
            "LA012",
            node,
            f"'{word}' is not allowed: actions must not keep state between calls; "
            "pass values as arguments and return results",
        )

    def _async(self, node: ast.AST) -> None:
        self.report("LA012", node, "async code ('await', 'async for', 'async with') is not allowed")

    def _ann_assign(self, node: ast.AnnAssign) -> None:
        self._string_annotation(node.annotation)

    def _string_annotation(self, annotation: ast.expr | None) -> None:
        if annotation is None:
            return
        for sub in ast.walk(annotation):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                self.report(
                    "LA012",
                    sub,
                    "string annotations are not allowed (typing helpers evaluate them as code); "
                    "write the type itself, e.g. list[str], or leave the annotation out",
                )

    # -- imports and modules -------------------------------------------------------------------------

    def _import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                self._import_refused(alias.name, alias)
                continue
            bound = alias.asname or alias.name
            self._bind(bound, alias, "import alias")
            self.modules[bound] = alias.name

    def _import_from(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.report(
                "LA002", node, f"relative imports are not allowed in an action; allowed modules: {_ALLOWED_MODULE_LIST}"
            )
            return
        module = node.module or ""
        if module not in ALLOWED_MODULES:
            self._import_refused(module, node)
            return
        api = module_api(module)
        for alias in node.names:
            if alias.name == "*":
                self.report("LA002", alias, f"'from {module} import *' is not allowed; import the names you use")
                continue
            if _is_private(alias.name):
                self._private(alias.name, alias, "imported name")
            elif alias.name not in api:
                self._module_member_refused(module, alias.name, alias)
            self._bind(alias.asname or alias.name, alias, "import alias")
            self.imported_members[alias.asname or alias.name] = (module, alias.name)

    def _import_refused(self, module: str, node: ast.AST) -> None:
        self.report(
            "LA002",
            node,
            f"module '{module}' cannot be imported in an action; allowed: {_ALLOWED_MODULE_LIST}",
        )

    def _module_member_refused(self, module: str, member: str, node: ast.AST) -> None:
        self.report(
            "LA011",
            node,
            f"'{module}.{member}' is not available to actions: only the reviewed members of "
            f"'{module}' can be used ({_listing(module_api(module))}), not its submodules, imported "
            "modules or helpers that read attributes by name",
        )

    def _attribute(self, node: ast.Attribute) -> None:
        self._private(node.attr, node, "attribute")
        if node.attr in FORMAT_METHODS:
            self.uses_format = True
            if node.attr != "vformat":  # refused at run time on every object, not only on str
                self.str_formats.append(node)
        if node.attr in DENIED_ATTRIBUTES and node.attr not in _FORMAT_ON_ANY:
            self.report(
                "LA016",
                node,
                f"attribute '{node.attr}' is not available in action code: the sandbox refuses it on "
                "every object (frame, code, traceback and generator internals, mro and vformat lead "
                "to other modules' globals); work with the values themselves",
            )
        if isinstance(node.value, ast.Name):
            self.attributes_of_names.append(node)
            self.module_bases.add(id(node.value))

    def _resolve_modules(self) -> None:
        if not self.modules:
            return
        for node in self.attributes_of_names:
            module = self.modules.get(node.value.id)  # type: ignore[attr-defined]
            if module and not _is_private(node.attr) and node.attr not in module_api(module):
                self._module_member_refused(module, node.attr, node)
        for name in self.loads:
            module = self.modules.get(name.id)
            if module and id(name) not in self.module_bases:
                self.report(
                    "LA011",
                    name,
                    f"module '{name.id}' can only be used as {name.id}.NAME (e.g. {name.id}."
                    f"{min(module_api(module))}), not as a value",
                )

    # -- calls ---------------------------------------------------------------------------------------

    def _call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            self.calls.append(node)
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            self.member_calls.append(node)

    def _resolve_calls(self) -> None:
        for call in self.calls:
            name = call.func.id  # type: ignore[attr-defined]
            if name in DANGEROUS_BUILTINS:
                continue  # dangerous names are reported where they appear
            if id(call.func) in self.undefined:
                self._unknown_call(name, call)
            elif name in self.primitives and name not in self.bound and name not in self.known:
                self._primitive_call(self.primitives[name], call)

    # -- names read ------------------------------------------------------------------------------------

    def _find_undefined(self, tree: ast.Module) -> None:
        """Names read that no enclosing scope binds and that the session does not provide (LA015)."""
        available = ALLOWED_BUILTINS | self.known | self.defined
        calls = {id(call.func) for call in self.calls}
        reported: set[str] = set()
        unresolved = sorted(_unresolved(_scopes(tree)), key=lambda n: (n.lineno, n.col_offset))
        for name in unresolved:
            ident = name.id
            if ident in available or ident in self.primitives or ident in DANGEROUS_BUILTINS or _is_private(ident):
                continue  # dangerous and private names have their own rules
            self.undefined[id(name)] = name
            if id(name) in calls or ident in reported:
                continue  # a call is LA006; one finding per name is enough
            reported.add(ident)
            self._undefined_name(name)

    def _undefined_name(self, node: ast.Name) -> None:
        name = node.id
        if name in ALLOWED_MODULES:
            self.report("LA015", node, f"'{name}' is not defined: import it first ('import {name}')")
            return
        actions = self.known | self.functions
        text = f"'{name}' is not defined: nothing in this code assigns it"
        if name in _STDLIB_MODULES:
            text += f"; module '{name}' cannot be used in an action (allowed imports: {_ALLOWED_MODULE_LIST})"
        else:
            text += (
                f"; assign it first, or use a primitive ({_listing(self.primitives) or 'none'})"
                + (f", an action ({_listing(actions)})" if actions else "")
                + " or an allowed builtin (len, range, sorted, ...)"
            )
            close = difflib.get_close_matches(name, self.bound | set(self.primitives) | actions | ALLOWED_BUILTINS, n=1)
            if close:
                text += f"; did you mean '{close[0]}'?"
        self.report("LA015", node, text)

    def _resolve_reviewed_calls(self) -> None:
        """``json.dumps(cls=...)``, ``copy.deepcopy(x, memo)``: arguments the sandbox refuses (LA011)."""
        for call in self.member_calls:
            func = call.func
            module = self.modules.get(func.value.id)  # type: ignore[attr-defined]
            if module is not None and (module, func.attr) in REVIEWED_CALLS:  # type: ignore[attr-defined]
                self._reviewed_call((module, func.attr), call)  # type: ignore[attr-defined]
        for call in self.calls:
            member = self.imported_members.get(call.func.id)  # type: ignore[attr-defined]
            if member in REVIEWED_CALLS:
                self._reviewed_call(member, call)

    def _reviewed_call(self, member: tuple[str, str], call: ast.Call) -> None:
        positional, keywords = REVIEWED_CALLS[member]
        name = ".".join(member)
        accepted = ", ".join(sorted(keywords)) or "none"
        if len(call.args) > positional:
            self.report(
                "LA011",
                call,
                f"{name}() takes {_plural(positional, 'positional argument')} in action code "
                f"(keyword arguments accepted: {accepted})",
            )
        for keyword in call.keywords:
            if keyword.arg is not None and keyword.arg not in keywords:
                self.report(
                    "LA011",
                    keyword,
                    f"{name}() does not accept '{keyword.arg}' in action code (the sandbox refuses "
                    f"arguments that choose classes or collect internal objects); accepted: {accepted}",
                )

    def _unknown_call(self, name: str, call: ast.Call) -> None:
        actions = self.known | self.functions
        candidates = set(self.primitives) | actions | ALLOWED_BUILTINS
        close = difflib.get_close_matches(name, candidates, n=1)
        text = f"'{name}' is not defined: call a primitive ({_listing(self.primitives) or 'none'})"
        text += f", an action ({_listing(actions)})" if actions else ", an action defined in this code"
        text += " or an allowed builtin (len, range, sorted, ...)"
        if close:
            text += f"; did you mean '{close[0]}'?"
        self.report("LA006", call, text)

    def _primitive_call(self, spec: PrimitiveSpec, call: ast.Call) -> None:
        params = [p.name for p in spec.params]
        call_name = f"{spec.name}()"
        takes = f"takes {_plural(len(params), 'argument')} ({', '.join(params)})" if params else "takes no arguments"
        unpacked = any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords)
        given: dict[str, ast.expr] = {}
        if not unpacked and len(call.args) > len(params):
            count = len(call.args)
            self.report("LA007", call, f"{call_name} {takes} but {count} {'was' if count == 1 else 'were'} given")
            return
        given.update(zip(params, call.args))
        for keyword in call.keywords:
            if keyword.arg is None:
                continue
            if keyword.arg not in params:
                self.report(
                    "LA007",
                    keyword,
                    f"{call_name} got an unexpected keyword argument '{keyword.arg}'; it {takes}",
                )
            elif keyword.arg in given:
                self.report("LA007", keyword, f"{call_name} got multiple values for argument '{keyword.arg}'")
            else:
                given[keyword.arg] = keyword.value
        missing = [p for p in params if p not in given]
        if missing and not unpacked:
            self.report(
                "LA007",
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
                    "LA007",
                    value,
                    f"{call_name} argument '{param.name}' must be {word}, got {value.value!r}",
                )

    # -- format strings ------------------------------------------------------------------------------

    def _constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and id(node) not in self.docstrings and "{" in node.value:
            self.strings.append(node)

    def _format_strings(self) -> None:
        unsafe: set[int] = set()
        for node in self.strings:
            for field in _bad_format_fields(node.value):
                unsafe.add(id(node))
                self.report(
                    "LA005",
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
            self.report("LA014", node, what + '; use an f-string, e.g. f"{block} is clear"')
