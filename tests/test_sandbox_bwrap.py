"""What the bwrap backend promises beyond the backend contract (tests/test_backend_contract.py), each with
the static check and RestrictedPython off, so that bubblewrap alone must hold: the host's files are not
there, only /tmp is writable, no network, no other process, an unprivileged user inside and outside, the
seccomp filter, and clear refusals when bubblewrap or its root file system are missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from learnact.envs.base import ParamSpec, PrimitiveSpec
from learnact.sandbox import ExecutionStatus, Sandbox, SandboxConfig
from learnact.sandbox.bwrap_backend import DENIED, BwrapBackend
from learnact.sandbox.transport import SandboxUnavailable

pytestmark = pytest.mark.docker  # the root file system comes from the image build
PICKUP = PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick a block up.")
CONFIG = dict(backend="bwrap", timeout_s=5.0, cpu_s=2, memory_mb=256, pool_size=0)


@pytest.fixture
def unchecked(bwrap_root: Path) -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig(**CONFIG, check=False)) as sandbox:
        yield sandbox


def run(sandbox: Sandbox, code: str):
    with sandbox.session([PICKUP], lambda name, args: f"You pick up {args[0]}.") as session:
        return session.execute(code)


def test_the_hosts_files_are_not_there(unchecked: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host-secret-4242")
    secret.chmod(0o644)
    result = run(unchecked, f"print(open({str(secret)!r}).read())")
    assert result.status is ExecutionStatus.error and result.error is not None
    assert result.error.type == "FileNotFoundError" and "host-secret-4242" not in result.stdout
    listed = run(unchecked, "import os\nprint(sorted(os.listdir('/')), os.path.exists('/var/run/docker.sock'))")
    assert listed.status is ExecutionStatus.ok and "'work'" not in listed.stdout and listed.stdout.endswith("False\n")


def test_only_tmp_is_writable_and_it_is_capped(unchecked: Sandbox) -> None:
    for target in ("/etc/evil", "/opt/learnact/runner.py", "/usr/lib/python3/dist-packages/x.py"):
        result = run(unchecked, f"open({target!r}, 'a')")
        assert result.status is ExecutionStatus.error and result.error is not None, target
        assert result.error.type in ("OSError", "PermissionError"), (target, result.error)
    fine = run(unchecked, "open('/tmp/ok', 'w').write('fine')\nprint(open('/tmp/ok').read())")
    assert fine.status is ExecutionStatus.ok and fine.stdout == "fine\n"
    big = run(unchecked, "open('/tmp/big', 'wb').write(b'x' * (17 << 20))")  # tmpfs_mb 16
    assert big.status is ExecutionStatus.error


def test_no_network_and_no_other_process(unchecked: Sandbox) -> None:
    net = run(unchecked, "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=1)")
    assert net.status is ExecutionStatus.error and net.error is not None and net.error.type == "OSError"
    seen = run(unchecked, "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    assert seen.status is ExecutionStatus.ok and seen.stdout == "[1]\n"  # the runner alone


def test_the_program_is_nobody_inside_and_every_sandbox_process_is_unprivileged_on_the_host(bwrap_root: Path) -> None:
    backend = BwrapBackend(SandboxConfig(**CONFIG, check=False))
    transport = backend.start()
    try:
        tree = _descendants(transport.process.pid)
        owners = {_host_uid(pid) for pid in tree}
    finally:
        transport.close()
        backend.close()
    assert len(tree) >= 2 and owners == {65534 if os.geteuid() == 0 else os.getuid()}  # never root
    with Sandbox(SandboxConfig(**CONFIG, check=False)) as sandbox:
        inside = run(sandbox, "import os\nprint(os.getuid(), os.getgid(), os.getgroups())")
    assert inside.status is ExecutionStatus.ok and inside.stdout == "65534 65534 []\n"  # no supplementary group


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, read from the host's /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _host_uid(pid: int) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
    return int(line.split()[1])


@pytest.mark.parametrize("call", ["ptrace(0, 0, 0, 0)", "unshare(0x10000000)", "mount(b'x', b'/tmp', b'tmpfs', 0, 0)"])
def test_the_seccomp_filter_refuses_what_no_action_needs(unchecked: Sandbox, call: str) -> None:
    code = f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.{call}, ctypes.get_errno())"
    result = run(unchecked, code)
    assert result.status is ExecutionStatus.ok and result.stdout == "-1 1\n"  # EPERM
    assert {"ptrace", "unshare", "mount", "bpf", "keyctl", "setns"} <= set(DENIED)


def test_a_fork_bomb_is_contained(unchecked: Sandbox) -> None:
    with unchecked.session([PICKUP], lambda name, args: "") as session:
        bomb = session.execute("import os\nwhile True:\n    os.fork()")
        census = session.execute("import os\nprint(sum(name.isdigit() for name in os.listdir('/proc')))")
    assert bomb.status in (ExecutionStatus.error, ExecutionStatus.timeout, ExecutionStatus.crashed)
    assert census.status is ExecutionStatus.ok and census.stdout == "1\n"  # the runner alone: every fork is gone


def test_a_missing_root_file_system_names_the_command_that_makes_it(
    bwrap_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEARNACT_ROOTFS", str(tmp_path / "none"))
    with pytest.raises(SandboxUnavailable, match="learnact images build") as caught:
        Sandbox(SandboxConfig(**CONFIG)).close()
    assert str(tmp_path / "none") in str(caught.value)


def test_missing_bubblewrap_is_a_clear_refusal(bwrap_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="needs bubblewrap"):
        Sandbox(SandboxConfig(**CONFIG)).close()
