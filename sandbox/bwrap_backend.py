"""The bwrap backend: the runner inside bubblewrap, for machines without Docker.

What it does (each limit as the Docker backend has it, apart from memory, noted below):
- the root file system is the Debian root the image build leaves as a folder (``learnact images build``:
  the same debootstrap root the sandbox image is made from), bound read-only; the runner, the policy and
  RestrictedPython are bound read-only at ``/opt/learnact``; ``/tmp`` is a private tmpfs of ``tmpfs_mb``;
  ``/proc`` is the sandbox's own and ``/dev`` a minimal one. Nothing of the host's file system is visible.
- new user, PID, network (no interface but loopback), IPC, UTS and cgroup namespaces (``--unshare-all``);
  inside, the program is uid and gid 65534 with no capabilities; a new session (no terminal to inject into).
  The runner is PID 1 of its namespace and ends every process a program left behind after each execution.
- bubblewrap itself runs as nobody (uid 65534) when learnact is root, so the sandbox's user maps to an
  unprivileged host user, never to root. When the host process dies, the runner reads the end of its input
  and exits. Not ``--die-with-parent``: its signal follows the death of the *thread* that started the
  sandbox, and the warm pool and the executors start sandboxes from threads that end before them.
- a seccomp filter (libseccomp, through pyseccomp) makes the system calls a program needs none of fail
  with EPERM: tracing and other processes' memory, mounts and namespaces, kernel modules and keyrings, BPF
  and performance counters, clocks, reboot and swap (``DENIED``); ``clone3`` fails with ENOSYS so that the C
  library falls back to ``clone``, whose new-namespace flags are refused.
- limits from outside: the wall clock (the session kills the process group), RLIMIT_CPU per session and an
  alarm per execution, RLIMIT_FSIZE, 64 open files, RLIMIT_NPROC (processes of the runner's host user), the
  output and call budgets of the protocol.

What it does NOT do: memory is RLIMIT_AS, the address space of each process (no cgroup without a cgroup
manager), as in the process backend; the kernel is the host's (the seccomp filter narrows its surface, it
does not replace a VM or gVisor).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from functools import cache

from learnact.images.base import python_in
from learnact.images.common import ROOTFS_RUNNER, rootfs_dir
from learnact.sandbox.backend import Backend
from learnact.sandbox.config import SandboxConfig
from learnact.sandbox.process_backend import (
    NOBODY,
    MiB,
    ProcessTransport,
    launch,
    rlimits,
    stage_runner,
    sweep_stale_directories,
)
from learnact.sandbox.transport import SandboxUnavailable

INSIDE = f"/{ROOTFS_RUNNER}"  # where the runner and its library are bound in the sandbox
# System calls no action code needs; each fails with EPERM (seccomp). The list follows Docker's default
# profile for an unprivileged container.
DENIED = (
    "acct",
    "add_key",
    "adjtimex",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "personality",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)


@cache
def seccomp_filter() -> bytes:
    """The BPF program of the filter (see the module docstring), as bubblewrap's ``--seccomp`` reads it.

    :raises SandboxUnavailable: when libseccomp cannot be loaded.
    """
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as exc:
        raise SandboxUnavailable(
            f"the bwrap backend needs libseccomp ({exc})", "install Debian's libseccomp2 and `pip install pyseccomp`"
        ) from None
    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):  # a call this kernel's architecture does not have
            continue
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        rules.export_bpf(out)
        out.seek(0)
        return out.read()


class BwrapBackend(Backend):
    def __init__(self, config: SandboxConfig) -> None:
        super().__init__(config)
        found = shutil.which("bwrap")
        if found is None:
            raise SandboxUnavailable(
                "the bwrap backend needs bubblewrap, which is not installed",
                "install it (Debian: apt-get install bubblewrap), or use the docker or process backend",
            )
        self.bwrap = found
        self.root = rootfs_dir()
        python = python_in(self.root)
        if python is None or not (self.root / ROOTFS_RUNNER / "runner.py").exists():
            raise SandboxUnavailable(
                f"the bwrap backend's root file system is not at {self.root}",
                "run `learnact images build` (it leaves the sandbox's Debian root there), or set $LEARNACT_ROOTFS",
            )
        self.python = str(python)
        self.drop_root = os.geteuid() == 0
        self.filter = seccomp_filter()
        self.base_dir, self.lib_dir, self.runner = stage_runner()

    def command(self, seccomp_fd: int) -> list[str]:
        config = self.config
        command = [self.bwrap, "--ro-bind", str(self.root), "/"]
        command += ["--ro-bind", self.lib_dir, f"{INSIDE}/lib", "--ro-bind", self.runner, f"{INSIDE}/runner.py"]
        command += ["--proc", "/proc", "--dev", "/dev", "--size", str(config.tmpfs_mb * MiB), "--tmpfs", "/tmp"]
        # The runner is PID 1 of the sandbox's PID namespace (--as-pid-1), so it ends what a program left
        # running after each execution (--kill-strays), as in a container.
        command += ["--unshare-all", "--as-pid-1", "--new-session", "--cap-drop", "ALL"]
        command += ["--uid", str(NOBODY), "--gid", str(NOBODY), "--hostname", "sandbox", "--chdir", "/tmp"]
        command += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]
        command += ["--seccomp", str(seccomp_fd), "--", self.python, "-I", "-S", "-u", f"{INSIDE}/runner.py"]
        command += ["--lib", f"{INSIDE}/lib", "--max-message-bytes", str(config.max_message_bytes), "--kill-strays"]
        return command + rlimits(config, NOBODY if self.drop_root else os.getuid())

    def sweep(self) -> int:
        """Remove the directories of backends whose process no longer runs (killed before its cleanup)."""
        return sweep_stale_directories(tempfile.gettempdir())

    def start(self) -> ProcessTransport:
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, self.filter)  # a few hundred bytes: within the pipe's buffer, read by bwrap
        finally:
            os.close(write_end)
        try:
            return launch(self.command(read_end), self.base_dir, self.config, self.drop_root, "bubblewrap", (read_end,))
        finally:
            os.close(read_end)

    def close(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)
