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
    SANDBOX_IMAGE,
    SOURCES_LABEL,
    ImageBuildError,
    ImageInfo,
    Log,
    find_image,
    image_info,
    remove_replaced,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile.sandbox"
RUNNER = REPO_ROOT / "sandbox" / "runner.py"
POLICY = REPO_ROOT / "actions" / "policy.py"
# The Dockerfile's own default, for users whose daemon can pull from a registry.
REGISTRY_BASE = "python:3.11-slim"
# The classic builder colours the stderr of RUN steps; the log gets plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build_sandbox_image(client: docker.DockerClient, *, base: str, log: Log, force: bool = False) -> ImageInfo:
    """Build `learnact-sandbox:latest` on `base` unless an image with the same inputs exists.

    :raises ImageBuildError: without a source checkout, a missing base, or a failed build.
    """
    with tempfile.TemporaryDirectory(prefix="learnact-context-") as directory:
        context = Path(directory)
        _prepare_context(context)
        inputs = _inputs_sha256(context, base, _base_id(client, base, log))
        existing = find_image(client, SANDBOX_IMAGE)
        labels = (existing.labels or {}) if existing is not None else {}
        current = labels.get(INPUTS_LABEL) == inputs and labels.get(SOURCES_LABEL) == sources_sha256()
        if existing is not None and not force and current:
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


def _context_files() -> dict[str, Path]:
    """The build context: its path for each installed file that goes into the image."""
    for source in (DOCKERFILE, RUNNER, POLICY):
        if not source.is_file():
            raise ImageBuildError(f"{source} is missing: the sandbox image is built from a source checkout of learnact")
    # lib/learnact_policy.py: the name the runner imports the policy by.
    files = {"Dockerfile": DOCKERFILE, "sandbox/runner.py": RUNNER, "lib/learnact_policy.py": POLICY}
    library = _restrictedpython_dir()
    for path in sorted(library.rglob("*")):
        relative = path.relative_to(library)
        if path.is_file() and not _SKIPPED.intersection(relative.parts) and path.suffix != ".pyc":
            files[f"lib/RestrictedPython/{relative.as_posix()}"] = path
    return files


_SKIPPED = frozenset({"__pycache__", "tests"})


def _prepare_context(context: Path) -> None:
    for name, source in _context_files().items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, context / name)


def sources_sha256() -> str:
    """The hash of the installed files the sandbox image is built from (no Docker needed): an image
    labelled with another hash holds another runner, policy or RestrictedPython.

    :raises ImageBuildError: without a source checkout (the files are missing).
    """
    digest = hashlib.sha256(f"RestrictedPython={version('RestrictedPython')}\n".encode())
    for name, path in sorted(_context_files().items()):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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
        raise _explain(f"pull failed: {exc.explanation}", base) from exc


def _inputs_sha256(context: Path, base: str, base_id: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"base={base}@{base_id}\nRestrictedPython={version('RestrictedPython')}\n".encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _build(client: docker.DockerClient, context: Path, base: str, inputs: str, log: Log, *, nocache: bool) -> None:
    log(f"building {SANDBOX_IMAGE} on {base} (network none)")
    try:
        stream = client.api.build(
            path=str(context),
            tag=SANDBOX_IMAGE,
            buildargs={"BASE_IMAGE": base},
            labels={INPUTS_LABEL: inputs, SOURCES_LABEL: sources_sha256()},
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
                raise _explain(str(chunk["error"]).strip(), base)
            for line in _ANSI.sub("", str(chunk.get("stream", ""))).splitlines():
                if line.strip():
                    log(line.rstrip())
    except APIError as exc:
        raise _explain(str(exc.explanation or exc), base) from exc


def _explain(error: str, base: str) -> ImageBuildError:
    if base == REGISTRY_BASE and ("pull" in error or "not found" in error or "resolve" in error):
        return ImageBuildError(
            f"building on {base} needs a reachable container registry ({error})",
            "build the base offline with {base} debootstrap",
        )
    return ImageBuildError(f"the sandbox image build failed: {error}")
