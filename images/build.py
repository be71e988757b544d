"""`build_images`: the base (offline from Debian packages, or a registry's), the sandbox image, and the
base's root file system as a folder for the bwrap backend."""

from __future__ import annotations

from typing import Literal

import docker

from learnact.images.base import BASE_IMAGE, build_base_image, ensure_rootfs
from learnact.images.common import ImageInfo, Log, connect, remove_replaced
from learnact.images.sandbox_image import REGISTRY_BASE, build_sandbox_image

BaseKind = Literal["debootstrap", "registry"]


def build_images(
    base: BaseKind = "debootstrap",
    force: bool = False,
    log: Log = print,
    client: docker.DockerClient | None = None,
) -> list[ImageInfo]:
    """Build what is missing or outdated; returns the base (debootstrap only) and the sandbox image.

    `force` rebuilds both without the cache.

    :raises ImageBuildError: when no Docker engine answers or a build fails (a one-line message).
    """
    client = client or connect()
    built: list[ImageInfo] = []
    if base == "debootstrap":
        built.append(build_base_image(client, log=log, force=force))
        base_image = BASE_IMAGE
    else:
        base_image = REGISTRY_BASE
    built.append(build_sandbox_image(client, base=base_image, log=log, force=force))
    ensure_rootfs(client, base_image, log)  # the bwrap backend's root: the same Debian base
    # An old base can go only now that the old sandbox image built on it is gone.
    if base == "debootstrap" and built[0].replaced_id is not None:
        remove_replaced(client, built[0].replaced_id)
    return built
