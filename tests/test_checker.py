"""The static checker of model-written action code, rule by rule, with the bypasses it must catch."""

from __future__ import annotations

import builtins
import importlib
import textwrap
from types import ModuleType

import pytest

from learnact.actions import (
    ALLOWED_BUILTINS,
    ALLOWED_MODULES,
    DANGEROUS_BUILTINS,
    RULES,
    CodeKind,
    Finding,
    Severity,
    bound_names,
    check,
    infer_kind,
    module_api,
)
from learnact.actions import rules as rules_module
from learnact.actions.policy import DENIED_ATTRIBUTES, MODULE_API, REVIEWED_CALLS
from learnact.envs.base import ParamSpec, PrimitiveSpec

MODULE = CodeKind.action_module
SNIPPET = CodeKind.agent_snippet
PROGRAM = CodeKind.program


def spec(name: str, *params: str, int_params: tuple[str, ...] = ()) -> PrimitiveSpec:
    return PrimitiveSpec(
        name=name,
        params=tuple(ParamSpec(name=p, type="int" if p in int_params else "str") for p in params),
        doc=f"{name} primitive",
    )


PRIMITIVES = [
    spec("pickup", "block"),
    spec("putdown", "block"),
    spec("stack", "upper", "lower"),
    spec("unstack", "upper", "lower"),
    spec("look"),
    spec("wait", "steps", int_params=("steps",)),
]


def run(
    code: str,
    kind: CodeKind = SNIPPET,
    known: tuple[str, ...] = (),
    primitives=PRIMITIVES,
    defined: tuple[str, ...] = (),
) -> list[Finding]:
    return check(textwrap.dedent(code), kind, primitives, known, defined=defined)


def rules_of(code: str, kind: CodeKind = SNIPPET, **kwargs) -> set[str]:
    return {f.rule for f in run(code, kind, **kwargs)}


def only(code: str, rule: str, kind: CodeKind = SNIPPET, **kwargs) -> list[Finding]:
    return [f for f in run(code, kind, **kwargs) if f.rule == rule]


GOOD_MODULE = '''
"""Blocksworld helpers."""
import math
from collections import Counter


def move(block, source, target):
    """Move `block` from `source` onto `target`; returns the last observation."""
    if source == "table":
        obs = pickup(block)
    else:
        obs = unstack(block, source)
    if "not valid" in obs:
        return obs
    return stack(block, target)


def tower(blocks):
    """Stack `blocks` bottom first, stopping at the first invalid step."""
    def pair_up(items):
        return list(zip(items, items[1:]))

    counts = Counter(blocks)
    for lower, upper in pair_up(blocks):
        obs = move(upper, "table", lower)
        if "not valid" in obs:
            return obs
    return f"done with {len(counts)} blocks, {math.sqrt(len(blocks)):.1f}"
'''


def test_a_well_formed_action_module_has_no_findings() -> None:
    assert run(GOOD_MODULE, MODULE) == []


def test_a_well_formed_snippet_has_no_findings() -> None:
    code = """
    import math
    obs = look()
    blocks = sorted(w for w in obs.split() if w.startswith("b"))
    for upper, lower in zip(blocks, blocks[1:]):
        move(upper, "table", lower)
    if (n := len(blocks)) > 2:
        print(n, math.floor(n / 2), max(blocks, key=lambda b: len(b)))
    for _ in range(2):
        wait(1)
    """
    assert run(code, SNIPPET, known=("move",)) == []


def test_findings_are_sorted_by_line_and_column_with_1_based_positions() -> None:
    findings = run("x = 1\ny = eval('1') + exec('2')\n_z = open('f')\n")
    assert [(f.line, f.col, f.rule) for f in findings] == [
        (2, 5, "LA003"),
        (2, 17, "LA003"),
        (3, 1, "LA004"),
        (3, 6, "LA003"),
    ]


def test_columns_count_characters_not_utf8_bytes() -> None:
    (finding,) = only('s = "éé"; t = s.__len__\n', "LA004")
    assert finding.col == 17  # `__len__` starts at the 17th character, the 19th byte


def test_attribute_findings_point_at_the_attribute_name() -> None:
    findings = only("x = (obj\n     .__class__)\ny = ().__class__.__bases__\n", "LA004")
    assert [(f.line, f.col) for f in findings] == [(2, 7), (3, 8), (3, 18)]


def test_kind_can_be_given_as_its_string_value() -> None:
    assert {f.rule for f in check("x = 1\n", "action_module")} == {"LA009"}


# LA001 syntax-error -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("def f(:\n    pass\n", "syntax error"),
        ("return 1\n", "'return' outside function"),  # found by the compiler, not the parser
        ("def f():\n    break\n", "'break' outside loop"),
        ("def f(a, a):\n    return a\n", "duplicate argument"),
        ("x = 1\x00\n", "null bytes"),
        ("\uff3f\uff3fimport\uff3f\uff3f('os')\n", "invalid character"),  # fullwidth low lines
        ("_\u2060 = 1\n", "invalid non-printable character"),  # word joiner after '_'
    ],
)
def test_code_that_does_not_compile_gets_one_syntax_finding(code: str, words: str) -> None:
    findings = check(code, SNIPPET)
    assert [f.rule for f in findings] == ["LA001"]
    assert words in findings[0].message
    assert findings[0].severity is Severity.error


def test_syntax_error_position_is_reported() -> None:
    (finding,) = check("x = 1\ny = (2 +\n", SNIPPET)
    assert (finding.line, finding.col) == (2, 5)
    assert "'(' was never closed" in finding.message


def test_code_nested_too_deeply_is_a_finding_not_a_crash() -> None:
    (finding,) = check("x = " + "+".join(["1"] * 20000) + "\n", SNIPPET)
    assert finding.rule == "LA001"


def test_code_over_the_size_limit_is_refused_before_parsing() -> None:
    from learnact.actions.policy import MAX_CODE_CHARS

    (finding,) = check("x = 1\n" * (MAX_CODE_CHARS // 6 + 1), SNIPPET)
    assert finding.rule == "LA001" and str(MAX_CODE_CHARS) in finding.message


# LA002 import-not-allowed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "module"),
    [
        ("import os\n", "os"),
        ("import os.path as p\n", "os.path"),
        ("from os import system\n", "os"),
        ("import subprocess\n", "subprocess"),
        ("import math, sys\n", "sys"),
        ("import collections.abc\n", "collections.abc"),
        ("from __future__ import annotations\n", "__future__"),
        ("from importlib import import_module\n", "importlib"),
    ],
)
def test_imports_outside_the_allowlist_are_refused(code: str, module: str) -> None:
    (finding,) = only(code, "LA002")
    assert finding.message.startswith(f"module '{module}' cannot be imported in an action; allowed: ")
    assert "math" in finding.message and "re" in finding.message


@pytest.mark.parametrize(("code", "words"), [("from . import x\n", "relative"), ("from math import *\n", "*")])
def test_relative_and_star_imports_are_refused(code: str, words: str) -> None:
    (finding,) = only(code, "LA002")
    assert words in finding.message


@pytest.mark.parametrize(
    "code", ["import math\n", "import json as j\n", "from collections import Counter, deque\n", "import re, heapq\n"]
)
def test_allowed_imports_pass(code: str) -> None:
    assert run(code) == []


# LA003 dangerous-builtin ----------------------------------------------------------------------------

ISSUE_BUILTINS = [
    "exec", "eval", "compile", "open", "__import__", "globals", "locals", "vars", "getattr",
    "setattr", "delattr", "input", "breakpoint", "help", "exit", "quit",
]  # fmt: skip


@pytest.mark.parametrize("name", ISSUE_BUILTINS + ["type", "object", "super", "dir"])
def test_dangerous_builtins_are_refused_when_called(name: str) -> None:
    (finding,) = run(f"{name}('x')\n")
    assert finding.rule == "LA003"
    assert finding.message.startswith(f"'{name}' is not allowed in action code")


@pytest.mark.parametrize("name", ISSUE_BUILTINS)
def test_a_bare_reference_to_a_dangerous_builtin_is_refused(name: str) -> None:
    assert rules_of(f"alias = {name}\n") == {"LA003"}


@pytest.mark.parametrize(
    "code",
    [
        "e = eval\ne('1')\n",  # alias, then call through it
        "\uff45val('1')\n",  # fullwidth 'e': Python normalises identifiers (NFKC) to 'eval'
        "f = (lambda g=eval: g)()\n",  # default argument
        "(lambda: exec)()('x = 1')\n",
        "(e := eval)\n",  # walrus
        "fns = [print, getattr]\n",
        "def open(path):\n    return path\n",  # redefining it is refused too
        "def f(type):\n    return type\n",  # so is a parameter of that name
    ],
)
def test_dangerous_builtins_cannot_be_reached_by_aliases_or_homoglyphs(code: str) -> None:
    assert "LA003" in rules_of(code, MODULE)


def test_dunder_import_is_one_dangerous_builtin_finding() -> None:
    assert [f.rule for f in run("__import__('os').system('id')\n")] == ["LA003"]


def test_a_primitive_or_known_action_named_like_a_builtin_is_callable() -> None:
    primitives = [spec("open", "receptacle")]
    assert run("open('fridge 1')\n", primitives=primitives) == []
    assert run("help('me')\n", known=("help",)) == []


def test_messages_say_what_to_use_instead() -> None:
    (finding,) = run("x = 1\nt = type(x) == str\n")
    assert "isinstance" in finding.message


# LA004 private-name -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "what"),
    [
        ("_x = 1\n", "name '_x'"),
        ("y = x._y\n", "attribute '_y'"),
        ("pickup(_block='a')\n", "keyword argument '_block'"),
        ("def _helper():\n    pass\n", "function '_helper'"),
        ("def f(_a):\n    pass\n", "parameter '_a'"),
        ("def f(*_a, **_k):\n    pass\n", "parameter '_a'"),
        ("g = lambda _a: 1\n", "parameter '_a'"),
        ("import math as _m\n", "import alias '_m'"),
        ("from random import _inst\n", "imported name '_inst'"),
        ("try:\n    pass\nexcept ValueError as _e:\n    pass\n", "name '_e'"),
        ("for _i in range(3):\n    pass\n", "name '_i'"),
        ("x = [c for c in ().__class__.__bases__]\n", "attribute '__class__'"),
        ("b = __builtins__\n", "name '__builtins__'"),
        ('s = f"{x.__class__}"\n', "attribute '__class__'"),  # f-strings are parsed as code
        ("(_n := 5)\n", "name '_n'"),
        ("x = a\uff3f\uff3fb.__dict__\n", "attribute '__dict__'"),
        ("match x:\n    case {**_rest}:\n        pass\n", "name '_rest'"),
        ("match x:\n    case C(_a=1):\n        pass\n", "attribute '_a'"),
    ],
)
def test_names_starting_with_underscore_are_refused(code: str, what: str) -> None:
    messages = [f.message for f in only(code, "LA004")]
    assert any(m.startswith(f"{what} starts with '_'") for m in messages), messages


def test_the_subclasses_escape_is_refused_at_every_step() -> None:
    findings = only("().__class__.__bases__[0].__subclasses__()\n", "LA004")
    assert len(findings) == 3


@pytest.mark.parametrize("code", ["for _ in range(3):\n    pass\n", "a__b = 1\nx_ = a__b\n"])
def test_a_lone_underscore_and_inner_underscores_are_allowed(code: str) -> None:
    assert run(code) == []


# LA005 format-attribute ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "field"),
    [
        ('s = "{0.__class__}".format(x)\n', "{0.__class__}"),
        ('s = "{0[0]}".format(x)\n', "{0[0]}"),
        ('s = "{a.real}".format_map(d)\n', "{a.real}"),
        ('fmt = "{0.real}"\ns = fmt.format(x)\n', "{0.real}"),  # the literal reaches format indirectly
        ('s = "{0:{1.real}}".format(x, y)\n', "{1.real}"),  # nested in a format spec
        ('s = f"{{0.real}}".format(x)\n', "{0.real}"),  # escaped braces of an f-string
        ('s = ("{0." + "real}").format(1)\n', "{0."),  # completed at run time
    ],
)
def test_format_fields_that_read_attributes_or_items_are_refused(code: str, field: str) -> None:
    findings = only(code, "LA005")
    assert findings, run(code)
    assert f"format field '{field}'" in findings[0].message


@pytest.mark.parametrize(
    "code",
    [
        's = "{0} and {name}".format(1, name=2)\n',
        's = "{x.y}"\n',  # never used with format
        'def f(x):\n    """Returns {x.y}."""\n    return "{0}".format(x)\n',  # docstrings are text
    ],
)
def test_plain_format_fields_and_unused_literals_pass(code: str) -> None:
    assert only(code, "LA005") == []


# LA014 str-format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "method"),
    [
        ('b = "a"\ns = "{0} is clear".format(b)\n', "format"),
        ('d = {}\ns = "{name}".format_map(d)\n', "format_map"),
        ('b = "a"\ns = str.format("{}", b)\n', "format"),
    ],
)
def test_str_format_is_refused_with_the_f_string_alternative(code: str, method: str) -> None:
    (finding,) = run(code)
    assert finding.rule == "LA014"
    assert finding.message.startswith(f"str.{method}() is not available in action code")
    assert "f-string" in finding.message


@pytest.mark.parametrize("code", ["s = template.format(b)\n", "s = template.format_map(b)\n"])
def test_format_methods_are_refused_on_any_receiver(code: str) -> None:
    # The sandbox's attribute guard refuses them on every object, not only on str.
    (finding,) = run("template, b = 'x', {}\n" + code)
    assert finding.rule == "LA014"
    assert "on every object" in finding.message and "f-string" in finding.message


def test_a_format_string_reading_attributes_is_one_finding_not_two() -> None:
    assert [f.rule for f in run('s = "{0.real}".format(1)\n')] == ["LA005"]


@pytest.mark.parametrize("code", ['s = f"{b} is clear"\n', "s = '%s' % b\n"])
def test_f_strings_and_percent_formatting_pass(code: str) -> None:
    assert run("b = 'a'\n" + code) == []


# LA006 unknown-call -------------------------------------------------------------------------------


def test_calling_an_undefined_function_is_refused_with_the_alternatives() -> None:
    (finding,) = run("pikup('a')\n", known=("move",))
    assert finding.rule == "LA006"
    assert finding.message.startswith("'pikup' is not defined: call a primitive (look, pickup, putdown,")
    assert "an action (move)" in finding.message
    assert finding.message.endswith("did you mean 'pickup'?")


@pytest.mark.parametrize(
    "code",
    [
        "obs = look()\nwords = obs.split()\n",  # method calls on objects
        "n = len(sorted([3, 1]))\n",
        "from math import sqrt\nr = sqrt(2)\n",
        "f = lambda: 1\nf()\n",
        "def helper():\n    return 1\n\n\nhelper()\n",
        "move('a', 'table', 'b')\n",  # a known action
        "raise ValueError('no block')\n",
    ],
)
def test_defined_primitive_known_and_builtin_calls_pass(code: str) -> None:
    assert only(code, "LA006", known=("move",)) == []


def test_builtins_outside_the_allowlist_cannot_be_called() -> None:
    assert rules_of("x = 1\nok = hasattr(x, 'y')\n") == {"LA006"}


# LA007 primitive-call -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("pickup('a', 'b')\n", "pickup() takes 1 argument (block) but 2 were given"),
        ("look(1)\n", "look() takes no arguments but 1 was given"),
        ("stack('a')\n", "stack() missing 1 required argument: 'lower' (it takes 2 arguments (upper, lower))"),
        ("pickup('a', blk='a')\n", "pickup() got an unexpected keyword argument 'blk'; it takes 1 argument (block)"),
        ("pickup('a', block='a')\n", "pickup() got multiple values for argument 'block'"),
        ("pickup(3)\n", "pickup() argument 'block' must be a string, got 3"),
        ("wait('long')\n", "wait() argument 'steps' must be an integer, got 'long'"),
        ("wait(True)\n", "wait() argument 'steps' must be an integer, got True"),
    ],
)
def test_primitive_calls_with_wrong_arguments_are_refused(code: str, message: str) -> None:
    assert message in [f.message for f in only(code, "LA007")]


@pytest.mark.parametrize(
    "code",
    [
        "pickup('a')\n",
        "stack(upper='a', lower='b')\n",
        "stack('a', lower='b')\n",
        "pickup(name)\n",
        "pickup(*blocks)\n",  # cannot be counted statically
        "stack(**places)\n",
        "wait(3)\n",
    ],
)
def test_well_formed_primitive_calls_pass(code: str) -> None:
    assert only(code, "LA007") == []


def test_a_local_function_hiding_a_primitive_is_not_checked_as_the_primitive() -> None:
    code = (
        'def pickup(a, b):\n    """Mine."""\n    return a\n\n\ndef f():\n    """Uses it."""\n    return pickup(1, 2)\n'
    )
    assert only(code, "LA007", MODULE) == []


# LA008 restricted-python --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("counts = {}\ncounts['a'] += 1\n", "Augmented assignment of object items"),
        ("printed = 1\n", '"printed" is a reserved name'),
        ("x = 1\nmatch x:\n    case 1:\n        pass\n", "Match statements are not allowed"),
    ],
)
def test_restricted_python_refusals_are_reported(code: str, words: str) -> None:
    findings = only(code, "LA008")
    assert findings and words in findings[0].message
    assert findings[0].message.startswith("RestrictedPython: ")


def test_augmented_item_assignment_comes_with_a_rewrite_hint() -> None:
    (finding,) = only("counts = {}\ncounts['a'] += 1\n", "LA008")
    assert (finding.line, finding.col) == (2, 1)
    assert "write x[k] = x[k] + 1" in finding.message


def test_restricted_python_does_not_repeat_a_line_another_rule_reported() -> None:
    assert [f.rule for f in run("_x = 1\n")] == ["LA004"]
    assert [f.rule for f in run("exec('1')\n")] == ["LA003"]


# LA009 module-shape -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "word"),
    [
        ("LIMIT = 3\n", "assignment"),
        ("pickup('a')\n", "expression"),
        ("if True:\n    pass\n", "if statement"),
        ("for b in 'ab':\n    pickup(b)\n", "for loop"),
    ],
)
def test_an_action_module_has_no_top_level_effects(code: str, word: str) -> None:
    (finding,) = only(code, "LA009", MODULE)
    assert finding.message.startswith(f"a top-level {word} is not allowed in an action module")


@pytest.mark.parametrize("body", ["    return 1\n", '    ""\n    return 1\n', '    """   """\n'])
def test_every_action_needs_a_docstring(body: str) -> None:
    (finding,) = only("def act():\n" + body, "LA009", MODULE)
    assert finding.message.startswith("action 'act' has no docstring")
    assert (finding.line, finding.col) == (1, 1)


def test_shape_rules_of_action_modules_do_not_apply_to_snippets() -> None:
    assert only("LIMIT = 3\npickup('a')\n", "LA009", SNIPPET) == []


# LA010 snippet-shape ------------------------------------------------------------------------------


def test_a_snippet_cannot_define_functions() -> None:
    (finding,) = only("def helper():\n    return 1\n", "LA010")
    assert "cannot be defined in an agent snippet" in finding.message


def test_a_snippet_may_use_lambdas_and_allowed_imports_and_a_module_may_define_functions() -> None:
    assert run("import math\nkey = lambda b: math.floor(len(b))\n") == []
    assert only('def helper():\n    """Help."""\n    return 1\n', "LA010", MODULE) == []


# LA011 module-attribute ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("import json\nf = json.codecs.open('/etc/passwd')\n", "'json.codecs' is not available"),
        ("import typing\nmods = typing.sys.modules\n", "'typing.sys' is not available"),
        ("from json import codecs\n", "'json.codecs' is not available"),
        ("from typing import get_type_hints\n", "'typing.get_type_hints' is not available"),
        ("import string\nf = string.Formatter()\n", "'string.Formatter' is not available"),
        ("import math as m\nx = m.nope\n", "'math.nope' is not available"),
        ("import math\nm = math\n", "module 'math' can only be used as math.NAME"),
        ("import json\nprint(json)\n", "module 'json' can only be used as json.NAME"),
    ],
)
def test_allowed_modules_are_reachable_only_through_their_public_api(code: str, words: str) -> None:
    findings = only(code, "LA011")
    assert findings and words in findings[0].message


def test_public_functions_of_allowed_modules_pass() -> None:
    code = "import math, re, collections\nx = math.sqrt(2)\nm = re.match('a', 'a')\nc = collections.Counter('ab')\n"
    assert run(code) == []


# LA012 forbidden-construct ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("class Box:\n    pass\n", "class 'Box' is not allowed"),
        ("async def f():\n    await g()\n", "async function 'f' is not allowed"),
        ("async def f():\n    await g()\n", "async code"),
        ("def f():\n    global n\n    n = 1\n", "'global' is not allowed"),
        ("def f():\n    n = 0\n    def g():\n        nonlocal n\n        n = 1\n", "'nonlocal' is not allowed"),
        ("@print\ndef f():\n    pass\n", "decorators are not allowed"),
        ("def f(x: 'int') -> list['os']:\n    pass\n", "string annotations are not allowed"),
        ("x: 'list' = []\n", "string annotations are not allowed"),
    ],
)
def test_forbidden_constructs_are_refused_in_every_kind_of_code(code: str, words: str) -> None:
    for kind in (MODULE, SNIPPET, PROGRAM):
        messages = [f.message for f in only(code, "LA012", kind)]
        assert any(words in m for m in messages), (kind, messages)


def test_a_decorator_cannot_smuggle_a_call() -> None:
    code = '@(lambda f: eval)\ndef f():\n    """Doc."""\n'
    assert {"LA003", "LA012"} <= rules_of(code, MODULE)


def test_generators_walrus_and_real_annotations_are_allowed() -> None:
    code = 'def blocks(obs: str) -> list[str]:\n    """Blocks."""\n    if (n := len(obs)) > 0:\n        yield n\n'
    assert run(code, MODULE) == []


# LA013 shadowed-name ------------------------------------------------------------------------------


def test_hiding_a_primitive_or_builtin_is_a_warning_once_per_name() -> None:
    code = "len = 3\nlen = 4\nfor pickup in 'ab':\n    pass\n"
    findings = run(code)
    assert [(f.rule, f.line, f.severity) for f in findings] == [
        ("LA013", 1, Severity.warning),
        ("LA013", 3, Severity.warning),
    ]
    assert "hides the primitive pickup(block)" in findings[1].message


def test_redefining_a_known_action_is_not_a_warning() -> None:
    assert run('def move(a):\n    """New version."""\n    return a\n', MODULE, known=("move",)) == []


# LA015 undefined-name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("v = sys\n", "sys"),
        ("v = sys.modules['os']\n", "sys"),
        ("print(codecs.sys)\n", "codecs"),  # what functools.update_wrapper used to put in the namespace
        ("total = count + 1\n", "count"),
        ("values = [n for n in range(3)]\nlast = n\n", "n"),  # comprehension variables stay inside
        ("f = lambda block: block\nv = block\n", "block"),  # so do parameters
        ("try:\n    pass\nexcept ValueError:\n    v = error\n", "error"),
        ("for _ in range(2):\n    pass\nv = __name__\n", None),  # LA004 reports it; not twice
    ],
)
def test_reading_a_name_nothing_assigns_is_refused(code: str, name: str | None) -> None:
    findings = only(code, "LA015")
    if name is None:
        assert findings == [] and "LA004" in rules_of(code)
        return
    (finding,) = findings
    assert finding.message.startswith(f"'{name}' is not defined")


def test_an_undefined_name_in_another_function_is_refused_in_action_modules() -> None:
    code = (
        'def a():\n    """A."""\n    total = 1\n    return total\n\n\n'
        'def b():\n    """B."""\n    return total + helper()\n'
    )
    assert [(f.rule, f.line) for f in run(code, MODULE)] == [("LA015", 9), ("LA006", 9)]


@pytest.mark.parametrize(
    "code",
    [
        "import math\nv = math.pi\n",
        "from math import pi as p\nv = p\n",
        "for block in ['a']:\n    seen = block\nv = seen\n",
        "v = [x for x in range(3) if x]\nw = {k: j for k, j in [(1, 2)]}\n",
        "if (n := 3) > 2:\n    v = n\n",
        "v = [y := 1 for _ in range(2)]\nw = y\n",  # a walrus in a comprehension binds outside it
        "try:\n    pass\nexcept ValueError as error:\n    v = error\n",
        "v = len([1]) + pickup('a').count('a')\n",  # builtins and primitives
        "f = lambda block, *rest, **options: (block, rest, options)\n",
        "a, (b, *c) = 1, (2, 3)\nv = a + b + len(c)\n",
        "x = 1\nmatch x:\n    case [first, *others]:\n        v = first\n"
        "    case {'k': value, **more}:\n        v = value\n",
        "v = move\n",  # a known action
        "v = seen\n",  # left in the namespace by earlier code of the session
    ],
)
def test_names_assigned_anywhere_in_scope_pass(code: str) -> None:
    assert only(code, "LA015", known=("move",), defined=("seen",)) == []


def test_module_functions_see_module_names_parameters_and_enclosing_functions() -> None:
    code = (
        "import math\n\n\nLIMIT = 3\n\n\n"
        'def outer(blocks, n=LIMIT):\n    """Outer."""\n    found = []\n\n'
        "    def inner(block):\n        return block in blocks and math.isfinite(n)\n\n"
        "    return [b for b in blocks if inner(b)] + found + [outer, later()]\n\n\n"
        'def later():\n    """Later."""\n    return 1\n'
    )
    assert only(code, "LA015", MODULE) == only(code, "LA006", MODULE) == []


def test_an_undefined_allowed_module_says_to_import_it() -> None:
    (finding,) = only("v = math.pi\n", "LA015")
    assert finding.message == "'math' is not defined: import it first ('import math')"


def test_an_undefined_name_lists_what_exists() -> None:
    (finding,) = only("v = pikup\n", "LA015", known=("move",))
    assert "a primitive (look, pickup," in finding.message and "an action (move)" in finding.message
    assert finding.message.endswith("did you mean 'pickup'?")
    assert "allowed imports: bisect" in only("v = os\n", "LA015")[0].message


def test_one_finding_per_undefined_name() -> None:
    assert [(f.line, f.col) for f in only("v = sys\nw = sys\n", "LA015")] == [(1, 5)]


def test_bound_names_are_what_code_leaves_in_the_namespace() -> None:
    code = "import math\nfrom json import dumps as d\nx, y = 1, 2\nfor b in []:\n    pass\n"
    code += "f = lambda q: q\n[z for z in []]\n"
    assert bound_names(code) == {"math", "d", "x", "y", "b", "f"}
    assert bound_names("def f(:\n") == frozenset()


# LA016 denied-attribute ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attr", ["gi_frame", "gi_code", "f_globals", "f_back", "tb_frame", "co_code", "mro", "cr_frame"]
)
def test_introspection_attributes_are_refused_on_any_receiver(attr: str) -> None:
    findings = run(f"g = (n for n in [1])\nv = g.{attr}\n")
    assert [f.rule for f in findings] == ["LA016"]  # RestrictedPython's own refusal is not repeated
    assert f"attribute '{attr}' is not available" in findings[0].message


# LA011, reviewed members ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("import functools\nv = functools.update_wrapper\n", "'functools.update_wrapper' is not available"),
        ("from functools import wraps\n", "'functools.wraps' is not available"),
        ("import collections\nv = collections.namedtuple\n", "'collections.namedtuple' is not available"),
        ("import typing\nv = typing.TypeVar\n", "'typing.TypeVar' is not available"),
        ("import json\nv = json.dumps([], cls=1)\n", "json.dumps() does not accept 'cls'"),
        ("from json import loads\nv = loads('[]', cls=1)\n", "json.loads() does not accept 'cls'"),
        ("import copy\nv = copy.deepcopy([], {})\n", "copy.deepcopy() takes 1 positional argument"),
        ("import copy as c\nv = c.deepcopy([], memo={})\n", "copy.deepcopy() does not accept 'memo'"),
    ],
)
def test_members_outside_the_reviewed_list_or_refused_arguments_are_reported(code: str, words: str) -> None:
    findings = only(code, "LA011")
    assert findings and words in findings[0].message, run(code)


def test_reviewed_members_with_their_accepted_arguments_pass() -> None:
    code = (
        "import copy\nimport json\nv = json.dumps(copy.deepcopy([1]), sort_keys=True, indent=2)\n"
        "w = json.loads(v, parse_int=int)\n"
    )
    assert run(code) == []


# kinds, rules table and policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (GOOD_MODULE, MODULE),
        ("import math\n\ndef f():\n    pass\n", MODULE),
        ("pickup('a')\n", SNIPPET),
        ("import math\n", SNIPPET),
        ("def f(:\n", SNIPPET),
        ("", SNIPPET),
        ("def f():\n    pass\nf()\n", PROGRAM),
        ('"""Doc."""\nimport math\n\ndef f():\n    pass\nx = 1\n', PROGRAM),
        ("x = 1\nf = lambda: x\nf()\n", SNIPPET),
    ],
)
def test_infer_kind(code: str, kind: CodeKind) -> None:
    assert infer_kind(code) is kind


def test_rules_have_unique_ids_and_names_and_are_documented() -> None:
    assert len({r.id for r in RULES}) == len({r.name for r in RULES}) == len(RULES)
    doc = rules_module.__doc__ or ""
    for rule in RULES:
        assert f"{rule.id}   {rule.name}" in doc
        assert rule.severity.value in doc


def test_every_rule_can_fire() -> None:
    code = textwrap.dedent(
        """
        import os
        import math
        x = eval
        _y = 1
        s = "{0.real}".format(1)
        t = "{0}".format(1)
        nope()
        pickup()
        n = {}
        n['a'] += 1
        def f():
            return 1
        m = math
        class C:
            pass
        len = 2
        v = sys
        g = (i for i in [1]).gi_frame
        """
    )
    fired = {f.rule for f in check(code, MODULE, PRIMITIVES)} | {f.rule for f in check(code, SNIPPET, PRIMITIVES)}
    fired |= {f.rule for f in check("def f(:\n", SNIPPET)}
    fired |= {f.rule for f in check("def f():\n    return 1\n", PROGRAM)}
    assert fired == {r.id for r in RULES}


def test_policy_lists_are_consistent() -> None:
    assert not ALLOWED_BUILTINS & DANGEROUS_BUILTINS
    assert all(hasattr(builtins, name) for name in ALLOWED_BUILTINS)
    for name in ALLOWED_MODULES:
        module = importlib.import_module(name)
        api = module_api(name)
        assert api and not any(a.startswith("_") for a in api)
        assert not any(isinstance(getattr(module, a), ModuleType) for a in api)
    assert "get_type_hints" not in module_api("typing")
    with pytest.raises(KeyError):
        module_api("os")
    # Every reviewed call names a member of the allow-list; no member is a denied attribute name.
    assert all(attr in MODULE_API[module] for module, attr in REVIEWED_CALLS)
    assert not any(set(api) & DENIED_ATTRIBUTES for api in MODULE_API.values())


def test_checking_the_same_text_again_gives_the_same_findings() -> None:
    code = "counts = {}\ncounts['a'] += 1\n_x = eval\nvalue = pickup('a', 'b')\n"
    first = run(code)
    assert [f.rule for f in first] == ["LA008", "LA004", "LA003", "LA007"]
    assert run(code) == first
    # Same text, other kind: RestrictedPython's remembered verdict is filtered against the new findings.
    as_module = [(f.line, f.rule) for f in run(code, MODULE)]
    assert as_module == [
        (1, "LA009"),
        (2, "LA009"),
        (3, "LA004"),
        (3, "LA009"),
        (3, "LA003"),
        (4, "LA009"),
        (4, "LA007"),
    ]
    assert run(code) == first


# programs (code as policy) ------------------------------------------------------------------------

GOOD_PROGRAM = """
import math
from collections import Counter


def solve(blocks):
    for lower, upper in pairs(blocks):  # a function defined further down
        obs = move(upper, lower)
        if "not valid" in obs:
            return obs
    return f"{len(Counter(blocks))} blocks, {math.floor(len(blocks) / 2)} pairs"


def move(block, target):
    \"\"\"Docstrings are optional in a program.\"\"\"
    pickup(block)
    return stack(block, target)


def pairs(items):
    return list(zip(items, items[1:]))


obs = look()
blocks = sorted(w for w in obs.split() if w.startswith("b"))
print(solve(blocks), tower(blocks))
"""


def test_a_program_with_helpers_and_top_level_calls_passes() -> None:
    assert run(GOOD_PROGRAM, PROGRAM, known=("tower",)) == []
    assert infer_kind(textwrap.dedent(GOOD_PROGRAM)) is PROGRAM
    # As the other kinds it is refused: a snippet defines no functions, a module runs no code.
    assert "LA010" in rules_of(GOOD_PROGRAM, SNIPPET, known=("tower",))
    assert "LA009" in rules_of(GOOD_PROGRAM, MODULE, known=("tower",))


def test_a_program_checks_primitive_calls_and_unknown_calls_inside_its_functions() -> None:
    code = "def go():\n    pickup('a', 'b')\n    return helpr()\n\n\ndef helper():\n    return 1\n\n\ngo()\n"
    assert [(f.rule, f.line) for f in run(code, PROGRAM)] == [("LA007", 2), ("LA006", 3)]
    assert "did you mean 'helper'?" in only(code, "LA006", PROGRAM)[0].message


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("import os\n", "LA002"),
        ("from importlib import import_module\n", "LA002"),
        ("x = eval('1')\n", "LA003"),
        ("e = exec\n", "LA003"),
        ("def open(path):\n    return path\n", "LA003"),
        ("def f(getattr):\n    return getattr\n", "LA003"),
        ("def _helper():\n    return 1\n", "LA004"),
        ("y = ().__class__\n", "LA004"),
        ("def f(**_k):\n    return 1\n", "LA004"),
        ('s = "{0.real}".format(1)\n', "LA005"),
        ('s = "{0}".format(1)\n', "LA014"),
        ("n = {}\nn['a'] += 1\n", "LA008"),
        ("import json\nf = json.codecs\n", "LA011"),
        ("import math\nm = math\n", "LA011"),
        ("import json\nv = json.dumps([], cls=1)\n", "LA011"),
        ("class C:\n    pass\n", "LA012"),
        ("async def g():\n    return 1\n", "LA012"),
        ("def g():\n    global n\n    n = 1\n", "LA012"),
        ("@print\ndef g():\n    return 1\n", "LA012"),
        ("v = sys.modules\n", "LA015"),
        ("g = (i for i in [1]).gi_frame\n", "LA016"),
    ],
)
def test_every_safety_rule_still_fires_in_a_program(code: str, rule: str) -> None:
    # The unsafe line sits in a program with a helper and a top-level call, and inside a function.
    program = code + "\n\ndef helper():\n    return pickup('a')\n\n\nhelper()\n"
    assert rule in rules_of(program, PROGRAM), run(program, PROGRAM)
    if not code.startswith(("import", "from", "def", "class", "async", "@")):
        nested = "def inner():\n" + textwrap.indent(code, "    ") + "    return 1\n\n\ninner()\n"
        assert rule in rules_of(nested, PROGRAM), run(nested, PROGRAM)


def test_functions_of_a_program_may_call_functions_defined_later() -> None:
    code = "def first():\n    return second()\n\n\ndef second():\n    return look()\n\n\nfirst()\n"
    assert run(code, PROGRAM) == []


@pytest.mark.parametrize(
    "code",
    [
        "solve()\n\n\ndef solve():\n    return look()\n",
        "x = [solve() for _ in range(2)]\n\n\ndef solve():\n    return look()\n",
        "for _ in range(2):\n    solve()\n\n\ndef solve():\n    return look()\n",
    ],
)
def test_top_level_code_of_a_program_cannot_use_a_function_defined_below_it(code: str) -> None:
    (finding,) = only(code, "LA015", PROGRAM)
    assert finding.message.startswith("'solve' is used before it is defined: 'def solve' comes at line")
    assert only(code, "LA006", PROGRAM) == []


@pytest.mark.parametrize(
    ("code", "kwargs"),
    [
        ("solve = look\nsolve()\n\n\ndef solve():\n    return look()\n", {}),  # bound before, by other code
        ("solve()\n\n\ndef solve():\n    return look()\n", {"known": ("solve",)}),  # an action already
        ("solve()\n\n\ndef solve():\n    return look()\n", {"defined": ("solve",)}),  # left by earlier code
        ("f = lambda: solve()\n\n\ndef solve():\n    return look()\n\n\nf()\n", {}),  # runs later
    ],
)
def test_a_name_bound_before_the_top_level_use_is_not_used_before_definition(code: str, kwargs: dict) -> None:
    assert only(code, "LA015", PROGRAM, **kwargs) == []


def test_undefined_names_in_a_program_are_caught_in_every_scope() -> None:
    code = (
        "def solve(blocks):\n    return [b for b in blocks if b != target] + [missing]\n\n\n"
        "def other():\n    local = 1\n    return local\n\n\nprint(solve([]), local)\n"
    )
    assert [(f.rule, f.line, f.message.split(":")[0]) for f in only(code, "LA015", PROGRAM)] == [
        ("LA015", 2, "'target' is not defined"),
        ("LA015", 2, "'missing' is not defined"),
        ("LA015", 10, "'local' is not defined"),
    ]


def test_a_program_that_only_defines_functions_is_a_warning() -> None:
    findings = run('"""Doc."""\nimport math\n\n\ndef solve():\n    return math.pi\n', PROGRAM)
    assert [(f.rule, f.severity, f.line) for f in findings] == [("LA017", Severity.warning, 5)]
    assert "e.g. solve(...)" in findings[0].message
    assert run("x = look()\n", PROGRAM) == []  # a program without helpers is fine
