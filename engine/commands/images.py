"""`learnact images build`: the base image (offline) and the sandbox image, with the build log streamed."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from learnact.engine.commands.common import failure
from learnact.images import ImageBuildError, ImageInfo, build_images


class Base(str, Enum):
    debootstrap = "debootstrap"
    registry = "registry"


def build(
    base: Annotated[
        Base,
        typer.Option(
            help="debootstrap: build the base from Debian packages, no registry needed (root); "
            "registry: the Dockerfile's default python:3.11-slim, pulled from a registry"
        ),
    ] = Base.debootstrap,
    force: Annotated[bool, typer.Option("--force", help="rebuild even if up-to-date images exist")] = False,
) -> None:
    """Build the sandbox image (and its base); images that are up to date are kept."""
    console = Console(stderr=True, highlight=False)
    with console.status("building images", spinner="dots") as status:

        def log(line: str) -> None:
            console.print(f"[dim]{escape(line)}[/dim]", soft_wrap=True)
            status.update(f"[bold]building images[/bold] {escape(line[:80])}")

        try:
            images = build_images(base=base.value, force=force, log=log)
        except ImageBuildError as exc:
            status.stop()
            raise failure(exc) from None
    Console(highlight=False).print(_table(images))


def _table(images: list[ImageInfo]) -> Table:
    table = Table(title="learnact images")
    for column in ("image", "id", "size", "state", "build time"):
        table.add_column(column)
    for image in images:
        table.add_row(
            image.tag,
            image.image_id.removeprefix("sha256:")[:12],
            f"{image.size_bytes / 1e6:.0f} MB",
            "built" if image.built else "kept (up to date)",
            f"{image.seconds:.1f} s" if image.built else "-",
        )
    return table
