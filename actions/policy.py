"""What model-written action code may use: modules, builtins and a size limit.

Standard library only, so that the in-sandbox runner (stdlib + RestrictedPython) imports this very
file (as ``learnact_policy``, copied into the sandbox image and linked for the process backend) and
enforces at run time the same lists the static checker reports against.

Why these lists:

- ``ALLOWED_MODULES``: pure computation, no I/O, no process, no introspection. Left out on
  purpose: ``os``/``sys``/``subprocess``/``socket``/``io``/``pathlib`` (the outside world),
  ``inspect``/``types``/``gc``/``builtins``/``importlib`` (introspection that walks out of any
  restriction), ``operator`` (``attrgetter`` is ``getattr`` under another name), ``dataclasses``
  (it needs decorators and classes, which actions cannot use, and exposes ``builtins`` and
  ``inspect`` as attributes), ``time``/``datetime`` (make runs irreproducible).
- Even an allowed module is reachable only through its public, non-module attributes
  (:func:`module_api`): ``json.codecs.open`` or ``typing.sys.modules`` would otherwise reach
  everything. ``DENIED_MODULE_NAMES`` removes the few public members that evaluate text as code
  (``typing.get_type_hints``/``ForwardRef``) or read attributes named by strings
  (``string.Formatter``).
- ``ALLOWED_BUILTINS``: what actions need to compute on observations and call primitives.
  ``DANGEROUS_BUILTINS`` are never allowed, not even as a bare reference (``e = eval``).
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from types import ModuleType

ALLOWED_MODULES: frozenset[str] = frozenset(
    {
        "math",
        "re",
        "random",
        "itertools",
        "functools",
        "collections",
        "string",
        "json",
        "heapq",
        "bisect",
        "statistics",
        "copy",
        "typing",
    }
)

DENIED_MODULE_NAMES: dict[str, frozenset[str]] = {
    "typing": frozenset({"get_type_hints", "ForwardRef"}),
    "string": frozenset({"Formatter"}),
}

ALLOWED_BUILTINS: frozenset[str] = frozenset(
    {
        # values and containers
        "bool", "int", "float", "str", "list", "dict", "set", "frozenset", "tuple", "slice",
        # computation
        "abs", "all", "any", "chr", "divmod", "enumerate", "filter", "hash", "hex", "iter",
        "len", "map", "max", "min", "next", "oct", "ord", "pow", "range", "repr", "reversed",
        "round", "sorted", "sum", "zip", "isinstance", "issubclass", "callable", "print",
        # exceptions an action may raise or catch
        "Exception", "ArithmeticError", "AssertionError", "AttributeError", "IndexError",
        "KeyError", "LookupError", "NotImplementedError", "RuntimeError", "StopIteration",
        "TypeError", "ValueError", "ZeroDivisionError",
    }
)  # fmt: skip

DANGEROUS_BUILTINS: frozenset[str] = frozenset(
    {
        # run text as code
        "exec", "eval", "compile", "__import__", "__build_class__",
        # reach namespaces or attributes by name
        "globals", "locals", "vars", "dir", "getattr", "setattr", "delattr",
        # make classes or reach the object model
        "type", "object", "super", "classmethod", "staticmethod", "property", "memoryview",
        # I/O and interpreter control
        "open", "input", "breakpoint", "help", "exit", "quit", "copyright", "credits", "license",
    }
)  # fmt: skip

# Longer code is rejected before parsing: parsing cost grows with size and no action needs more.
MAX_CODE_CHARS = 100_000


@lru_cache(maxsize=None)
def module_api(name: str) -> frozenset[str]:
    """Attribute names of an allowed module that action code may use.

    Public (no leading ``_``), not a module, not denied. Raises KeyError for a module that is
    not in ``ALLOWED_MODULES``.
    """
    if name not in ALLOWED_MODULES:
        raise KeyError(f"module '{name}' is not allowed")
    module = importlib.import_module(name)
    denied = DENIED_MODULE_NAMES.get(name, frozenset())
    return frozenset(
        attr
        for attr in dir(module)
        if not attr.startswith("_")
        and attr not in denied
        and not isinstance(getattr(module, attr), ModuleType)
    )
