"""What the image builders share: the Docker connection, the error type and the image record.

The Docker SDK is imported where a connection is made: the sandbox's configuration imports this module
for its names, and a worker on the process or bwrap backend must not pay the SDK's import (0.1 s).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from learnact.actions.errors import LearnactError

if TYPE_CHECKING:
    import docker

Log = Callable[[str], None]
log = logging.getLogger(__name__)

# Labels put on the images we build; the sandbox image's hash label decides whether a rebuild is due.
INPUTS_LABEL = "org.learnact.inputs-sha256"
# The hash of what the sandbox image holds of learnact (runner, policy, RestrictedPython, Dockerfile),
# computed from the installed files alone: a Sandbox compares it at start to catch an outdated image.
SOURCES_LABEL = "org.learnact.sources-sha256"
BASE_LABEL = "org.learnact.base"
SANDBOX_IMAGE = "learnact-sandbox:latest"  # the image every Docker sandbox runs unless configured otherwise
ROOTFS_ENV = "LEARNACT_ROOTFS"  # where the bwrap backend's root file system is, when not the default
ROOTFS_RUNNER = "opt/learnact"  # in that root: the mount points of the runner (runner.py) and its lib/


class ImageBuildError(LearnactError):
    """A build could not run or failed; the message is one line that says what to do."""


class ImageInfo(BaseModel):
    """One image after `learnact images build`."""

    tag: str
    image_id: str
    size_bytes: int = Field(description="uncompressed size of the image with all its layers")
    built: bool = Field(description="False when an up-to-date image existed and was kept")
    seconds: float = Field(0.0, description="time spent building (0 when kept)")
    inputs_sha256: str | None = Field(None, description="content hash of the build inputs (sandbox image only)")
    replaced_id: str | None = Field(None, description="the image that held the tag before this build")


def rootfs_dir() -> Path:
    """Where the image build leaves the sandbox's Debian root file system for the bwrap backend: $LEARNACT_ROOTFS,
    else /var/lib/learnact/rootfs for root, else ~/.cache/learnact/rootfs."""
    given = os.environ.get(ROOTFS_ENV)
    if given:
        return Path(given)
    if os.geteuid() == 0:
        return Path("/var/lib/learnact/rootfs")
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "learnact" / "rootfs"


def connect() -> docker.DockerClient:
    """A client of a Docker engine that answers.

    :raises ImageBuildError: when none answers (the message says how to start one).
    """
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        raise ImageBuildError(
            f"no Docker engine answers at {where}: start one, e.g. "
            "`bash .ci/run` (installs docker.io and starts dockerd) or `dockerd &` as root"
        ) from exc
    return client


def find_image(client: docker.DockerClient, tag: str) -> docker.models.images.Image | None:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(tag)
    except ImageNotFound:
        return None


def remove_replaced(client: docker.DockerClient, image_id: str) -> None:
    """Removes an image a rebuild left untagged, unless a container or a child image still uses it."""
    from docker.errors import APIError

    try:
        client.images.remove(image_id)
    except APIError as exc:  # in use: Docker keeps it, and so do we
        log.debug("kept the replaced image %.19s: %s", image_id, exc)


def image_info(
    image: docker.models.images.Image,
    tag: str,
    *,
    built: bool,
    seconds: float = 0.0,
    replaced: docker.models.images.Image | None = None,
) -> ImageInfo:
    return ImageInfo(
        tag=tag,
        image_id=image.id,
        size_bytes=int(image.attrs.get("Size", 0)),
        built=built,
        seconds=round(seconds, 1),
        inputs_sha256=(image.labels or {}).get(INPUTS_LABEL),
        replaced_id=replaced.id if replaced is not None and replaced.id != image.id else None,
    )
