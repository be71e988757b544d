"""The process backend: the runner as a resource-limited child process, for machines without Docker.

What it does: the runner runs as `python -I -S -u` in a new session (process group) with an empty
environment, a private temporary working directory, stdin/stdout used only for the protocol, and
rlimits on address space (memory), CPU time (a per-session backstop), file size (tmpfs_mb),
open files and processes. Where the kernel allows unprivileged user namespaces, the runner moves
itself into new user and network namespaces before running any code, so it has no network at all.

What it does NOT isolate -- use the docker backend for untrusted code:
- the filesystem: the program can read every file the host user can read (home directory, keys,
  the project) and write wherever that user can write; only file sizes are capped;
- the host kernel: same system-call surface, no seccomp filter, no cgroup;
- other processes: same PID namespace; it can see them in /proc and signal those of its user
  when the user namespace could not be created;
- the network, when user namespaces are not available (unshare fails silently then);
- processes it starts with a new session (setsid) escape the process-group kill; RLIMIT_NPROC
  counts every process of the user and does not bind root unless the user namespace took effect;
- memory is limited per process (RLIMIT_AS, virtual memory), not for the sandbox as a whole.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import RestrictedPython

from learnact.actions import policy
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.transport import ExitInfo, SandboxUnavailable, Transport

RUNNER = Path(__file__).with_name("runner.py")
DIAGNOSTICS_BYTES = 4096
MiB = 1 << 20


class ProcessBackend:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        # A directory holding RestrictedPython and the checker's policy alone, so that the child's
        # sys.path does not open onto the host's site-packages; the runner enforces that policy.
        self.lib_dir = tempfile.mkdtemp(prefix="learnact-lib-")
        os.symlink(Path(RestrictedPython.__file__).parent, Path(self.lib_dir, "RestrictedPython"))
        os.symlink(Path(policy.__file__), Path(self.lib_dir, "learnact_policy.py"))

    def command(self) -> list[str]:
        config = self.config
        limits = {
            "as": config.memory_mb * MiB,
            "cpu": max(10 * config.cpu_s, 60),  # the whole session; per execution: alarm + wall clock
            "fsize": config.tmpfs_mb * MiB,
            "nofile": 64,
            "nproc": _processes_of_user() + config.pids,
        }
        command = [sys.executable, "-I", "-S", "-u", str(RUNNER), "--lib", self.lib_dir]
        command += ["--max-message-bytes", str(config.max_message_bytes), "--unshare"]
        for name, value in limits.items():
            command += ["--rlimit", f"{name}={value}"]
        return command

    def start(self) -> ProcessTransport:
        workdir = tempfile.mkdtemp(prefix="learnact-sandbox-")
        diagnostics = tempfile.TemporaryFile()
        try:
            process = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=diagnostics,
                env={},
                cwd=workdir,
                start_new_session=True,
                close_fds=True,
                bufsize=0,
            )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            diagnostics.close()
            raise SandboxUnavailable(f"cannot start the sandbox process: {exc}") from None
        transport = ProcessTransport(process, workdir, diagnostics)
        try:
            transport.await_ready(self.config.max_message_bytes)
        except BaseException:
            transport.close()
            raise
        return transport

    def close(self) -> None:
        shutil.rmtree(self.lib_dir, ignore_errors=True)


def _processes_of_user() -> int:
    uid = os.getuid()
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

    def __init__(self, process: subprocess.Popen, workdir: str, diagnostics) -> None:
        super().__init__()
        self.process, self.workdir, self.diagnostics = process, workdir, diagnostics
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
        code = self.process.wait()
        self.diagnostics.seek(0, os.SEEK_END)
        self.diagnostics.seek(max(0, self.diagnostics.tell() - DIAGNOSTICS_BYTES))
        info = ExitInfo(code, False, self.diagnostics.read().decode("utf-8", "replace"))
        self.close()
        return info

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
