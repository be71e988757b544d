"""learnact.images: the sandbox images, built offline (no container registry needed).

The names load on first use: importing a submodule for a constant (the sandbox's configuration does)
must not import the builders and the Docker SDK."""

from typing import Any

__all__ = ["BaseKind", "ImageBuildError", "ImageInfo", "build_images"]


def __getattr__(name: str) -> Any:
    if name in ("BaseKind", "build_images"):
        from learnact.images import build

        return getattr(build, name)
    if name in ("ImageBuildError", "ImageInfo"):
        from learnact.images import common

        return getattr(common, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
