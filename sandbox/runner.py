"""The in-sandbox runner: executes untrusted code and proxies its primitive calls to the host.

It runs INSIDE the sandbox (container or child process) with the standard library and
RestrictedPython only; it must never import learnact. What restricted code may use comes from
``learnact_policy``, which is ``learnact/actions/policy.py`` (stdlib only) placed next to
RestrictedPython in ``--lib``: the static checker and the runner enforce the very same lists.
It speaks the JSON-lines protocol of ``learnact.sandbox.protocol`` on private descriptors: at start
it duplicates stdin/stdout/stderr, points fd 0 at /dev/null and fds 1 and 2 at a non-blocking pipe
with room for the output cap, so that nothing the program writes (print, sys.stdout, os.write(1, ...))
can mix with the protocol and output beyond the cap fails at once. Its own fatal errors go to the original stderr.

Nothing here is the security boundary: with the check off the program owns this process and can
say anything on the protocol. The host validates every message, counts calls itself and enforces
the wall-clock limit by killing the sandbox; the container (or process limits) is the boundary.
"""

from __future__ import annotations

import argparse
import codecs
import fcntl
import importlib
import json
import operator
import os
import resource
import signal
import sys
import threading
import traceback
import types

AGENT, ACTION = "<agent>", "<action>"
POLICY_MODULE = "learnact_policy"  # learnact/actions/policy.py, as the image and process backend name it
MAX_ERROR_CHARS = 2000
MAX_TRACEBACK_CHARS = 4000
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000


class CpuTimeout(BaseException):
    """Raised by the CPU alarm; a BaseException so that `except Exception` does not swallow it."""


class OutputLimit(BaseException):
    """Raised when the program writes more than the output cap."""


class Channel:
    """JSON lines on the two private protocol descriptors."""

    def __init__(self, fd_in: int, fd_out: int, max_bytes: int) -> None:
        self.fd_in, self.fd_out, self.max_bytes = fd_in, fd_out, max_bytes
        self.buffer = b""
        # Built once: json.dumps/json.loads with options build a new encoder/decoder per call.
        # ASCII only: every str encodes, lone surrogates included (as \ud800 escapes, which the host
        # makes valid text); with raw UTF-8 such a string would crash the runner.
        self.encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        self.decoder = json.JSONDecoder()

    def read(self) -> dict | None:
        while (end := self.buffer.find(b"\n")) < 0:
            chunk = os.read(self.fd_in, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer[:end], self.buffer[end + 1 :]
        return self.decoder.decode(line.decode("utf-8"))

    def encode(self, message: dict) -> bytes:
        """One message without its newline (its length is what the cap limits)."""
        return self.encoder.encode(message).encode()

    def write(self, message: dict) -> None:
        self.send(self.encode(message))

    def send(self, line: bytes) -> None:
        data = memoryview(line + b"\n")
        while data:
            data = data[os.write(self.fd_out, data) :]


class Capture:
    """The program's stdout+stderr: a pipe sized to the cap whose write end never blocks."""

    def __init__(self) -> None:
        self.read_fd, write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(write_fd, False)  # a full pipe fails the write instead of hanging
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.cap = 0
        self.overflowed = False

    def begin(self, cap: int) -> None:
        self.take()  # whatever stray threads wrote since the last execution is not this one's
        self.cap, self.overflowed = cap, False
        try:
            fcntl.fcntl(1, fcntl.F_SETPIPE_SZ, cap + 1)
        except OSError:  # above /proc/sys/fs/pipe-max-size: keep the largest allowed
            fcntl.fcntl(1, fcntl.F_SETPIPE_SZ, _pipe_max_size())

    def take(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        if len(data) > self.cap or len(data) >= fcntl.fcntl(1, fcntl.F_GETPIPE_SZ):
            self.overflowed = True
        return data[: self.cap]


def _pipe_max_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 16


class CaptureWriter:
    """sys.stdout/sys.stderr of the program: writes to fd 1; a full capture ends the execution."""

    encoding = "utf-8"
    errors = "backslashreplace"

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    def write(self, text: str) -> int:
        data = memoryview(str(text).encode("utf-8", "backslashreplace"))  # a lone surrogate: \ud800
        try:
            while data:
                data = data[os.write(1, data) :]
        except BlockingIOError:
            self.capture.overflowed = True
            raise OutputLimit from None
        return len(text)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False


class Runner:
    def __init__(self, channel: Channel, capture: Capture, kill_strays: bool, policy: types.ModuleType) -> None:
        self.channel, self.capture, self.kill_strays = channel, capture, kill_strays
        self.policy = policy
        self.pid = os.getpid()
        self.main_thread = threading.get_ident()
        self.current_id: int | None = None
        self.armed = False
        self.sources: dict[str, list[str]] = {}
        self.namespace: dict = {"__name__": "sandbox"}
        self.safe_builtins = self._safe_builtins()
        signal.signal(signal.SIGPROF, self._on_cpu_alarm)

    # ---- restricted environment ---------------------------------------------------------------

    def _safe_builtins(self) -> dict:
        names, guards = restricted_environment(self.policy)
        self.namespace.update(guards)
        return names

    def install_primitives(self, names: list[str]) -> None:
        for name in names:
            self.namespace[name] = Primitive(name, self.call)

    # ---- primitive calls ------------------------------------------------------------------------

    def call(self, name: str, args: list, kwargs: dict) -> str:
        if threading.get_ident() != self.main_thread or self.current_id is None:
            raise RuntimeError(f"{name}(): primitives can only be called from the program's main thread")
        if kwargs:
            raise TypeError(f"{name}() takes positional arguments only")
        message = {"op": "call", "id": self.current_id, "name": name, "args": args}
        try:
            data = self.channel.encode(message)
        except (TypeError, ValueError):
            raise TypeError(f"{name}(): arguments must be strings or integers") from None
        if len(data) > self.channel.max_bytes:
            raise ValueError(f"{name}(): arguments are too large ({len(data)} bytes)")
        self.channel.send(data)
        reply = self.channel.read()
        if reply is None or reply.get("id") != self.current_id or reply.get("op") not in ("result", "error"):
            _fatal(f"unexpected reply to a primitive call: {reply!r}")
        if reply["op"] == "error":
            raise ValueError(reply["message"])
        return reply["value"]

    # ---- executions -------------------------------------------------------------------------------

    def _on_cpu_alarm(self, signum, frame) -> None:
        if self.armed:  # one shot: a program that swallows it is stopped by the host's wall clock
            self.armed = False
            raise CpuTimeout

    def _arm(self, cpu_s: float) -> None:
        self.armed = True
        signal.setitimer(signal.ITIMER_PROF, cpu_s)

    def _disarm(self) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_PROF, 0)

    def run(self, request: dict) -> None:
        filename = ACTION if request["op"] == "load" else AGENT
        restricted = bool(request["restricted"])
        cpu_s = float(request.get("cpu_s", 0)) or None
        self.current_id = request["id"]
        self.capture.begin(int(request.get("max_output_bytes", 64_000)))
        status, error = "ok", None
        try:
            code = self._compile(request["code"], filename, restricted)
            self.namespace["__builtins__"] = self.safe_builtins if restricted else __builtins__
            if cpu_s:
                self._arm(cpu_s)
            exec(code, self.namespace)
            self._disarm()
        except BaseException as exc:  # the program's own failure, whatever it is
            self._disarm()
            status, error = self._classify(exc, cpu_s)
        if os.getpid() != self.pid:
            os._exit(0)  # a child forked by the program must never speak for it
        self.current_id = None
        stdout = self.capture.take()
        if self.capture.overflowed and status in ("ok", "error"):
            status = "output_limit"
            error = {"type": "OutputLimit", "message": f"output exceeded {self.capture.cap} bytes", "traceback": ""}
        if self.kill_strays:
            _kill_other_processes()
        done = {
            "op": "done",
            "id": request["id"],
            "nonce": request["nonce"],
            "status": status,
            "error": error,
            "stdout": _text(stdout, self.capture.cap, cut=self.capture.overflowed),
            "threads_left": threading.active_count() - 1,
        }
        self.channel.write(self._fit(done))

    def _compile(self, source: str, filename: str, restricted: bool):
        self.sources[filename] = source.splitlines()
        if not restricted:
            return compile(source, filename, "exec", dont_inherit=True)
        from RestrictedPython import compile_restricted_exec

        result = compile_restricted_exec(source, filename)
        if result.errors:
            raise SyntaxError("; ".join(result.errors))
        return result.code

    def _classify(self, exc: BaseException, cpu_s: float | None) -> tuple[str, dict]:
        if isinstance(exc, CpuTimeout):
            return "timeout", _error("TimeoutError", f"CPU time limit of {cpu_s:g} s exceeded", "")
        if isinstance(exc, OutputLimit):
            return "output_limit", _error("OutputLimit", f"output exceeded {self.capture.cap} bytes", "")
        status = "memory" if isinstance(exc, MemoryError) else "error"
        try:
            message = str(exc)
        except BaseException:
            message = "<unprintable exception>"
        if isinstance(exc, SyntaxError) and exc.lineno and exc.filename in self.sources:
            message = f"line {exc.lineno}: {exc.msg}"
        return status, _error(type(exc).__name__, message, self._traceback(exc))

    def _traceback(self, exc: BaseException) -> str:
        lines: list[str] = []
        previous, repeats = None, 0
        for frame in traceback.extract_tb(exc.__traceback__):
            if frame.filename not in self.sources:
                continue  # runner internals and library code are not the program's business
            key = (frame.filename, frame.lineno, frame.name)
            repeats = repeats + 1 if key == previous else 0
            previous = key
            if repeats >= 3:  # like Python's own traceback: recursion is summarised
                if repeats == 3:
                    lines.append("")
                lines[-1] = f"  [Previous line repeated {repeats - 2} more times]"
                continue
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            source = self.sources[frame.filename]
            if frame.lineno and 0 < frame.lineno <= len(source):
                lines.append("    " + source[frame.lineno - 1].strip())
        if not lines:
            return ""
        return "Traceback (most recent call last):\n" + "\n".join(lines) + f"\n{type(exc).__name__}: {exc}"

    def _fit(self, done: dict) -> dict:
        """Shrink stdout until the done message fits the message cap."""
        while len(self.channel.encode(done)) >= self.channel.max_bytes and done["stdout"]:
            done["stdout"] = done["stdout"][: len(done["stdout"]) // 2]
        return done


# ---- the restricted environment -------------------------------------------------------------------
#
# Everything restricted code can reach from here is built from the policy alone, and every object the
# runner itself hands to it (import hook, attribute guard, primitive stubs) is a __slots__ object with
# no public attribute: no Python function whose __globals__ is this module, no bound method of the
# Runner. tests/test_policy_reach.py walks all of it.

_RAISE = object()


def restricted_environment(policy: types.ModuleType) -> tuple[dict, dict]:
    """The builtins of restricted code and the guard names RestrictedPython's output calls."""
    import builtins

    from RestrictedPython.Guards import full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence

    # Exactly the checker's builtins (not RestrictedPython's safe_builtins, which also holds
    # setattr, delattr and __build_class__): code the checker refuses to name is absent here too.
    # Every name RestrictedPython's output calls is a builtin, a RestrictedPython guard or a sealed object of
    # this module, never a function or bound method of it (whose __globals__ would be this module's): `print`
    # taken as a value is `_print._call_print`, so that is a sealed object too. `__metaclass__` is `type`,
    # which only a class statement's compiled code names.
    names = {name: getattr(builtins, name) for name in policy.ALLOWED_BUILTINS}
    names["__import__"] = Importer(policy)
    guards = dict(
        _getattr_=AttributeGuard(policy),
        _getitem_=operator.getitem,
        _getiter_=iter,
        _write_=full_write_guard,
        _print_=PrintCollector(),
        _inplacevar_=InplaceOperator(),
        _unpack_sequence_=guarded_unpack_sequence,
        _iter_unpack_sequence_=guarded_iter_unpack_sequence,
        _apply_=Apply(),
        __metaclass__=type,
    )
    return names, guards


class _Sealed:
    """No attribute writes, no copies that walk the internals, no pickling."""

    __slots__ = ()

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"{self!r} is read-only")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"{self!r} is read-only")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce_ex__(self, protocol):
        raise TypeError(f"cannot pickle {self!r}")


class AttributeGuard(_Sealed):
    """``_getattr_`` of restricted code: refuses the policy's denied names on every object.

    Names starting with ``_`` and ``DENIED_ATTRIBUTES`` (the ``format`` family on any object, the
    type ``str`` included; frame, code, traceback and generator introspection; ``mro``). Unlike
    RestrictedPython's ``safer_getattr``, a missing attribute raises: the program gets the error.
    """

    __slots__ = ("_allowed",)

    def __init__(self, policy: types.ModuleType) -> None:
        object.__setattr__(self, "_allowed", policy.attribute_allowed)

    def __call__(self, obj, name, default=_RAISE):
        if not self._allowed(name):
            raise AttributeError(f"attribute {name!r} is not available in the sandbox")
        if default is _RAISE:
            return getattr(obj, name)
        return getattr(obj, name, default)

    def __repr__(self) -> str:
        return "<attribute guard>"


class Importer(_Sealed):
    """``__import__`` of restricted code: the policy's view of an allowed module, never a module.

    A real module would lead on to other modules (``re.enum.sys.modules['os']``) and to every member,
    reviewed or not (``functools.update_wrapper``); the view holds the reviewed members only.
    """

    __slots__ = ("_policy", "_views")

    def __init__(self, policy: types.ModuleType) -> None:
        object.__setattr__(self, "_policy", policy)
        object.__setattr__(self, "_views", {})

    def __call__(self, name, globals=None, locals=None, fromlist=(), level=0):
        allowed = self._policy.ALLOWED_MODULES
        if level != 0 or name not in allowed:
            raise ImportError(
                f"module '{name}' cannot be imported in the sandbox; allowed: {', '.join(sorted(allowed))}"
            )
        if name not in self._views:
            self._views[name] = self._policy.module_view(name)
        return self._views[name]

    def __repr__(self) -> str:
        return "<import>"


class Primitive(_Sealed):
    """A primitive's stub in restricted code: a call goes to the host; nothing else is reachable."""

    __slots__ = ("_name", "_call")

    def __init__(self, name: str, call) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_call", call)

    def __call__(self, *args, **kwargs):
        return self._call(self._name, list(args), kwargs)

    def __repr__(self) -> str:
        return f"<primitive {self._name}>"


class PrintFunction(_Sealed):
    """``print`` in restricted code, called or taken as a value: writes to the capture, never to a file."""

    __slots__ = ()

    def __call__(self, *objects, **kwargs):
        if kwargs.pop("file", None) is not None:
            raise ValueError("print(file=...) is not available in the sandbox")
        print(*objects, **kwargs)

    def __repr__(self) -> str:
        return "<built-in function print>"


class PrintCollector(_Sealed):
    """``_print_`` of RestrictedPython: ``_print_(_getattr_)`` gives the print target of a scope, whose
    ``_call_print`` is ``print`` and whose call is ``printed`` (always empty: output goes to the capture)."""

    __slots__ = ("_call_print",)

    def __init__(self) -> None:
        object.__setattr__(self, "_call_print", PrintFunction())

    def __call__(self, _getattr=None):
        return self

    def __repr__(self) -> str:
        return "<print collector>"


class InplaceOperator(_Sealed):
    """``_inplacevar_`` of RestrictedPython: ``x += y`` and the other augmented assignments."""

    __slots__ = ()
    _OPERATORS = {
        "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
        "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
        ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    }  # fmt: skip

    def __call__(self, op, x, y):
        if op not in self._OPERATORS:
            raise SyntaxError(f"operator {op} is not allowed")
        return self._OPERATORS[op](x, y)

    def __repr__(self) -> str:
        return "<in-place operator>"


class Apply(_Sealed):
    """``_apply_`` of RestrictedPython: a call with ``*args`` or ``**kwargs``."""

    __slots__ = ()

    def __call__(self, function, *args, **kwargs):
        return function(*args, **kwargs)

    def __repr__(self) -> str:
        return "<apply>"


def _text(data: bytes, cap: int, cut: bool) -> str:
    """Captured output as text of at most ``cap`` bytes of UTF-8, cut on a character boundary.

    Invalid bytes become U+FFFD, which may make the text longer than the bytes were: it is then cut
    at the cap again (the status stays the program's). A character that the cap split is dropped.
    """
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=not cut)
    if len(text) * 4 > cap:  # else it fits: no character takes more than 4 bytes
        encoded = text.encode("utf-8")
        if len(encoded) > cap:
            text = encoded[:cap].decode("utf-8", "ignore")
    return text


def _error(type_name: str, message: str, tb: str) -> dict:
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "..."
    if len(tb) > MAX_TRACEBACK_CHARS:  # keep where it started and where it ended
        half = MAX_TRACEBACK_CHARS // 2
        tb = tb[:half] + "\n  ...\n" + tb[-half:]
    return {"type": type_name[:100], "message": message, "traceback": tb}


def _kill_other_processes() -> None:
    """As PID 1 of the sandbox's own PID namespace, end and reap every process the program started.

    Orphans are re-parented to PID 1, so every process left is a child: after SIGKILL to all,
    a blocking wait reaps them until none is left.
    """
    for _ in range(1000):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:  # ESRCH: no other process exists
            pass
        try:
            while True:
                os.waitpid(-1, 0)
        except ChildProcessError:
            pass
        try:
            os.kill(-1, 0)
        except OSError:
            return


def _fatal(reason: str) -> None:
    os.write(_DIAG_FD, f"runner: {reason}\n".encode("utf-8", "replace"))
    os._exit(3)


def _unshare_user_and_network() -> None:
    """New user and network namespaces where the kernel allows them (no network, no privileges)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.unshare(CLONE_NEWUSER | CLONE_NEWNET)  # failure (EPERM, EINVAL) leaves things as they are
    except (OSError, AttributeError):
        pass


_DIAG_FD = 2


def main(argv: list[str]) -> None:
    global _DIAG_FD
    parser = argparse.ArgumentParser(prog="runner.py")
    parser.add_argument(
        "--lib", default="/opt/learnact/lib", help=f"directory holding RestrictedPython and {POLICY_MODULE}.py"
    )
    parser.add_argument("--max-message-bytes", type=int, default=256_000)
    parser.add_argument("--kill-strays", action="store_true", help="PID 1 of a private PID namespace")
    parser.add_argument("--unshare", action="store_true", help="try new user and network namespaces")
    parser.add_argument("--rlimit", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)

    sys.path.insert(0, args.lib)
    # Imported before limits apply and before "ready": a missing one fails the start, not a program.
    import RestrictedPython  # noqa: F401

    policy = importlib.import_module(POLICY_MODULE)

    proto_in, proto_out, _DIAG_FD = os.dup(0), os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    capture = Capture()
    sys.stdout = sys.stderr = CaptureWriter(capture)
    sys.stdin = None
    if args.unshare:
        _unshare_user_and_network()
    for item in args.rlimit:
        name, value = item.split("=")
        limit = int(value)
        resource.setrlimit(getattr(resource, f"RLIMIT_{name.upper()}"), (limit, limit))

    channel = Channel(proto_in, proto_out, args.max_message_bytes)
    runner = Runner(channel, capture, args.kill_strays, policy)
    channel.write({"op": "ready"})
    setup = channel.read()
    if setup is None:
        return
    if setup.get("op") != "setup":
        _fatal(f"expected a setup message first, got {setup!r}")
    runner.install_primitives(setup["primitives"])
    while (request := channel.read()) is not None:
        if request.get("op") not in ("load", "exec"):
            _fatal(f"unexpected request {request!r}")
        runner.run(request)


if __name__ == "__main__":
    main(sys.argv[1:])
