"""The sandbox image: `Dockerfile.sandbox` on a base, built without network from a small context.

The context holds only what the image needs: the Dockerfile, the in-sandbox runner, the checker's
policy (``lib/learnact_policy.py``, which the runner enforces) and a copy of the host's installed
RestrictedPython (pure Python, so the copy runs on the image's Python 3.11).
The image is labelled with a hash of these inputs and of the base; it is rebuilt when they change.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import docker
from docker.errors import APIError

from learnact.images.common import (
    INPUTS_LABEL,
    ImageBuildError,
    ImageInfo,
    Log,
    find_image,
    image_info,
    remove_replaced,
)
from learnact.sandbox.config import SANDBOX_IMAGE

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile.sandbox"
RUNNER = REPO_ROOT / "sandbox" / "runner.py"
POLICY = REPO_ROOT / "actions" / "policy.py"
# The Dockerfile's own default, for users whose daemon can pull from a registry.
REGISTRY_BASE = "python:3.11-slim"
# The classic builder colours the stderr of RUN steps; the log gets plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build_sandbox_image(
    client: docker.DockerClient, *, base: str, log: Log, force: bool = False
) -> ImageInfo:
    """Build `learnact-sandbox:latest` on `base` unless an image with the same inputs exists."""
    with tempfile.TemporaryDirectory(prefix="learnact-context-") as directory:
        context = Path(directory)
        _prepare_context(context)
        inputs = _inputs_sha256(context, base, _base_id(client, base, log))
        existing = find_image(client, SANDBOX_IMAGE)
        if existing is not None and not force and (existing.labels or {}).get(INPUTS_LABEL) == inputs:
            log(f"{SANDBOX_IMAGE} is up to date ({existing.short_id}); kept (use --force to rebuild)")
            return image_info(existing, SANDBOX_IMAGE, built=False)
        started = time.monotonic()
        _build(client, context, base, inputs, log, nocache=force)
    info = image_info(
        client.images.get(SANDBOX_IMAGE),
        SANDBOX_IMAGE,
        built=True,
        seconds=time.monotonic() - started,
        replaced=existing,
    )
    if info.replaced_id is not None:
        remove_replaced(client, info.replaced_id)
    return info


def _prepare_context(context: Path) -> None:
    for source in (DOCKERFILE, RUNNER, POLICY):
        if not source.is_file():
            raise ImageBuildError(
                f"{source} is missing: the sandbox image is built from a source checkout of learnact"
            )
    shutil.copyfile(DOCKERFILE, context / "Dockerfile")
    (context / "sandbox").mkdir()
    shutil.copyfile(RUNNER, context / "sandbox" / "runner.py")
    shutil.copytree(
        _restrictedpython_dir(),
        context / "lib" / "RestrictedPython",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"),
    )
    # The name the runner imports it by; part of the inputs hash like every file of the context.
    shutil.copyfile(POLICY, context / "lib" / "learnact_policy.py")


def _restrictedpython_dir() -> Path:
    spec = importlib.util.find_spec("RestrictedPython")
    if spec is None or not spec.submodule_search_locations:
        raise ImageBuildError("RestrictedPython is not installed on the host: run `pip install -e .`")
    return Path(next(iter(spec.submodule_search_locations)))


def _base_id(client: docker.DockerClient, base: str, log: Log) -> str:
    """The base's local id (pulled first if it comes from a registry): a new base means a rebuild."""
    image = find_image(client, base)
    if image is not None:
        return image.id
    if base != REGISTRY_BASE:
        raise ImageBuildError(f"the base image {base} does not exist: run `learnact images build`")
    log(f"pulling {base}")
    try:
        return client.images.pull(base).id
    except APIError as exc:
        raise ImageBuildError(_explain(f"pull failed: {exc.explanation}", base)) from exc


def _inputs_sha256(context: Path, base: str, base_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"base={base}@{base_id}\nRestrictedPython={version('RestrictedPython')}\n".encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _build(
    client: docker.DockerClient, context: Path, base: str, inputs: str, log: Log, *, nocache: bool
) -> None:
    log(f"building {SANDBOX_IMAGE} on {base} (network none)")
    try:
        stream = client.api.build(
            path=str(context),
            tag=SANDBOX_IMAGE,
            buildargs={"BASE_IMAGE": base},
            labels={INPUTS_LABEL: inputs},
            network_mode="none",  # RUN steps get no network: everything comes from the context
            pull=False,
            nocache=nocache,
            rm=True,
            forcerm=True,
            decode=True,
            use_config_proxy=False,
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageBuildError(_explain(str(chunk["error"]).strip(), base))
            for line in _ANSI.sub("", str(chunk.get("stream", ""))).splitlines():
                if line.strip():
                    log(line.rstrip())
    except APIError as exc:
        raise ImageBuildError(_explain(str(exc.explanation or exc), base)) from exc


def _explain(error: str, base: str) -> str:
    if base == REGISTRY_BASE and ("pull" in error or "not found" in error or "resolve" in error):
        return (
            f"building on {base} needs a reachable container registry ({error}); "
            "use `learnact images build --base debootstrap` to build the base offline"
        )
    return f"the sandbox image build failed: {error}"
