"""The sandbox images: built offline, run as a non-root user, hold the runner and RestrictedPython,
and are rebuilt exactly when their inputs change."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import docker
import pytest
import typer
from docker.errors import ImageNotFound
from typer.testing import CliRunner

from learnact.engine.commands import images as images_command
from learnact.engine.commands.cli import app
from learnact.images import ImageBuildError, ImageInfo, build_images, sandbox_image
from learnact.images import base as base_module
from learnact.images.common import INPUTS_LABEL, SOURCES_LABEL, connect
from learnact.sandbox import Sandbox, SandboxConfig, SandboxUnavailable, docker_backend
from learnact.sandbox.config import SANDBOX_IMAGE

RESTRICTED_IMPORT = "import sys; sys.path.insert(0, '/opt/learnact/lib'); import RestrictedPython; "


@pytest.fixture(scope="module")
def client(docker_available: None) -> docker.DockerClient:
    return connect()


@pytest.fixture(scope="module")
def images(client: docker.DockerClient) -> list[ImageInfo]:
    """The images as `learnact images build` leaves them (kept when already up to date)."""
    return build_images(log=lambda _line: None, client=client)


def run(client: docker.DockerClient, *command: str) -> str:
    """Runs a command in the sandbox image with the sandbox's own isolation flags; returns stdout."""
    output = client.containers.run(
        SANDBOX_IMAGE,
        list(command),
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": "size=16m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        remove=True,
    )
    return output.decode().strip()


@pytest.mark.docker
def test_build_yields_base_then_sandbox_image(images: list[ImageInfo]) -> None:
    assert [image.tag for image in images] == [base_module.BASE_IMAGE, SANDBOX_IMAGE]
    assert images[1].inputs_sha256 is not None


@pytest.mark.docker
def test_sandbox_image_runs_as_non_root_user(client: docker.DockerClient, images: list[ImageInfo]) -> None:
    assert client.images.get(SANDBOX_IMAGE).attrs["Config"]["User"] == "sandbox"
    assert run(client, "sh", "-c", "id -u; id -g") == "10001\n10001"
    assert run(client, "pwd") == "/tmp"


@pytest.mark.docker
def test_restrictedpython_imports_inside_without_network(client: docker.DockerClient, images: list[ImageInfo]) -> None:
    script = RESTRICTED_IMPORT + (
        "print(RestrictedPython.__file__); print(RestrictedPython.compile_restricted('x = 1', '<a>', 'exec').co_name)"
    )
    assert run(client, "python3", "-I", "-S", "-c", script).splitlines() == [
        "/opt/learnact/lib/RestrictedPython/__init__.py",
        "<module>",
    ]


@pytest.mark.docker
def test_isolated_python_without_site_and_with_precompiled_bytecode(
    client: docker.DockerClient, images: list[ImageInfo]
) -> None:
    script = (
        RESTRICTED_IMPORT + "import importlib.util, os, RestrictedPython.compile as c; "
        "print(sys.flags.isolated, sys.flags.no_site, 'site' in sys.modules, "
        "os.path.exists(importlib.util.cache_from_source(c.__file__)))"
    )
    assert run(client, "python3", "-I", "-S", "-c", script) == "1 1 False True"


@pytest.mark.docker
def test_image_holds_the_checkouts_runner(client: docker.DockerClient, images: list[ImageInfo]) -> None:
    inside = run(client, "sha256sum", "/opt/learnact/runner.py").split()[0]
    assert inside == hashlib.sha256(sandbox_image.RUNNER.read_bytes()).hexdigest()


@pytest.mark.docker
def test_second_build_keeps_both_images(client: docker.DockerClient, images: list[ImageInfo]) -> None:
    again = build_images(log=lambda _line: None, client=client)
    assert [image.built for image in again] == [False, False]
    assert [image.image_id for image in again] == [image.image_id for image in images]


@pytest.mark.docker
def test_changed_runner_rebuilds_and_unchanged_is_kept(
    client: docker.DockerClient, images: list[ImageInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = "learnact-sandbox:test-images"  # never the real tag: other tests use it concurrently
    monkeypatch.setattr(sandbox_image, "SANDBOX_IMAGE", tag)
    runner = tmp_path / "runner.py"
    runner.write_text(sandbox_image.RUNNER.read_text() + "\n# first\n")  # an image of its own
    monkeypatch.setattr(sandbox_image, "RUNNER", runner)
    try:
        first = sandbox_image.build_sandbox_image(client, base=base_module.BASE_IMAGE, log=lambda _l: None)
        assert first.built and first.inputs_sha256 != images[1].inputs_sha256
        kept = sandbox_image.build_sandbox_image(client, base=base_module.BASE_IMAGE, log=lambda _l: None)
        assert (kept.built, kept.image_id) == (False, first.image_id)

        runner.write_text(runner.read_text() + "\n# changed\n")
        changed = sandbox_image.build_sandbox_image(client, base=base_module.BASE_IMAGE, log=lambda _l: None)
        assert changed.built
        assert changed.inputs_sha256 != first.inputs_sha256
        assert changed.replaced_id == first.image_id
        with pytest.raises(ImageNotFound):  # the outdated image is removed, not left dangling
            client.images.get(first.image_id)
        assert client.images.get(tag).labels[INPUTS_LABEL] == changed.inputs_sha256
    finally:
        try:
            client.images.remove(tag, force=True)
        except ImageNotFound:
            pass


class _NoImages:
    """A Docker client stand-in that has no images at all."""

    class images:  # mirrors DockerClient.images
        @staticmethod
        def get(name: str) -> None:
            raise ImageNotFound(name)


def test_base_build_without_debootstrap_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_module.shutil, "which", lambda _name: None)
    with pytest.raises(ImageBuildError, match=r"apt-get install -y debootstrap"):
        base_module.build_base_image(_NoImages(), log=lambda _l: None)  # type: ignore[arg-type]


def test_base_build_as_non_root_says_it_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_module.shutil, "which", lambda _name: "/usr/sbin/debootstrap")
    monkeypatch.setattr(base_module.os, "geteuid", lambda: 1000)
    with pytest.raises(ImageBuildError, match=r"needs root"):
        base_module.build_base_image(_NoImages(), log=lambda _l: None)  # type: ignore[arg-type]


def build_command() -> typer.Typer:
    """`learnact images build` alone (a single-command app takes the options directly)."""
    cli = typer.Typer()
    cli.command()(images_command.build)
    return cli


def test_cli_without_engine_prints_one_line_saying_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    result = CliRunner().invoke(build_command(), [])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "no Docker engine answers" in lines[0] and ".ci/run" in lines[0]
    assert "Traceback" not in result.output


def test_cli_rejects_an_unknown_base() -> None:
    result = CliRunner().invoke(build_command(), ["--base", "quay"])
    assert result.exit_code == 2


@pytest.mark.docker
def test_the_sandbox_image_is_labelled_with_the_installed_sources(
    client: docker.DockerClient, images: list[ImageInfo]
) -> None:
    assert client.images.get(SANDBOX_IMAGE).labels[SOURCES_LABEL] == sandbox_image.sources_sha256()


@pytest.mark.docker
def test_an_image_built_from_other_sources_is_refused_at_sandbox_start(
    client: docker.DockerClient, images: list[ImageInfo], tmp_path: Path
) -> None:
    tag = "learnact-sandbox:test-stale"  # the real image with the label an older learnact would have put
    dockerfile = f"FROM {SANDBOX_IMAGE}\nLABEL {SOURCES_LABEL}={'0' * 64}\n"
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, network_mode="none")
    try:
        with pytest.raises(SandboxUnavailable, match=r"out of date .* rebuild it with `learnact images build`"):
            Sandbox(SandboxConfig(image=tag, pool_size=0))
        Sandbox(SandboxConfig(pool_size=0)).close()  # the current image is accepted
    finally:
        client.images.remove(tag, force=True)


@pytest.mark.docker
def test_sandbox_exec_on_a_stale_image_says_how_to_rebuild(
    images: list[ImageInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_backend, "_installed_sources", lambda: "f" * 64)  # as after an upgrade
    program = tmp_path / "p.py"
    program.write_text("print(1)\n")
    result = CliRunner().invoke(app, ["sandbox", "exec", str(program)])
    assert result.exit_code == 4  # ExitCode.UNAVAILABLE
    assert "is out of date" in result.stderr and "learnact images build" in result.stderr
    assert "Traceback" not in result.output
