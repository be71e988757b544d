"""The process backend: the runner as a resource-limited child process, for machines without Docker.

What it does: the runner runs as `python -I -S -u` in a new session (process group) with an empty
environment, a private temporary working directory, stdin/stdout used only for the protocol, and
rlimits on address space (memory), CPU time (a per-session backstop), file size (tmpfs_mb),
open files and processes. Where the kernel allows unprivileged user namespaces, the runner moves
itself into new user and network namespaces before running any code, so it has no network at all.

It never keeps root: started by root, it runs the runner as nobody/nogroup (uid and gid 65534, no
supplementary groups) from copies of the runner, the policy and RestrictedPython that user can
read, with an interpreter that user can run (the host's, else the system's ``python3``), so the
program cannot read root-only files. It refuses to start (SandboxUnavailable) when the runner's
user could connect to the Docker socket (``/var/run/docker.sock``, ``/run/docker.sock``, a
``unix://`` ``DOCKER_HOST``): that is root on the host, e.g. for a user in the ``docker`` group.

What it does NOT isolate -- use the docker backend for untrusted code:
- the filesystem: the program can read every file its user can read (started by a normal user:
  that user's home directory, keys, the project; started by root: what nobody can read) and write
  wherever that user can write; only file sizes are capped;
- the host kernel: same system-call surface, no seccomp filter, no cgroup;
- other processes: same PID namespace; it can see them in /proc and signal those of its user
  when the user namespace could not be created;
- the network, when user namespaces are not available (unshare fails silently then);
- processes it starts with a new session (setsid) escape the process-group kill; RLIMIT_NPROC
  counts every process of the runner's user (other processes running as nobody included);
- memory is limited per process (RLIMIT_AS, virtual memory), not for the sandbox as a whole.
"""

from __future__ import annotations

import functools
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import RestrictedPython

from learnact.actions import policy
from learnact.actions.processes import process_alive
from learnact.sandbox.backend import Backend
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.transport import ExitInfo, SandboxUnavailable, Transport

RUNNER = Path(__file__).with_name("runner.py")
DIAGNOSTICS_BYTES = 4096
MiB = 1 << 20
NOBODY = 65534  # uid of nobody and gid of nogroup: the runner's identity when the host is root
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# One directory per backend in the temporary directory, named after the owning process: what a killed
# process left there is removed by the next backend's sweep.
BASE_PREFIX = "learnact-process-"
BASE_NAME = re.compile(rf"{BASE_PREFIX}(\d+)-[a-z0-9_]+")


class ProcessBackend(Backend):
    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        self.drop_root = os.geteuid() == 0
        self.uid = NOBODY if self.drop_root else os.getuid()
        _refuse_docker_socket(self.drop_root)
        self.python = _interpreter() if self.drop_root else sys.executable
        # The runner, RestrictedPython and the checker's policy, copied into a directory of their
        # own (readable by the runner's user; the child's sys.path does not open onto the host's
        # site-packages); the runner enforces that policy. The sandboxes' working directories go there too.
        self.base_dir, self.lib_dir, self.runner = stage_runner()

    def command(self) -> list[str]:
        command = [self.python, "-I", "-S", "-u", self.runner, "--lib", self.lib_dir]
        return (
            command
            + ["--max-message-bytes", str(self.config.max_message_bytes), "--unshare"]
            + rlimits(self.config, self.uid)
        )

    def sweep(self) -> int:
        """Remove the directories of backends whose process no longer runs (killed before its cleanup)."""
        return sweep_stale_directories(tempfile.gettempdir())

    def start(self) -> ProcessTransport:
        return launch(self.command(), self.base_dir, self.config, self.drop_root, "the sandbox process")

    def close(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)


def session_cpu_s(config: SandboxConfig) -> int:
    """RLIMIT_CPU of a sandbox: a backstop for its whole life (per execution: alarm and wall clock)."""
    return max(10 * config.cpu_s, 60)


def rlimits(config: SandboxConfig, uid: int) -> list[str]:
    """The runner's ``--rlimit`` arguments: address space, CPU (:func:`session_cpu_s`), file size, 64 open
    files, and the processes of the runner's host user ``uid`` (RLIMIT_NPROC counts them all) plus ``pids``."""
    limits = {
        "as": config.memory_mb * MiB,
        "cpu": session_cpu_s(config),
        "fsize": config.tmpfs_mb * MiB,
        "nofile": 64,
        "nproc": processes_of_user(uid) + config.pids,
    }
    return [argument for name, value in limits.items() for argument in ("--rlimit", f"{name}={value}")]


def launch(
    command: list[str], base_dir: str, config: SandboxConfig, drop_root: bool, what: str, pass_fds: tuple[int, ...] = ()
) -> ProcessTransport:
    """Start ``command`` (the runner, or what wraps it) as a sandbox: a new session, an empty environment, a
    private working directory under ``base_dir``, nobody/nogroup when ``drop_root``; ready once it said so.

    :raises SandboxUnavailable: when it cannot start or does not become ready.
    """
    if drop_root:  # setpriv changes the identity after the exec: Popen's user= would make it fork instead of vfork
        command = [_setpriv(), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *command]
    workdir = tempfile.mkdtemp(prefix="sandbox-", dir=base_dir)
    diagnostics = tempfile.TemporaryFile()
    try:
        if drop_root:
            os.chown(workdir, NOBODY, NOBODY)
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=diagnostics,
            env={},
            cwd=workdir,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
            bufsize=0,
        )
    except OSError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        diagnostics.close()
        raise SandboxUnavailable(f"cannot start {what}: {exc}") from None
    transport = ProcessTransport(process, workdir, diagnostics, session_cpu_s(config))
    try:
        transport.await_ready(config.max_message_bytes)
    except BaseException:
        transport.close()
        raise
    return transport


@functools.cache
def _setpriv() -> str:
    """The path of util-linux's ``setpriv``, which starts a sandbox as nobody/nogroup without supplementary
    groups. Why not ``Popen(user=...)``: CPython then forks the whole host process (its interpreter lock held,
    45 ms at a 400 MiB heap) instead of ``vfork`` (0.3 ms): ``benchmarks/spawn_bench.py``.

    :raises SandboxUnavailable: when it is not installed.
    """
    found = shutil.which("setpriv")
    if found is None:
        raise SandboxUnavailable(
            "running as root, the sandbox drops to nobody with setpriv, which is not installed",
            "install util-linux (it provides setpriv)",
        )
    return found


def stage_runner() -> tuple[str, str, str]:
    """A new backend directory (``$TMPDIR/learnact-process-<pid>-*``, swept when its process is gone) holding
    copies of the runner, RestrictedPython and the checker's policy, readable by every user and writable by
    none but their owner: the directory, its ``lib/`` and its ``runner.py``.

    :raises OSError: when they cannot be copied (nothing is left behind).
    """
    base_dir = tempfile.mkdtemp(prefix=f"{BASE_PREFIX}{os.getpid()}-")
    lib_dir, runner = str(Path(base_dir, "lib")), str(Path(base_dir, "runner.py"))
    try:
        shutil.copytree(Path(RestrictedPython.__file__).parent, Path(lib_dir, "RestrictedPython"))
        shutil.copyfile(policy.__file__, Path(lib_dir, "learnact_policy.py"))
        shutil.copyfile(RUNNER, runner)
        _readable_by_all(base_dir)
    except BaseException:
        shutil.rmtree(base_dir, ignore_errors=True)
        raise
    return base_dir, lib_dir, runner


def sweep_stale_directories(parent: str) -> int:
    """Remove this user's backend directories under ``parent`` whose owning process is gone."""
    removed = 0
    for entry in os.scandir(parent):
        match = BASE_NAME.fullmatch(entry.name)
        try:
            if not match or not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.geteuid():
                continue
            if not os.path.isdir(os.path.join(entry.path, "lib")):  # not one of ours after all
                continue
        except OSError:
            continue
        if process_alive(int(match.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed


def _docker_sockets() -> list[str]:
    paths = list(DOCKER_SOCKETS)
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        paths.append(host[len("unix://") :])
    return paths


def _refuse_docker_socket(drop_root: bool) -> None:
    """SandboxUnavailable when the runner's user could connect to a Docker socket: root on the host."""
    for path in _docker_sockets():
        try:
            info = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISSOCK(info.st_mode):
            continue
        if drop_root:  # nobody/nogroup, no supplementary groups: the permission bits decide
            bit = stat.S_IWUSR if info.st_uid == NOBODY else stat.S_IWGRP if info.st_gid == NOBODY else stat.S_IWOTH
            reachable = bool(info.st_mode & bit)
            who = f"nobody (uid {NOBODY}), the user it runs programs as when started by root,"
            fix = f"make the socket unwritable for others (its mode is {stat.S_IMODE(info.st_mode):o})"
        else:  # this user, with its groups (and ACLs): what the kernel would say
            reachable = os.access(path, os.W_OK)
            who = f"this user (uid {os.getuid()})"
            fix = "run learnact as a user outside the socket's group (e.g. 'docker')"
        if reachable:
            raise SandboxUnavailable(
                f"the process backend refuses to start: {who} can connect to the Docker socket {path}, "
                f"which is root on this host; {fix}, or use the docker backend"
            )


@cache
def _interpreter() -> str:
    """A Python that nobody can run: the host's own (resolved out of a virtual environment), else
    the system's python3. The runner needs the standard library and nothing else."""
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"]
    found = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if found:
        candidates.append(os.path.realpath(found))
    for candidate in dict.fromkeys(candidates):
        try:
            probe = subprocess.run(
                [candidate, "-I", "-S", "-c", "import sys; sys.exit(sys.version_info < (3, 9))"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                env={},
                cwd="/",
                timeout=30,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return candidate
    raise SandboxUnavailable(
        f"the process backend runs programs as nobody (uid {NOBODY}) when started by root, and no "
        f"Python 3.9+ interpreter is usable by that user (tried {', '.join(dict.fromkeys(candidates))}); "
        "install python3 where every user can run it (e.g. /usr/bin/python3), run learnact as a "
        "non-root user, or use the docker backend"
    )


def _readable_by_all(top: str) -> None:
    """Directories 0755, files 0644: the runner's user reads them, nobody writes them."""
    os.chmod(top, 0o755)
    for root, dirs, files in os.walk(top):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


def processes_of_user(uid: int) -> int:
    """The processes running as ``uid`` now (RLIMIT_NPROC counts them all)."""
    count = 0
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += 1
        except OSError:
            continue
    return count


class ProcessTransport(Transport):
    what = "sandbox process"
    ready_timeout_s = 30.0

    def __init__(self, process: subprocess.Popen, workdir: str, diagnostics, cpu_limit_s: float) -> None:
        super().__init__()
        self.process, self.workdir, self.diagnostics = process, workdir, diagnostics
        self.cpu_limit_s = cpu_limit_s
        assert process.stdin is not None and process.stdout is not None
        self.stdin_fd, self.stdout_fd = process.stdin.fileno(), process.stdout.fileno()
        self._closed = False

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.stdin_fd, view) :]

    def _receive(self, timeout: float) -> bytes | None:
        readable, _, _ = select.select([self.stdout_fd], [], [], timeout)
        if not readable:
            return None
        return os.read(self.stdout_fd, 1 << 16)

    def finish(self, kill: bool) -> ExitInfo:
        if not kill:
            self._await_exit(2.0)
        self._kill_group()  # also ends what the program left running in its process group
        code, cpu_s = self._reap()
        self.diagnostics.seek(0, os.SEEK_END)
        self.diagnostics.seek(max(0, self.diagnostics.tell() - DIAGNOSTICS_BYTES))
        diagnostics = self.diagnostics.read().decode("utf-8", "replace")
        if code >= 0:
            info = ExitInfo(code, diagnostics=diagnostics)
        else:  # memory is RLIMIT_AS (a MemoryError inside): only the CPU limit kills it with a signal
            # RLIMIT_CPU sends SIGXCPU at its soft limit, SIGKILL at its hard one (the runner sets both).
            cpu_limited = -code == signal.SIGXCPU or (-code == signal.SIGKILL and cpu_s >= 0.99 * self.cpu_limit_s)
            info = ExitInfo(None, diagnostics=diagnostics, signal=-code, cpu_limited=cpu_limited)
        self.close()
        return info

    def _reap(self) -> tuple[int, float]:
        """The runner's exit status (negative: the signal that killed it) and the CPU seconds it used."""
        if self.process.returncode is not None:
            return self.process.returncode, 0.0
        try:
            _, status, usage = os.wait4(self.process.pid, 0)
        except ChildProcessError:  # reaped elsewhere
            return self.process.wait(), 0.0
        self.process.returncode = os.waitstatus_to_exitcode(status)  # Popen.wait() returns it from now on
        return self.process.returncode, usage.ru_utime + usage.ru_stime

    def _await_exit(self, timeout: float) -> None:
        """Wait until the runner has exited, without reaping it (its pid keeps naming the group)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.process.returncode is None:
            if os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return
            time.sleep(0.01)

    def _kill_group(self) -> None:
        if self.process.returncode is not None:
            return  # reaped: its process-group id may belong to someone else by now
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._kill_group()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.diagnostics.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
