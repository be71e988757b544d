"""The static checker's rules: stable ids, names, severities, what each finds and why.

======  =====================  ========  ==================================================================
id      name                   severity  what it finds (why)
======  =====================  ========  ==================================================================
LA001   syntax-error           error     code that does not compile: syntax errors, including the ones
                                         found after parsing (``return`` outside a function), null bytes,
                                         nesting too deep, code over ``MAX_CODE_CHARS`` (nothing else can be
                                         checked)
LA002   import-not-allowed     error     an import of a module outside ``ALLOWED_MODULES``, a relative or a
                                         ``*`` import (modules are the main way out of a sandbox)
LA003   dangerous-builtin      error     any use of a name in ``DANGEROUS_BUILTINS`` (``eval``, ``open``,
                                         ``getattr``, ``type``, …), called or not: ``e = eval`` counts
                                         (they run text as code, reach the object model or do I/O)
LA004   private-name           error     a name, attribute, parameter, keyword argument, definition or
                                         import alias starting with ``_`` (the lone ``_`` is allowed);
                                         identifiers are checked after Python's NFKC normalisation, so
                                         ``ｅval`` is ``eval`` (dunder attributes lead to every object)
LA005   format-attribute       error     a string literal whose ``str.format`` fields read an attribute or
                                         an index (``"{0.__class__}"``), in code that uses ``format``,
                                         ``format_map`` or ``vformat`` (format strings read attributes by
                                         name, past every other rule)
LA006   unknown-call           error     a call of a name that is neither defined in the code, nor a
                                         primitive, nor a known action, nor an allowed builtin (the model
                                         invented an API; the message lists what exists)
LA007   primitive-call         error     a primitive called with the wrong number of arguments, an unknown
                                         or repeated keyword, or a literal of the wrong type (the
                                         environment would reject the call at run time)
LA008   restricted-python      error     an error from RestrictedPython's transformer that no other rule
                                         reported on that line (the sandbox runs code through
                                         RestrictedPython: code it refuses cannot run)
LA009   module-shape           error     in an action module: a top-level statement other than an import,
                                         a function definition or the module docstring; a function
                                         without a docstring (actions must have no top-level effects, and
                                         docstrings are what the agent reads about an action)
LA010   snippet-shape          error     in an agent snippet: a function definition (actions are learned
                                         in action modules, where they are checked, versioned and audited;
                                         a snippet calls them; ``lambda`` stays allowed)
LA011   module-attribute       error     an allowed module used other than as ``module.public_name``: a
                                         submodule or module-valued attribute (``json.codecs``), a member
                                         outside the policy's reviewed list (``functools.update_wrapper``),
                                         the module itself as a value (``m = json``), or a reviewed member
                                         called with arguments the sandbox refuses (``json.dumps(cls=...)``,
                                         ``copy.deepcopy(x, memo)``) (allowed modules re-export dangerous
                                         modules and helpers that read attributes by name)
LA012   forbidden-construct    error     ``class``, ``async``/``await``, ``global``, ``nonlocal``,
                                         decorators, string annotations (classes and decorators run code
                                         at definition time; ``global`` keeps state between calls;
                                         string annotations are evaluated as code by typing helpers)
LA013   shadowed-name          warning   a definition or assignment that hides a primitive or an allowed
                                         builtin (later calls reach the wrong function)
LA014   str-format             error     ``.format``/``.format_map`` of anything: a string literal, ``str``
                                         or any other value (the sandbox's attribute guard refuses them on
                                         every object at run time; an f-string does the same job)
LA015   undefined-name         error     a read of a name that no enclosing scope of the code assigns
                                         (assignment, loop or comprehension target, parameter, import,
                                         ``except``/``with`` ``as``, walrus, ``def``) and that is not an
                                         allowed builtin, a primitive, a known action or a value left by
                                         earlier code of the session (``sys`` would fail at run time; a
                                         call of such a name is LA006)
LA016   denied-attribute       error     an attribute the sandbox refuses on every object: frame, code,
                                         traceback and generator introspection (``gi_frame``,
                                         ``f_globals``, ``tb_frame``, ``co_code``, ...), ``mro``,
                                         ``vformat`` (``DENIED_ATTRIBUTES``: they lead to every module)
======  =====================  ========  ==================================================================

Decisions: classes are not allowed in either kind of code (LA012); agent snippets may import
allowed modules but may not define functions (LA010); ``nonlocal`` and ``global`` are not allowed
(RestrictedPython refuses ``nonlocal`` too). RestrictedPython's warnings (about its ``printed``
variable) are not reported. The check is the first filter and the source of precise feedback; it
is not the security boundary: the sandbox must hold with it switched off.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from learnact.actions.models import Severity


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    severity: Severity
    summary: str
    why: str


RULES: tuple[Rule, ...] = (
    Rule(
        id="LA001",
        name="syntax-error",
        severity=Severity.error,
        summary="The code does not compile.",
        why="Nothing else can be checked or run.",
    ),
    Rule(
        id="LA002",
        name="import-not-allowed",
        severity=Severity.error,
        summary="Import of a module outside the allowlist, a relative import or a '*' import.",
        why="Modules are the main way out of a sandbox.",
    ),
    Rule(
        id="LA003",
        name="dangerous-builtin",
        severity=Severity.error,
        summary="Use of a dangerous builtin such as eval, open, getattr or type, called or not.",
        why="They run text as code, reach the object model or do I/O.",
    ),
    Rule(
        id="LA004",
        name="private-name",
        severity=Severity.error,
        summary="A name, attribute, parameter, keyword or definition starting with '_'.",
        why="Private and special attributes lead from any object to every other object.",
    ),
    Rule(
        id="LA005",
        name="format-attribute",
        severity=Severity.error,
        summary="A str.format field that reads an attribute or an index.",
        why="Format strings read attributes by name, past every other rule.",
    ),
    Rule(
        id="LA006",
        name="unknown-call",
        severity=Severity.error,
        summary=(
            "A call of a function that is not defined, not a primitive, not a known action and not an allowed builtin."
        ),
        why="The call would fail at run time; the message lists what exists.",
    ),
    Rule(
        id="LA007",
        name="primitive-call",
        severity=Severity.error,
        summary="A primitive called with wrong arguments.",
        why="The environment would reject the call at run time.",
    ),
    Rule(
        id="LA008",
        name="restricted-python",
        severity=Severity.error,
        summary="RestrictedPython refuses the code.",
        why="The sandbox runs code through RestrictedPython; code it refuses cannot run.",
    ),
    Rule(
        id="LA009",
        name="module-shape",
        severity=Severity.error,
        summary="An action module holds only imports and function definitions with docstrings.",
        why="Actions must have no top-level effects; docstrings are what the agent reads about them.",
    ),
    Rule(
        id="LA010",
        name="snippet-shape",
        severity=Severity.error,
        summary="An agent snippet calls actions; it does not define functions.",
        why="Actions are learned in action modules, where they are checked, versioned and audited.",
    ),
    Rule(
        id="LA011",
        name="module-attribute",
        severity=Severity.error,
        summary="An allowed module used other than as module.public_name, or with arguments it refuses.",
        why="Allowed modules re-export dangerous modules and helpers that read attributes by name.",
    ),
    Rule(
        id="LA012",
        name="forbidden-construct",
        severity=Severity.error,
        summary="class, async, global, nonlocal, decorators or string annotations.",
        why="They run code at definition time, keep hidden state or evaluate text as code.",
    ),
    Rule(
        id="LA013",
        name="shadowed-name",
        severity=Severity.warning,
        summary="A definition or assignment hides a primitive or an allowed builtin.",
        why="Later calls of that name reach the wrong function.",
    ),
    Rule(
        id="LA014",
        name="str-format",
        severity=Severity.error,
        summary="format or format_map of any value; use an f-string.",
        why="The sandbox's attribute guard refuses the format methods on every object at run time.",
    ),
    Rule(
        id="LA015",
        name="undefined-name",
        severity=Severity.error,
        summary="A name read that nothing assigns and that is not a builtin, a primitive or an action.",
        why="It would fail at run time; the message lists what exists.",
    ),
    Rule(
        id="LA016",
        name="denied-attribute",
        severity=Severity.error,
        summary="An attribute the sandbox refuses on every object (frames, code, generators, mro).",
        why="Frame, code and generator internals lead to every module's globals.",
    ),
)

RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}
