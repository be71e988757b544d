"""What model-written action code may use: modules, builtins, attributes and a size limit.

Standard library only, so that the in-sandbox runner (stdlib + RestrictedPython) imports this very
file (as ``learnact_policy``, copied into the sandbox image and the process backend's lib
directory) and enforces at run time the same lists the static checker reports against.

The rule behind every list: restricted code must never obtain a module, a frame, a code object, a
traceback, a function's ``__globals__`` or a module's namespace. Python hands those out to anyone
who can read attributes by a name given as data (``getattr(f, "__globals__")``); RestrictedPython
stops that for attribute syntax only. So everything reachable is reviewed for helpers that read,
copy or write attributes by name, evaluate text, or walk frames -- ``functools.update_wrapper``
copies ``__globals__`` into the caller's namespace when asked to, ``str.format`` reads
``{0.__globals__}``, ``typing.TypeVar`` reads ``sys._getframe()`` -- and those are left out.

Why these lists:

- ``MODULE_API``: each allowed module is exposed as an explicit list of reviewed callables and
  constants (a :class:`ModuleView`, never the module: a module leads on to the modules it imports,
  ``json.codecs.sys.modules['os']``). Nothing is derived from ``dir(module)``: a new Python version
  adds nothing by itself. Per module:

  - ``math``, ``bisect``, ``heapq``, ``itertools``: C functions (and ``heapq``'s few Python ones)
    on numbers and iterables; the only callables they call are the ones the code passes.
  - ``re``: the functions, the flags, ``error``, ``Pattern`` and ``Match``. Left out: the modules
    it re-exports (``enum``, ``functools``, ``copyreg``), ``RegexFlag``, the undocumented
    ``Scanner`` and the deprecated ``template``/``T``/``TEMPLATE``, ``DEBUG`` (prints internals).
  - ``random``: the module-level functions and ``Random`` (a seeded generator of one's own).
    Left out: ``SystemRandom`` (``os.urandom``: irreproducible) and the internal constants.
  - ``functools``: ``reduce``, ``partial``, ``cmp_to_key``, ``lru_cache``, ``cache``.
    ``lru_cache`` calls ``update_wrapper`` with its fixed default names only (no ``__globals__``).
    Left out: ``update_wrapper``/``wraps`` (copy attributes named by the caller: ``updated=
    ('__globals__',)`` pours another module's globals, hence ``sys`` and ``os``, into the caller's
    namespace), ``total_ordering``, ``singledispatch``/``singledispatchmethod`` (read annotations,
    evaluate string annotations), ``cached_property``/``partialmethod`` (descriptors writing
    attributes by name), ``WRAPPER_*``, ``RLock``, ``GenericAlias``, ``namedtuple``,
    ``get_cache_token``, ``recursive_repr``.
  - ``collections``: ``Counter``, ``defaultdict``, ``deque``, ``OrderedDict``, ``ChainMap``. Left
    out: ``namedtuple`` (builds classes by ``exec`` of text and reads ``sys._getframe``), the
    ``User*`` classes (need subclassing) and the ``abc`` submodule.
  - ``string``: the constants, ``capwords`` and ``Template`` (``$name`` substitution looks names up
    as mapping items, never as attributes). Left out: ``Formatter`` (``get_field`` reads attributes
    named in the text).
  - ``json``: ``dumps``/``loads`` without ``cls=`` (the caller would choose the class that is
    instantiated), and ``JSONDecodeError``. Left out: ``dump``/``load`` (file objects),
    ``JSONEncoder``/``JSONDecoder`` (subclassing hooks), the submodules.
  - ``statistics``: the documented functions and ``StatisticsError``. Left out: everything it
    re-exports (``sys``, ``math``, ``random``, ``namedtuple``, ``Fraction``, ``Decimal``, ...) and
    ``NormalDist`` (not needed).
  - ``copy``: ``copy`` and ``deepcopy`` of plain data only (``PLAIN_DATA_TYPES``: the builtin
    scalars and containers, ``collections``' containers), without ``memo``. ``copy`` calls hooks
    that an object's class names (``__reduce_ex__``, ``__setstate__``, ``__deepcopy__``) and, through
    them, reads and writes attributes by name; on plain data it calls none a program could choose.
    The memo dictionary would hand the caller every original object the copy visited. Left out:
    ``dispatch_table`` (``copyreg``'s writable registry).
  - ``typing``: names for annotations (``List``, ``Dict``, ``Optional``, ``Callable``, ...),
    ``cast`` and ``TYPE_CHECKING``, as stand-ins (:class:`Annotation`) rather than the real aliases:
    an alias passes every public attribute read on to its class (``typing.Type.x`` is ``type.x``,
    ``typing.Callable.register`` rewrites ``isinstance`` for the whole process). A stand-in can be
    subscripted and combined with ``|`` and does nothing else; annotations are never evaluated
    against it. Left out: ``TypeVar``/``ParamSpec``/``NewType``/``NamedTuple``/
    ``TypedDict`` (read the caller's frame, build classes), ``get_type_hints``/``ForwardRef``
    (evaluate text as code), ``get_origin``/``get_args``/``no_type_check``/``overload`` and the other
    helpers that read or write attributes of what they are given.
- ``REVIEWED_CALLS``: the members above that are callable only with some arguments (``json.dumps``
  without ``cls``, ``copy.deepcopy`` without ``memo``): the view holds a :class:`ReviewedCall` that
  refuses the others.
- ``DENIED_ATTRIBUTES``: attribute names the runner's attribute guard refuses on every object and
  the checker reports, besides every name starting with ``_``: the ``format`` family (reads
  attributes named in text: ``"{0.__globals__}".format_map(...)``; refused on any object, the type
  ``str`` included), frame, code, traceback and generator/coroutine introspection (``gi_frame``,
  ``f_back``, ``f_globals``, ``tb_frame``, ``co_consts``, ...: from a frame every module is one step
  away), ``mro`` (the class hierarchy up to ``object``) and ``obj`` (``AttributeError.obj``: the
  object on which a lookup failed, also deep inside library code: ``typing.Type.x`` fails on the
  class ``type``, and with ``type`` restricted code builds classes whose ``__reduce_ex__`` and
  ``__setstate__`` let ``copy`` write and read any attribute, the runner's included).
- ``ALLOWED_BUILTINS``: what actions need to compute on observations and call primitives.
  ``DANGEROUS_BUILTINS`` are never allowed, not even as a bare reference (``e = eval``).
"""

from __future__ import annotations

import collections
import importlib
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

MODULE_API: dict[str, frozenset[str]] = {
    "math": frozenset(
        {
            "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil", "comb",
            "copysign", "cos", "cosh", "degrees", "dist", "e", "erf", "erfc", "exp", "exp2", "expm1",
            "fabs", "factorial", "floor", "fmod", "frexp", "fsum", "gamma", "gcd", "hypot", "inf",
            "isclose", "isfinite", "isinf", "isnan", "isqrt", "lcm", "ldexp", "lgamma", "log",
            "log10", "log1p", "log2", "modf", "nan", "nextafter", "perm", "pi", "pow", "prod",
            "radians", "remainder", "sin", "sinh", "sqrt", "sumprod", "tan", "tanh", "tau", "trunc",
            "ulp",
        }
    ),
    "re": frozenset(
        {
            "compile", "search", "match", "fullmatch", "split", "findall", "finditer", "sub", "subn",
            "escape", "purge", "error", "Pattern", "Match", "NOFLAG",
            "A", "ASCII", "I", "IGNORECASE", "L", "LOCALE", "M", "MULTILINE", "S", "DOTALL",
            "U", "UNICODE", "X", "VERBOSE",
        }
    ),
    "random": frozenset(
        {
            "Random", "betavariate", "binomialvariate", "choice", "choices", "expovariate",
            "gammavariate", "gauss", "getrandbits", "lognormvariate", "normalvariate",
            "paretovariate", "randbytes", "randint", "random", "randrange", "sample", "seed",
            "shuffle", "triangular", "uniform", "vonmisesvariate", "weibullvariate",
        }
    ),
    "itertools": frozenset(
        {
            "accumulate", "batched", "chain", "combinations", "combinations_with_replacement",
            "compress", "count", "cycle", "dropwhile", "filterfalse", "groupby", "islice", "pairwise",
            "permutations", "product", "repeat", "starmap", "takewhile", "tee", "zip_longest",
        }
    ),
    "functools": frozenset({"reduce", "partial", "cmp_to_key", "lru_cache", "cache"}),
    "collections": frozenset({"Counter", "defaultdict", "deque", "OrderedDict", "ChainMap"}),
    "string": frozenset(
        {
            "ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits",
            "octdigits", "printable", "punctuation", "whitespace", "capwords", "Template",
        }
    ),
    "json": frozenset({"dumps", "loads", "JSONDecodeError"}),
    "heapq": frozenset(
        {"heapify", "heappop", "heappush", "heappushpop", "heapreplace", "merge", "nlargest", "nsmallest"}
    ),
    "bisect": frozenset({"bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"}),
    "statistics": frozenset(
        {
            "StatisticsError", "correlation", "covariance", "fmean", "geometric_mean",
            "harmonic_mean", "linear_regression", "mean", "median", "median_grouped", "median_high",
            "median_low", "mode", "multimode", "pstdev", "pvariance", "quantiles", "stdev",
            "variance",
        }
    ),
    "copy": frozenset({"copy", "deepcopy", "Error"}),
    "typing": frozenset(
        {
            "AbstractSet", "Any", "Callable", "ChainMap", "Collection", "Container", "Counter",
            "DefaultDict", "Deque", "Dict", "FrozenSet", "Generator", "Hashable", "Iterable",
            "Iterator", "List", "Literal", "Mapping", "MutableMapping", "MutableSequence",
            "MutableSet", "NoReturn", "Optional", "OrderedDict", "Sequence", "Set", "Sized", "Text",
            "Tuple", "Type", "Union", "TYPE_CHECKING", "cast",
        }
    ),
}  # fmt: skip

ALLOWED_MODULES: frozenset[str] = frozenset(MODULE_API)

# (module, member) -> (most positional arguments, keyword arguments accepted). Every other
# argument is refused before the real function runs.
REVIEWED_CALLS: dict[tuple[str, str], tuple[int, frozenset[str]]] = {
    ("json", "dumps"): (
        1,
        frozenset(
            {"skipkeys", "ensure_ascii", "check_circular", "allow_nan", "indent", "separators",
             "default", "sort_keys"}
        ),
    ),
    ("json", "loads"): (
        1,
        frozenset({"object_hook", "parse_float", "parse_int", "parse_constant", "object_pairs_hook"}),
    ),
    ("copy", "copy"): (1, frozenset()),
    ("copy", "deepcopy"): (1, frozenset()),
}  # fmt: skip

# Members whose argument must be plain data, checked through and through before the call.
PLAIN_DATA_CALLS: frozenset[tuple[str, str]] = frozenset({("copy", "copy"), ("copy", "deepcopy")})

DENIED_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # read attributes named in text
        "format", "format_map", "vformat",
        # generators, coroutines, asynchronous generators: their frames and code
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "cr_origin",
        "ag_frame", "ag_code", "ag_await",
        # frames: every namespace on the stack
        "f_back", "f_builtins", "f_code", "f_generator", "f_globals", "f_locals", "f_trace",
        # tracebacks and code objects
        "tb_frame", "tb_next", "co_code", "co_consts",
        # the class hierarchy, up to object
        "mro",
        # AttributeError.obj: the object a failed lookup was made on, wherever it failed, inside
        # library code too (`typing.Type.x` fails on the class `type` itself)
        "obj",
    }
)  # fmt: skip

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


def attribute_allowed(name: object) -> bool:
    """Whether restricted code may read (or write) an attribute of this name on any object."""
    return type(name) is str and not name.startswith("_") and name not in DENIED_ATTRIBUTES


@cache
def module_api(name: str) -> frozenset[str]:
    """The members of an allowed module that action code may use, in this Python version.

    ``MODULE_API[name]`` less the names this interpreter's module lacks (``itertools.batched`` is
    new in 3.12). Raises KeyError for a module that is not in ``ALLOWED_MODULES``.
    """
    if name not in MODULE_API:
        raise KeyError(f"module '{name}' is not allowed")
    module = importlib.import_module(name)
    return frozenset(attr for attr in MODULE_API[name] if hasattr(module, attr))


def module_view(name: str) -> ModuleView:
    """What ``import name`` gives restricted code: the reviewed members of the module, nothing else."""
    if name == "typing":
        return ModuleView(name, {attr: _typing_stand_in(attr) for attr in module_api(name)})
    module = importlib.import_module(name)
    members: dict[str, Any] = {}
    for attr in module_api(name):
        value = getattr(module, attr)
        reviewed = REVIEWED_CALLS.get((name, attr))
        if reviewed:
            value = ReviewedCall(value, f"{name}.{attr}", *reviewed, plain_data=(name, attr) in PLAIN_DATA_CALLS)
        members[attr] = value
    return ModuleView(name, members)


def _typing_stand_in(attr: str) -> Any:
    if attr == "TYPE_CHECKING":
        return False
    if attr == "cast":
        return ReviewedCall(_cast, "typing.cast", 2, frozenset())
    return Annotation(attr)


def _cast(annotation: object, value: object) -> object:
    return value


PLAIN_DATA_TYPES: frozenset[type] = frozenset(
    {
        type(None), bool, int, float, complex, str, bytes, range, slice,
        list, tuple, dict, set, frozenset,
        collections.Counter, collections.defaultdict, collections.deque, collections.OrderedDict,
        collections.ChainMap,
    }
)  # fmt: skip
_CONTAINERS = (list, tuple, set, frozenset, collections.deque)
_MAPPINGS = (dict, collections.Counter, collections.defaultdict, collections.OrderedDict)


def require_plain_data(value: object, what: str) -> None:
    """Raise TypeError unless ``value`` is made of ``PLAIN_DATA_TYPES`` only (exact types, any depth).

    Walked without recursion, each object once: cycles and shared parts are fine.
    """
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        kind = type(item)
        if kind not in PLAIN_DATA_TYPES:
            raise TypeError(f"{what}() copies plain data only (str, numbers, lists, dicts, ...), not {kind.__name__}")
        if isinstance(item, _MAPPINGS):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, collections.ChainMap):
            stack.extend(item.maps)
        elif isinstance(item, _CONTAINERS):
            stack.extend(item)
        elif kind is slice:
            stack.extend((item.start, item.stop, item.step))


class ModuleView:
    """A read-only namespace of reviewed members; no public attribute besides them.

    It is never copied, pickled or written: restricted code gets the same view, and the view
    leads nowhere but to its members. It must have no ``__name__``: for ``from json import decoder``
    Python falls back to ``sys.modules[view.__name__ + '.decoder']``, the real submodule.
    """

    __slots__ = ("_name", "_members")

    def __init__(self, name: str, members: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_members", dict(members))

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # not a member; also ends the lookup of unset slots
            raise AttributeError(attr)
        try:
            return self._members[attr]
        except KeyError:
            raise AttributeError(
                f"module '{self._name}' has no attribute '{attr}' in the sandbox "
                f"(available: {', '.join(sorted(self._members))})"
            ) from None

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"module '{self._name}' is read-only in the sandbox")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"module '{self._name}' is read-only in the sandbox")

    def __dir__(self) -> list[str]:
        return sorted(self._members)

    def __repr__(self) -> str:
        return f"<module '{self._name}' (sandbox view)>"

    def __copy__(self) -> ModuleView:
        return self

    def __deepcopy__(self, memo: object) -> ModuleView:
        return self

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(f"cannot pickle module '{self._name}'")


class ReviewedCall:
    """A callable that forwards to a module's function only the arguments reviewed as safe."""

    __slots__ = ("_function", "_name", "_positional", "_keywords", "_plain_data")

    def __init__(
        self,
        function: Callable[..., Any],
        name: str,
        positional: int,
        keywords: frozenset[str],
        plain_data: bool = False,
    ) -> None:
        object.__setattr__(self, "_function", function)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_positional", positional)
        object.__setattr__(self, "_keywords", keywords)
        object.__setattr__(self, "_plain_data", plain_data)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) > self._positional:
            raise TypeError(f"{self._name}() takes {self._positional} positional argument(s) in the sandbox")
        refused = sorted(set(kwargs) - self._keywords)
        if refused:
            accepted = ", ".join(sorted(self._keywords)) or "none"
            raise TypeError(
                f"{self._name}() does not accept {', '.join(refused)} in the sandbox (keywords accepted: {accepted})"
            )
        if self._plain_data:
            for arg in args:
                require_plain_data(arg, self._name)
        return self._function(*args, **kwargs)

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"{self._name} is read-only in the sandbox")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"{self._name} is read-only in the sandbox")

    def __repr__(self) -> str:
        return f"<function {self._name}>"

    def __copy__(self) -> ReviewedCall:
        return self

    def __deepcopy__(self, memo: object) -> ReviewedCall:
        return self

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(f"cannot pickle {self._name}")


class Annotation:
    """A ``typing`` name in the sandbox: subscripted and combined with ``|`` like the real one, no more.

    ``List[str]``, ``Optional[int]``, ``Dict[str, int] | None`` give new stand-ins that print like
    the annotation they stand for; no attribute, no call, no ``isinstance`` (as for a subscripted
    real alias, that raises TypeError).
    """

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        object.__setattr__(self, "_text", text)

    def __getitem__(self, parameters: object) -> Annotation:
        items = parameters if type(parameters) is tuple else (parameters,)
        return Annotation(f"{self._text}[{', '.join(map(_annotation_text, items))}]")

    def __or__(self, other: object) -> Annotation:
        return Annotation(f"{self._text} | {_annotation_text(other)}")

    def __ror__(self, other: object) -> Annotation:
        return Annotation(f"{_annotation_text(other)} | {self._text}")

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"{self._text} is read-only in the sandbox")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"{self._text} is read-only in the sandbox")

    def __repr__(self) -> str:
        return self._text

    def __copy__(self) -> Annotation:
        return self

    def __deepcopy__(self, memo: object) -> Annotation:
        return self

    def __reduce_ex__(self, protocol: object) -> Any:
        raise TypeError(f"cannot pickle {self._text}")


def _annotation_text(item: object) -> str:
    if type(item) is Annotation:
        return repr(item)
    if type(item) is list:  # Callable[[int, str], bool]
        return "[" + ", ".join(map(_annotation_text, item)) + "]"
    if item is None:
        return "None"
    if item is Ellipsis:
        return "..."
    if type(item) is str:  # a forward reference: kept as text, never evaluated
        return repr(item)
    if isinstance(item, type):
        return item.__name__
    return type(item).__name__
