"""The base image built offline from Debian packages: no container registry is needed.

`debootstrap --variant=minbase --include=python3 bookworm` makes a root filesystem with the full
python3 (python3-minimal lacks json and other modules the runner needs); `docker import` turns it
into an image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import APIError

from learnact.images.common import (
    BASE_LABEL,
    ROOTFS_RUNNER,
    ImageBuildError,
    ImageInfo,
    Log,
    find_image,
    image_info,
    rootfs_dir,
)

BASE_IMAGE = "learnact-base:bookworm"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# Removed from the root filesystem before import: nothing in the sandbox reads them.
_TRIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)

# Docker gives imported images no configuration; these make `python3` behave as in python:*-slim.
_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    f"LABEL {BASE_LABEL}=debootstrap-{SUITE}",
    'CMD ["python3"]',
]


def build_base_image(
    client: docker.DockerClient, *, log: Log, force: bool = False, mirror: str = DEFAULT_MIRROR
) -> ImageInfo:
    """Build `learnact-base:bookworm` unless it exists (or `force`).

    :raises ImageBuildError: without debootstrap or root, or when debootstrap, tar or the import fails.
    """
    existing = find_image(client, BASE_IMAGE)
    if existing is not None and not force:
        log(f"{BASE_IMAGE} exists ({existing.short_id}); kept (use --force to rebuild)")
        return image_info(existing, BASE_IMAGE, built=False)
    _check_can_debootstrap()
    started = time.monotonic()
    # /var/tmp: on disk, not a size-limited tmpfs; debootstrap needs ~260 MB and device nodes.
    rootfs = Path(tempfile.mkdtemp(prefix="learnact-rootfs-", dir="/var/tmp"))
    try:
        _debootstrap(rootfs, mirror, log)
        _trim(rootfs)
        _import(client, rootfs, log)
        install_rootfs(rootfs, log)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    image = client.images.get(BASE_IMAGE)
    return image_info(image, BASE_IMAGE, built=True, seconds=time.monotonic() - started, replaced=existing)


def ensure_rootfs(client: docker.DockerClient, image: str, log: Log, force: bool = False) -> Path:
    """The bwrap backend's root file system (:func:`rootfs_dir`): kept when it holds a Python (unless
    ``force``), else exported from ``image`` (the base the sandbox image is built on).

    :raises ImageBuildError: when the export or the unpacking fails.
    """
    target = rootfs_dir()
    if not force and python_in(target) is not None:
        log(f"the bwrap root file system at {target} exists; kept")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=target.parent))
    try:
        log(f"exporting {image}'s root file system for the bwrap backend")
        container = client.containers.create(image, command=["true"], network_disabled=True)
        try:
            tar = subprocess.Popen(
                ["tar", "--numeric-owner", "-C", str(staging), "-x"], stdin=subprocess.PIPE, stderr=subprocess.PIPE
            )
            assert tar.stdin is not None and tar.stderr is not None
            try:
                for chunk in container.export():
                    tar.stdin.write(chunk)
            finally:
                tar.stdin.close()
            error = tar.stderr.read().decode(errors="replace").strip()
            if tar.wait() != 0:
                raise ImageBuildError(f"unpacking {image}'s root file system failed: {error or 'no message'}")
        finally:
            container.remove(force=True)
        return install_rootfs(staging, log)
    except (APIError, OSError) as exc:
        raise ImageBuildError(f"exporting {image}'s root file system failed: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_rootfs(rootfs: Path, log: Log) -> Path:
    """Make ``rootfs`` the bwrap backend's root file system: its mount points for the runner added, put in
    place by a rename (the previous one removed after it).

    :raises ImageBuildError: when it holds no Python, or cannot be moved into place.
    """
    if python_in(rootfs) is None:
        raise ImageBuildError(f"the root file system {rootfs} holds no python3")
    runner_dir = rootfs / ROOTFS_RUNNER
    (runner_dir / "lib").mkdir(parents=True, exist_ok=True)
    (runner_dir / "runner.py").touch()
    rootfs.chmod(0o755)  # a staging folder is private; the root of a system is not
    target = rootfs_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    try:
        if target.exists():
            target.rename(old)
        shutil.move(str(rootfs), str(target))  # a rename on one file system
    except OSError as exc:
        raise ImageBuildError(f"cannot put the bwrap root file system at {target}: {exc}") from None
    finally:
        shutil.rmtree(old, ignore_errors=True)
    log(f"the bwrap backend's root file system is at {target}")
    return target


def python_in(rootfs: Path) -> Path | None:
    """The python3 of a root file system (Debian's, else a python:*-slim image's), None when it has none."""
    for relative in ("usr/bin/python3", "usr/local/bin/python3"):
        if (rootfs / relative).exists() or (rootfs / relative).is_symlink():
            return Path("/", relative)
    return None


def _check_can_debootstrap() -> None:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap is not installed",
            "run `apt-get install -y debootstrap` (or build on a registry's base, {base} registry, "
            "where a container registry is reachable)",
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building the base image with debootstrap needs root (it chroots and creates device "
            "nodes): rerun as root, e.g. `sudo learnact images build`"
        )


def _debootstrap(rootfs: Path, mirror: str, log: Log) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        "--include=python3",
        SUITE,
        str(rootfs),
        mirror,
    ]
    log("$ " + " ".join(command))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert process.stdout is not None
    last = "no output"
    for line in process.stdout:
        last = line.rstrip()
        log(last)
    if process.wait() != 0:
        raise ImageBuildError(
            f"debootstrap failed with exit code {process.returncode} ({last}); check that {mirror} is reachable"
        )


def _trim(rootfs: Path) -> None:
    for relative in _TRIM:
        directory = rootfs / relative
        if directory.is_dir():
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()


def _import(client: docker.DockerClient, rootfs: Path, log: Log) -> None:
    log(f"importing the root filesystem as {BASE_IMAGE}")
    # GNU tar keeps device nodes, hard links and ownership exactly; its output streams to the daemon.
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None and tar.stderr is not None
    repository, tag = BASE_IMAGE.split(":")
    try:
        response = client.api.import_image_from_stream(tar.stdout, repository=repository, tag=tag, changes=_CHANGES)
    except APIError as exc:
        tar.kill()
        raise ImageBuildError(f"docker import of the root filesystem failed: {exc.explanation}") from exc
    finally:
        tar.stdout.close()
    error = tar.stderr.read().decode(errors="replace").strip()
    if tar.wait() != 0:
        # The daemon tagged whatever part of the stream arrived; a truncated base must not be kept.
        client.images.remove(BASE_IMAGE, force=True)
        raise ImageBuildError(f"tar of the root filesystem failed: {error or 'no message'}")
    log(str(response).strip())
