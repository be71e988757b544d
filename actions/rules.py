"""The static checker's rules: stable ids, names, severities, what each finds and why.

The records below are the one source of the rule table: the checker reports :class:`RuleId` members,
``learnact check --list-rules`` prints the table (``--format json`` for tools), SARIF output describes
the rules from it, and the table at the end of this docstring is rendered from it at import time.

Decisions: classes are not allowed in any kind of code (LA012); agent snippets may import
allowed modules but may not define functions (LA010); programs may define functions (docstrings
optional) and run top-level statements, under every other rule; ``nonlocal`` and ``global`` are not allowed
(RestrictedPython refuses ``nonlocal`` too). RestrictedPython's warnings (about its ``printed``
variable) are not reported. The check is the first filter and the source of precise feedback; it
is not the security boundary: the sandbox must hold with it switched off.
"""

from __future__ import annotations

import textwrap
from enum import Enum

from pydantic import BaseModel, ConfigDict, computed_field


class Severity(str, Enum):
    error = "error"
    warning = "warning"


class RuleId(str, Enum):
    """A rule's stable id (its value, ``LA001``, is what findings carry); the member's name, with
    dashes, is the rule's name."""

    syntax_error = "LA001"
    import_not_allowed = "LA002"
    dangerous_builtin = "LA003"
    private_name = "LA004"
    format_attribute = "LA005"
    unknown_call = "LA006"
    primitive_call = "LA007"
    restricted_python = "LA008"
    module_shape = "LA009"
    snippet_shape = "LA010"
    module_attribute = "LA011"
    forbidden_construct = "LA012"
    shadowed_name = "LA013"
    str_format = "LA014"
    undefined_name = "LA015"
    denied_attribute = "LA016"
    program_shape = "LA017"

    def __str__(self) -> str:  # the id, in f-strings and str() alike (not ``RuleId.syntax_error``)
        return self.value

    @property
    def rule_name(self) -> str:
        return self.name.replace("_", "-")


class Rule(BaseModel):
    """One rule: ``summary`` is a line, ``details`` what exactly it finds, ``why`` the reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: RuleId
    severity: Severity
    summary: str
    details: str
    why: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def name(self) -> str:
        return self.id.rule_name


RULES: tuple[Rule, ...] = (
    Rule(
        id=RuleId.syntax_error,
        severity=Severity.error,
        summary="The code does not compile.",
        details="Code that does not compile: syntax errors, including the ones found after parsing (``return``"
        " outside a function), null bytes, nesting too deep, code over ``MAX_CODE_CHARS``.",
        why="Nothing else can be checked or run.",
    ),
    Rule(
        id=RuleId.import_not_allowed,
        severity=Severity.error,
        summary="Import of a module outside the allowlist, a relative import or a '*' import.",
        details="An import of a module outside ``ALLOWED_MODULES``, a relative or a ``*`` import.",
        why="Modules are the main way out of a sandbox.",
    ),
    Rule(
        id=RuleId.dangerous_builtin,
        severity=Severity.error,
        summary="Use of a dangerous builtin such as eval, open, getattr or type, called or not.",
        details="Any use of a name in ``DANGEROUS_BUILTINS`` (``eval``, ``open``, ``getattr``, ``type``, ...),"
        " called or not: ``e = eval`` counts.",
        why="They run text as code, reach the object model or do I/O.",
    ),
    Rule(
        id=RuleId.private_name,
        severity=Severity.error,
        summary="A name, attribute, parameter, keyword or definition starting with '_'.",
        details="A name, attribute, parameter, keyword argument, definition or import alias starting with"
        " ``_`` (the lone ``_`` is allowed); identifiers are checked after Python's NFKC normalisation, so"
        " ``ｅval`` is ``eval``.",
        why="Private and special attributes lead from any object to every other object.",
    ),
    Rule(
        id=RuleId.format_attribute,
        severity=Severity.error,
        summary="A str.format field that reads an attribute or an index.",
        details="A string literal whose ``str.format`` fields read an attribute or an index"
        ' (``"{0.__class__}"``), in code that uses ``format``, ``format_map`` or ``vformat``.',
        why="Format strings read attributes by name, past every other rule.",
    ),
    Rule(
        id=RuleId.unknown_call,
        severity=Severity.error,
        summary=(
            "A call of a function that is not defined, not a primitive, not a known action and not an allowed builtin."
        ),
        details="A call of a name that is neither defined in the code, nor a primitive, nor a known action, nor"
        " an allowed builtin (the model invented an API).",
        why="The call would fail at run time; the message lists what exists.",
    ),
    Rule(
        id=RuleId.primitive_call,
        severity=Severity.error,
        summary="A primitive called with wrong arguments.",
        details="A primitive called with the wrong number of arguments, an unknown or repeated keyword, or a"
        " literal of the wrong type.",
        why="The environment would reject the call at run time.",
    ),
    Rule(
        id=RuleId.restricted_python,
        severity=Severity.error,
        summary="RestrictedPython refuses the code.",
        details="An error from RestrictedPython's transformer that no other rule reported on that line.",
        why="The sandbox runs code through RestrictedPython; code it refuses cannot run.",
    ),
    Rule(
        id=RuleId.module_shape,
        severity=Severity.error,
        summary="An action module holds only imports and function definitions with docstrings.",
        details="In an action module: a top-level statement other than an import, a function definition or"
        " the module docstring; a function without a docstring.",
        why="Actions must have no top-level effects; docstrings are what the agent reads about them.",
    ),
    Rule(
        id=RuleId.snippet_shape,
        severity=Severity.error,
        summary="An agent snippet calls actions; it does not define functions.",
        details="In an agent snippet: a function definition (a snippet calls actions; ``lambda`` stays allowed).",
        why="Actions are learned in action modules, where they are checked, versioned and audited.",
    ),
    Rule(
        id=RuleId.module_attribute,
        severity=Severity.error,
        summary="An allowed module used other than as module.public_name, or with arguments it refuses.",
        details="An allowed module used other than as ``module.public_name``: a submodule or module-valued"
        " attribute (``json.codecs``), a member outside the policy's reviewed list"
        " (``functools.update_wrapper``), the module itself as a value (``m = json``), or a reviewed member"
        " called with arguments the sandbox refuses (``json.dumps(cls=...)``, ``copy.deepcopy(x, memo)``).",
        why="Allowed modules re-export dangerous modules and helpers that read attributes by name.",
    ),
    Rule(
        id=RuleId.forbidden_construct,
        severity=Severity.error,
        summary="class, async, global, nonlocal, decorators or string annotations.",
        details="``class``, ``async``/``await``, ``global``, ``nonlocal``, decorators, string annotations.",
        why="They run code at definition time, keep hidden state or evaluate text as code.",
    ),
    Rule(
        id=RuleId.shadowed_name,
        severity=Severity.warning,
        summary="A definition or assignment hides a primitive or an allowed builtin.",
        details="A definition or assignment that hides a primitive or an allowed builtin.",
        why="Later calls of that name reach the wrong function.",
    ),
    Rule(
        id=RuleId.str_format,
        severity=Severity.error,
        summary="format or format_map of any value; use an f-string.",
        details="``.format``/``.format_map`` of anything: a string literal, ``str`` or any other value (an"
        " f-string does the same job).",
        why="The sandbox's attribute guard refuses the format methods on every object at run time.",
    ),
    Rule(
        id=RuleId.undefined_name,
        severity=Severity.error,
        summary="A name read that nothing assigns and that is not a builtin, a primitive or an action.",
        details="A read of a name that no enclosing scope of the code assigns (assignment, loop or"
        " comprehension target, parameter, import, ``except``/``with`` ``as``, walrus, ``def``) and that is"
        " not an allowed builtin, a primitive, a known action or a value left by earlier code of the session"
        " (a call of such a name is LA006); in a program, a top-level use of a function that is defined"
        " only further down (functions may call functions defined later).",
        why="It would fail at run time; the message lists what exists.",
    ),
    Rule(
        id=RuleId.denied_attribute,
        severity=Severity.error,
        summary="An attribute the sandbox refuses on every object (frames, code, generators, mro).",
        details="An attribute the sandbox refuses on every object (``DENIED_ATTRIBUTES``): frame, code,"
        " traceback and generator introspection (``gi_frame``, ``f_globals``, ``tb_frame``, ``co_code``,"
        " ...), ``mro``, ``vformat``.",
        why="Frame, code and generator internals lead to every module's globals.",
    ),
    Rule(
        id=RuleId.program_shape,
        severity=Severity.warning,
        summary="A program that only defines functions and never calls them.",
        details="In a program: function definitions (and imports) but no top-level statement, so running it"
        " calls nothing.",
        why="A program is executed once; one that only defines its helpers does nothing.",
    ),
)

RULES_BY_ID: dict[RuleId, Rule] = {rule.id: rule for rule in RULES}


def _table() -> str:
    """The rules as a reStructuredText table (the end of this module's docstring)."""
    widths = (6, max(len(rule.name) for rule in RULES), 8, 66)
    border = "  ".join("=" * width for width in widths)
    lines = [border, "  ".join(f"{h:<{w}}" for h, w in zip(("id", "name", "severity", "what it finds (why)"), widths))]
    lines.append(border)
    for rule in RULES:
        text = textwrap.wrap(f"{rule.details} ({rule.why})", widths[3]) or [""]
        cells = (rule.id.value, rule.name, rule.severity.value)
        lines.append("  ".join(f"{c:<{w}}" for c, w in zip(cells, widths)) + "  " + text[0])
        lines += [" " * (sum(widths[:3]) + 6) + more for more in text[1:]]
    lines.append(border)
    return "\n".join(line.rstrip() for line in lines)


__doc__ = f"{__doc__}\nThe rules:\n\n{_table()}\n"
