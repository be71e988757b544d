"""What restricted code can reach, proved by walking it; and the attacks that used to reach `os`.

The walk starts from what the runner really gives restricted code -- its builtins, its import hook's
module views, a primitive stub, and a few representative values that restricted code itself builds
(compiled by RestrictedPython with the runner's own guards) -- and follows every attribute the
runner's attribute guard lets through, and every item of a container. Nothing on the way may be a
module, a frame, a code object, a traceback, a module's namespace or a function's globals, or one of
the runner's own objects.

The attack snippets use allowed names only; each reached `os` before the allow-list (functools'
wrapper helpers copy ``__globals__`` into the caller's namespace). They run through the real
sandbox, restricted but with the checker switched off, and must fail with an error; the checker
must refuse every one of them.
"""

from __future__ import annotations

import builtins as python_builtins
import collections
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from RestrictedPython import compile_restricted_exec
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

import learnact.actions
from learnact.actions import CodeKind, Severity, check, policy
from learnact.envs.base import ParamSpec, PrimitiveSpec
from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig, runner

PICKUP = PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick a block up.")

# Values restricted code builds itself, so that the walk also covers instances and call results.
REPRESENTATIVES = """
import collections, copy, functools, itertools, json, random, re, statistics, string, typing
generator = (n for n in [1, 2])
lam = lambda: 0
pattern = re.compile('(?P<word>a+)')
match = pattern.match('aa')
counter = collections.Counter('abca')
chain_map = collections.ChainMap({'a': 1}, {})
default = collections.defaultdict(list)
ordered = collections.OrderedDict(a=1)
queue = collections.deque([1], 3)
partial = functools.partial(max, 1)
cached = functools.lru_cache(collections.Counter)
cached_call = functools.lru_cache(json.dumps)
key = functools.cmp_to_key(lambda a, b: 0)(1)
template = string.Template('$a')
rng = random.Random(1)
chained = itertools.chain([1], [2])
grouped = itertools.groupby('aab')
alias = typing.List[int]
optional = typing.Optional[int]
regression = statistics.linear_regression([1, 2, 3], [2, 4, 6])
copied = copy.copy(counter)
deep = copy.deepcopy([counter, chain_map, queue, {'a': (1, [2])}])
try:
    (1).nothing
except AttributeError as error:
    attribute_error = error
try:
    json.loads('{')
except json.JSONDecodeError as error:
    decode_error = error
try:
    pickup(1, 2)
except Exception as error:
    primitive_error = error
try:
    typing.Type.nothing  # fails inside typing, on the class `type`
except AttributeError as error:
    alias_error = error
"""

# Reached `os` (and so the host) with the old module views, through allowed names only.
ATTACKS = {
    "update_wrapper": (
        "import functools\nimport json\n"
        "g = lambda: 0\n"
        "functools.update_wrapper(g, json.dumps, assigned=(), updated=('__globals__',))\n"
        "print(codecs.sys.modules['os'].popen('id').read())\n"
    ),
    "wraps": (
        "import functools\nimport statistics\n"
        "functools.wraps(statistics.mean, assigned=(), updated=('__globals__',))(lambda: 0)\n"
        "print(sys.modules['os'].popen('id').read())\n"
    ),
    "primitive_globals": (
        "import functools\n"
        "functools.update_wrapper(lambda: 0, pickup, assigned=(), updated=('__globals__',))\n"
        "print(os.popen('id').read())\n"
    ),
    "str_format_on_the_type": (
        "import statistics\nprint(str.format('{0.__globals__[sys].modules[os]}', statistics.mean))\n"
    ),
    "format_map": "import statistics\nprint('{m.__globals__[sys]}'.format_map({'m': statistics.mean}))\n",
    "generator_frame": "g = (n for n in [1])\nprint(g.gi_frame.f_back.f_globals['os'])\n",
    "namedtuple": "import collections\nP = collections.namedtuple('P', ['a'])\nprint(P)\n",
    "deepcopy_memo": "import copy\nmemo = {}\ncopy.deepcopy([pickup], memo)\nprint(memo)\n",
    "json_cls": "import json\nprint(json.loads('[]', cls=dict))\n",
    # AttributeError.obj handed out `type`; with it, classes whose __reduce_ex__/__setstate__ make
    # copy write and read any attribute: Primitive._call is Runner.call, a deepcopy of it puts a
    # Runner in the memo, and the runner's `policy` module leads to importlib and os.
    "attribute_error_obj": (
        "import copy\nimport typing\n"
        "try:\n    typing.Type.nothing\nexcept AttributeError as error:\n    kind = error.obj\n"
        "saved = []\n"
        "write = lambda target, attributes: copy.copy(\n"
        "    kind('W', (), {'__reduce_ex__': lambda self, proto: (lambda: target, (), (None, attributes))})())\n"
        "write(kind(pickup), {'__copy__': None, '__reduce_ex__': None, '__slots__': (),\n"
        "    '__slotnames__': ['_call'], '__setstate__': lambda self, state: saved.append(state[1]['_call'])})\n"
        "copy.copy(pickup)\n"
        "spy = kind('Spy', (), {'__deepcopy__': lambda self, memo: saved.append(memo)})\n"
        "try:\n    copy.deepcopy([spy(), saved[0]])\nexcept Exception:\n    pass\n"
        'shells = [kind(v) for v in saved[1].values() if repr(kind(v)).endswith("Runner\'>")]\n'
        "write(shells[0], {'__deepcopy__': lambda self, memo: saved.append(self)})\n"
        "try:\n    copy.deepcopy(saved[0])\nexcept TypeError:\n    pass\n"
        "print(saved[2].policy.importlib.import_module('os').popen('id').read())\n"
    ),
}


def handler(name: str, args: list) -> str:
    return f"You pick up {args[0]}."


# ---- the walk ------------------------------------------------------------------------------------


def restricted_namespace() -> tuple[dict, dict]:
    """The runner's builtins and guards, a primitive stub, and REPRESENTATIVES run in them."""
    builtins, guards = runner.restricted_environment(policy)
    namespace = {"__builtins__": builtins, **guards}
    namespace["pickup"] = runner.Primitive("pickup", lambda name, args, kwargs: f"called {name}{tuple(args)}")
    compiled = compile_restricted_exec(REPRESENTATIVES, "<representatives>")
    assert not compiled.errors, compiled.errors
    exec(compiled.code, namespace)
    return builtins, namespace


def children(obj: object, guard) -> Iterator[tuple[str, object]]:
    """What restricted code gets from ``obj`` in one step: attributes the guard allows, items."""
    names: set[str] = set()
    for source in (obj, type(obj)):
        try:
            names.update(dir(source))
        except Exception:
            pass
    for name in sorted(names):
        try:
            yield f".{name}", guard(obj, name)
        except Exception:  # refused by the guard, or no such attribute after all
            continue
    if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
        for index, item in enumerate(list(obj)):
            yield f"[{index}]", item
    elif isinstance(obj, (dict, types.MappingProxyType, collections.ChainMap)):
        for index, (key, value) in enumerate(list(obj.items())):
            yield f"<key {index}>", key
            yield f"[{key!r}]", value


def forbidden(obj: object, namespace: dict, builtins: dict) -> str | None:
    if isinstance(obj, (types.ModuleType, types.FrameType, types.CodeType, types.TracebackType)):
        return type(obj).__name__
    if isinstance(obj, (runner.Runner, runner.Channel, runner.Capture, runner.CaptureWriter)):
        return f"runner object {type(obj).__name__}"
    if isinstance(obj, type) and obj.__module__ == runner.__name__:
        return f"runner class {obj.__name__}"
    if any(obj is getattr(python_builtins, name, None) for name in policy.DANGEROUS_BUILTINS):
        return "a dangerous builtin"  # `type` builds classes, `getattr` reads any attribute, ...
    if obj is namespace or obj is builtins:
        return "the restricted namespace or its builtins"
    if isinstance(obj, dict):
        if "__builtins__" in obj:
            return "a function's globals"
        if any(obj is getattr(module, "__dict__", None) for module in list(sys.modules.values())):
            return "a module's namespace"
    if isinstance(obj, types.FunctionType) and obj.__module__ == runner.__name__:
        return "a function of the runner"  # its __globals__ are the runner's module
    if isinstance(obj, types.MethodType) and getattr(obj.__func__, "__module__", None) == runner.__name__:
        return "a bound method of the runner"  # its __func__.__globals__ too
    return None


MAX_DEPTH = 12  # steps from a root; some attributes make a new object each time (ChainMap.parents)


def walk(roots: dict[str, object], namespace: dict, builtins: dict, guard) -> tuple[dict[int, str], list[str]]:
    seen: dict[int, str] = {}
    keep: list[object] = []  # objects made by getattr stay alive, so that ids are not reused
    problems: list[str] = []
    queue = collections.deque((path, obj, 0) for path, obj in roots.items())
    while queue:
        path, obj, depth = queue.popleft()
        if id(obj) in seen:
            continue
        seen[id(obj)] = path
        keep.append(obj)
        reason = forbidden(obj, namespace, builtins)
        if reason:
            problems.append(f"{path}: {reason}")
            continue
        if depth == MAX_DEPTH:
            continue
        for step, child in children(obj, guard):
            if id(child) not in seen:
                queue.append((path + step, child, depth + 1))
    return seen, problems


# What restricted code gets from the names RestrictedPython's output calls, as values: `print` compiles to
# `_print._call_print`, `printed` to `_print()`. (`__metaclass__` is `type`, named only by a class statement.)
INJECTED_VALUES = "print_as_value = print\nprint_in_a_list = [print]\nprinted_value = printed\n"


def roots_of(builtins: dict, namespace: dict) -> dict[str, object]:
    roots = {f"builtins.{name}": value for name, value in builtins.items() if name != "__import__"}
    importer = builtins["__import__"]
    roots.update({f"import {name}": importer(name) for name in sorted(policy.ALLOWED_MODULES)})
    roots.update({name: value for name, value in namespace.items() if name not in ("__metaclass__", "__builtins__")})
    compiled = compile_restricted_exec(INJECTED_VALUES, "<injected>")
    assert not compiled.errors, compiled.errors
    exec(compiled.code, namespace)
    roots.update({name: namespace[name] for name in ("print_as_value", "print_in_a_list", "printed_value")})
    return roots


def test_nothing_reachable_leads_to_modules_frames_globals_or_the_runner() -> None:
    builtins, namespace = restricted_namespace()
    seen, problems = walk(roots_of(builtins, namespace), namespace, builtins, namespace["_getattr_"])
    assert problems == []
    # The walk did walk: module members, methods of the values built, items of containers, every injected name.
    paths = set(seen.values())
    assert len(seen) > 2000
    assert {"import json.dumps", "import re.compile", "counter.most_common", "regression.slope"} <= paths
    assert {"print_as_value", "_print_", "_apply_", "_inplacevar_", "_getitem_", "_write_"} <= paths


def test_print_taken_as_a_value_still_prints_and_is_sealed(capsys: pytest.CaptureFixture[str]) -> None:
    _, namespace = restricted_namespace()
    compiled = compile_restricted_exec("say = print\nsay('through a value')\nx = 1\nx += 2\n", "<print>")
    exec(compiled.code, namespace)
    assert capsys.readouterr().out == "through a value\n" and namespace["x"] == 3
    assert repr(namespace["say"]) == "<built-in function print>"
    with pytest.raises(AttributeError):
        namespace["say"].anything = 1


def test_the_walk_finds_what_a_whole_module_would_give() -> None:
    # The detector itself: the old view (every public name of the module) reaches modules at once.
    import json

    builtins, namespace = restricted_namespace()
    old_view = types.SimpleNamespace(**{name: getattr(json, name) for name in dir(json) if not name.startswith("_")})
    _, problems = walk({"json": old_view}, namespace, builtins, namespace["_getattr_"])
    assert any("ModuleType" in problem or "module" in problem for problem in problems)


def test_views_hold_exactly_the_reviewed_members() -> None:
    importer = runner.restricted_environment(policy)[0]["__import__"]
    for name in policy.ALLOWED_MODULES:
        view = importer(name)
        assert set(dir(view)) == policy.module_api(name) <= policy.MODULE_API[name]
        for member in dir(view):
            assert not isinstance(getattr(view, member), types.ModuleType)
    never = {
        "functools": {
            "update_wrapper",
            "wraps",
            "total_ordering",
            "singledispatch",
            "cached_property",
            "partialmethod",
        },
        "collections": {"namedtuple"},
        "string": {"Formatter"},
        "typing": {"get_type_hints", "ForwardRef", "TypeVar", "NamedTuple", "NewType", "TypedDict"},
        "json": {"JSONEncoder", "JSONDecoder", "codecs"},
        "copy": {"dispatch_table"},
        "statistics": {"sys", "namedtuple", "math"},
    }
    for module, names in never.items():
        assert not names & policy.MODULE_API[module], module


@pytest.mark.parametrize("code", ["from json import decoder", "from collections import abc", "from re import enum"])
def test_from_imports_never_fall_back_to_submodules(code: str) -> None:
    # IMPORT_FROM looks in sys.modules under the view's __name__ when the view lacks the member.
    _, namespace = restricted_namespace()
    with pytest.raises(ImportError, match="cannot import name"):
        exec(compile_restricted_exec(code, "<attack>").code, namespace)


def test_views_and_stubs_cannot_be_written_copied_apart_or_pickled() -> None:
    import copy
    import pickle

    builtins, namespace = restricted_namespace()
    view, stub = builtins["__import__"]("json"), namespace["pickup"]
    for obj in (view, stub, view.dumps):
        with pytest.raises(AttributeError):
            obj.anything = 1
        assert copy.copy(obj) is obj and copy.deepcopy(obj) is obj
        with pytest.raises(TypeError):
            pickle.dumps(obj)
        assert [name for name in dir(obj) if not name.startswith("_")] == ([] if obj is not view else dir(view))


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("import json\njson.dumps([1], cls=dict)", "does not accept cls"),
        ("import json\njson.loads('[]', cls=dict)", "does not accept cls"),
        ("import copy\ncopy.deepcopy([1], {})", "takes 1 positional argument"),
        ("import copy\ncopy.deepcopy([1], memo={})", "does not accept memo"),
        ("import copy\ncopy.copy(pickup)", "plain data only"),
        ("import copy\ncopy.deepcopy({'a': [1, (2, pickup)]})", "plain data only"),
    ],
)
def test_reviewed_calls_refuse_arguments_that_choose_classes_or_collect_internals(code: str, error: str) -> None:
    _, namespace = restricted_namespace()
    compiled = compile_restricted_exec(code, "<attack>")
    with pytest.raises(TypeError, match=error):
        exec(compiled.code, namespace)


def test_copy_calls_no_hook_a_program_could_choose_even_if_it_had_type() -> None:
    # Defence in depth: with `type` (which no reviewed path hands out), a class's __reduce_ex__ would
    # make copy call anything and write any attribute. Copies take plain data only, so no hook runs.
    _, namespace = restricted_namespace()
    namespace["kind"] = type
    code = (
        "import copy\n"
        "W = kind('W', (), {'__reduce_ex__': lambda self, proto: (print, ('hook ran',))})\n"
        "copy.copy(W())\n"
    )
    with pytest.raises(TypeError, match="plain data only"):
        exec(compile_restricted_exec(code, "<attack>").code, namespace)
    exec(compile_restricted_exec("import copy\nv = copy.deepcopy({'a': [1, {2}]})", "<ok>").code, namespace)
    assert namespace["v"] == {"a": [1, {2}]}


def test_typing_names_are_stand_ins_that_annotate_and_lead_nowhere() -> None:
    _, namespace = restricted_namespace()
    code = (
        "import typing\n"
        "from typing import Dict, List, Optional\n"
        "def size(blocks: List[str], extra: Optional[Dict[str, int]] = None) -> int | None:\n"
        "    return len(typing.cast(List[str], blocks))\n"
        "v = size(['a', 'b'])\n"
        "text = repr(Dict[str, typing.Callable[[int], bool]] | None)\n"
    )
    exec(compile_restricted_exec(code, "<ok>").code, namespace)
    assert namespace["v"] == 2 and namespace["text"] == "Dict[str, Callable[[int], bool]] | None"
    for attack in ("typing.Callable.register", "typing.Type.nothing", "typing.List.copy_with"):
        with pytest.raises(AttributeError) as raised:
            exec(compile_restricted_exec(f"import typing\n{attack}", "<attack>").code, namespace)
        assert getattr(raised.value, "obj", None) is not type


def test_the_guard_refuses_denied_names_on_every_object() -> None:
    _, namespace = restricted_namespace()
    guard = namespace["_getattr_"]
    assert set(INSPECT_ATTRIBUTES) <= policy.DENIED_ATTRIBUTES  # RestrictedPython's list, at least
    for obj in (str, "text", namespace["template"], namespace["generator"], namespace["counter"], int):
        for name in ("format", "format_map", "mro", "gi_frame", "__class__", "_x"):
            with pytest.raises(AttributeError, match="not available in the sandbox"):
                guard(obj, name)
    assert guard("a b", "split")() == ["a", "b"] and guard(str, "join")
    assert guard(namespace["generator"], "missing", 7) == 7


# ---- the attacks, through the checker and the real sandbox ---------------------------------------


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_the_checker_refuses_every_attack(name: str) -> None:
    findings = check(ATTACKS[name], CodeKind.agent_snippet, [PICKUP])
    assert any(f.severity is Severity.error for f in findings), findings


def run_attacks(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setattr(learnact.actions, "check", lambda *args, **kwargs: [])  # restricted, unchecked
    results = {}
    with sandbox.session([PICKUP], handler) as session:
        for name, code in ATTACKS.items():
            results[name] = session.execute(code)
    return results


def assert_all_failed(results: dict) -> None:
    for name, result in results.items():
        assert result.findings == [], name
        assert result.status is ExecutionStatus.error, (name, result.status, result.error, result.stdout)
        assert "uid=" not in result.stdout and "posix" not in result.stdout, name


def test_attacks_fail_in_the_process_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    config = SandboxConfig(backend="process", timeout_s=5.0, cpu_s=2, memory_mb=256, pool_size=0)
    with Sandbox(config) as sandbox:
        assert_all_failed(run_attacks(sandbox, monkeypatch))


@pytest.mark.docker
def test_attacks_fail_in_the_bwrap_backend(bwrap_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SandboxConfig(backend="bwrap", timeout_s=5.0, cpu_s=2, memory_mb=256, pool_size=0)
    with Sandbox(config) as sandbox:
        assert_all_failed(run_attacks(sandbox, monkeypatch))


@pytest.mark.docker
@pytest.mark.parametrize("runtime", ["runc", "runsc"])
def test_attacks_fail_in_the_docker_backend(runtime: str, sandbox_image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SandboxConfig(runtime=runtime, timeout_s=5.0, cpu_s=2, memory_mb=128, pool_size=0)
    with Sandbox(config) as sandbox:
        assert_all_failed(run_attacks(sandbox, monkeypatch))
