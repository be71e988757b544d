"""Limits and isolation settings of a sandbox session; each limit's exact semantics is documented."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from learnact.images.common import SANDBOX_IMAGE

CONTAINER_LABEL = "learnact.sandbox"


class Choice(str, Enum):
    """A closed set of names: compares equal to, formats and serialises as its value."""

    def __str__(self) -> str:
        return self.value


class BackendName(Choice):
    """Where a session's sandbox runs (the one list of backends: config, command line and factory)."""

    docker = "docker"  # one container per session
    process = "process"  # an rlimited child process: weaker, for machines without Docker or bubblewrap
    bwrap = "bwrap"  # bubblewrap: namespaces, a read-only Debian root, seccomp; for machines without Docker


class RuntimeName(Choice):
    """The OCI runtime of a container (docker backend only)."""

    runc = "runc"
    runsc = "runsc"  # gVisor


class SandboxConfig(BaseModel):
    """Every setting of a sandbox. Frozen, and a misspelt or unknown setting is refused (a silently
    ignored ``memory=64`` would run with the default limit).

    :raises pydantic.ValidationError: for an unknown setting or a value out of range (it names the field).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendName = Field(
        BackendName.docker,
        description="docker: one container per session; bwrap: bubblewrap namespaces; process: rlimited child process",
    )
    runtime: RuntimeName = Field(
        RuntimeName.runc, description="OCI runtime of the container; runsc is gVisor (docker backend only)"
    )
    image: str = SANDBOX_IMAGE
    check: bool = Field(
        True,
        description="static check on the host and RestrictedPython inside; off only to test isolation",
    )
    timeout_s: float = Field(
        10.0, gt=0, description="wall-clock seconds per execution; on expiry the host kills the sandbox"
    )
    cpu_s: int = Field(
        10, gt=0, description="CPU seconds per execution (inside: ITIMER_PROF alarm; outside: RLIMIT_CPU per session)"
    )
    memory_mb: int = Field(
        256, gt=16, description="memory of the whole sandbox in MiB; swap is not allowed (memory = memory+swap)"
    )
    pids: int = Field(64, gt=4, description="maximum number of processes and threads in the sandbox")
    cpus: float = Field(1.0, gt=0, description="CPU quota in cores")
    tmpfs_mb: int = Field(16, gt=0, description="size of the writable /tmp in MiB; the root is read-only")
    max_output_bytes: int = Field(
        64_000, gt=0, description="bytes of stdout+stderr kept per execution; more ends it as output_limit"
    )
    max_calls: int = Field(200, gt=0, description="primitive calls per execution; one more ends it as call_limit")
    max_message_bytes: int = Field(
        256_000, gt=0, description="size cap of one protocol message; a larger one ends the session as crashed"
    )
    max_call_bytes: int = Field(
        4_000,
        ge=100,
        description="bytes of one primitive call's arguments, and of its observation, kept in the result; "
        "more is cut and marked",
    )
    max_calls_bytes: int = Field(
        128_000,
        ge=0,
        description="bytes of the arguments and observations of all primitive calls kept in one result; "
        "past it they are cut and marked (the calls and their names stay)",
    )
    pool_size: int = Field(2, ge=0, description="containers started ahead of time (docker backend)")
