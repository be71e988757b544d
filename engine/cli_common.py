"""What the commands share: the exit statuses, how an error is shown, logging, and the common options.

Errors: a command lets a :class:`LearnactError` end it through :func:`reported` (or :func:`failure`),
which prints it as one line, ``error: ...``, with the parameters its remedy names written as this
command line's flags (``--pddl-problems``, not `` `pddl_problems` ``), and exits with the status of the
table below. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Optional, TextIO

import typer
from rich.console import Console
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler
from rich.markup import escape

from learnact.actions import LearnactError
from learnact.actions.errors import parameter
from learnact.actions.text import visible
from learnact.envs import EnvSpec, expand_problem_paths
from learnact.images import ImageBuildError
from learnact.sandbox import BackendName, RuntimeName, SandboxConfig, SandboxUnavailable


class ExitCode(IntEnum):
    """The exit status of every command."""

    OK = 0
    FAILED = 1  # it ran and reports a failure: an error finding (check), a status other than ok
    # (sandbox exec), a failed build (images build)
    USAGE = 2  # an option, file, environment, task or run directory that cannot be used; nothing ran
    EPISODE_ERRORS = 3  # eval: an episode recorded in the run directory ended by an error
    UNAVAILABLE = 4  # the sandbox cannot run here: no Docker engine, image or runtime
    INTERRUPTED = 130  # Ctrl-C (SIGTERM and SIGHUP end a command with 128 + their number)


def exit_code(error: LearnactError) -> ExitCode:
    """The exit status a command ends with on ``error``."""
    if isinstance(error, SandboxUnavailable):
        return ExitCode.UNAVAILABLE
    if isinstance(error, ImageBuildError):
        return ExitCode.FAILED
    return ExitCode.USAGE


# The flag of each parameter a library remedy may name.
FLAGS = {
    "alfworld_data": "--alfworld-data",
    "backend": "--backend",
    "base": "--base",
    "env": "--env",
    "max_steps": "--max-steps",
    "out": "--out",
    "pddl_domain": "--pddl-domain",
    "pddl_problems": "--pddl-problems",
    "runtime": "--runtime",
    "split": "--split",
    "workers": "--workers",
    "model": "--model",
    "base_url": "--base-url",
    "cache_dir": "--cache-dir",
}


def flag(name: str) -> str:
    """How a command line names a parameter: its flag (a parameter without one keeps its own name)."""
    return FLAGS.get(name) or parameter(name)


# soft_wrap: a message is one line however narrow the terminal (or the 80 columns of a pipe).
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def shown(text: str) -> str:
    """Untrusted text as rich markup that prints it literally: control characters made visible,
    markup escaped (program output, errors, observations, messages quoting code, diagnostics)."""
    return escape(visible(text))


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    """Print ``error: message`` as one line on stderr, the message shown literally; the Exit to raise."""
    err.print(f"[red]error:[/red] {shown(message)}")
    return typer.Exit(code)


def failure(error: LearnactError) -> typer.Exit:
    """Print ``error`` as :func:`fail` does, with flags for parameters; the Exit (its status) to raise."""
    return fail(error.describe(flag), exit_code(error))


@contextmanager
def reported() -> Iterator[None]:
    """A LearnactError raised in the block ends the command (:func:`failure`); a bug keeps its traceback."""
    try:
        yield
    except LearnactError as error:
        raise failure(error) from None


# --- logging ---------------------------------------------------------------------------------------


class _VisibleFormatter(logging.Formatter):
    """Log lines may quote untrusted text (a sandbox's diagnostics, a path): made visible, never markup."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))


class _StderrHandler(logging.StreamHandler):
    """Plain lines on whatever ``sys.stderr`` is when a record comes (a test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    """Log learnact's warnings to stderr, and with ``verbosity`` 1 its progress (INFO), 2 or more every
    lifecycle event (DEBUG): through rich's handler on a terminal, as plain lines (one per record, for
    logs and grep) otherwise. Called once per command; a later call replaces the earlier set-up."""
    logger = logging.getLogger("learnact")
    for handler in [h for h in logger.handlers if getattr(h, "learnact_cli", False)]:
        logger.removeHandler(handler)
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(
            console=Console(stderr=True, highlight=False, emoji=False),
            show_path=False,
            show_time=verbosity >= 2,
            markup=False,
            highlighter=NullHighlighter(),
        )
        handler.setFormatter(_VisibleFormatter("%(name)s: %(message)s"))
    else:
        handler = _StderrHandler()
        timed = "%(asctime)s " if verbosity >= 2 else ""
        handler.setFormatter(_VisibleFormatter(timed + "%(levelname)s %(name)s: %(message)s"))
    handler.learnact_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING)


# --- options more than one command takes -----------------------------------------------------------

DEFAULT_BACKEND: BackendName = SandboxConfig.model_fields["backend"].default
DEFAULT_RUNTIME: RuntimeName = SandboxConfig.model_fields["runtime"].default

BackendOption = Annotated[
    BackendName, typer.Option("--backend", help="sandbox backend: docker, or process (an rlimited child; weaker)")
]
RuntimeOption = Annotated[RuntimeName, typer.Option("--runtime", help="OCI runtime of the containers; runsc is gVisor")]
PddlDomainOption = Annotated[
    Optional[Path], typer.Option("--pddl-domain", help="external PDDL domain file (--env pddl)")
]
PddlProblemsOption = Annotated[
    Optional[list[Path]],
    typer.Option("--pddl-problems", help="external PDDL problem files or folders of them (--env pddl)"),
]
AlfworldDataOption = Annotated[
    Optional[Path], typer.Option("--alfworld-data", help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA)")
]
SplitOption = Annotated[str, typer.Option("--split", help="ALFWorld split")]
DEFAULT_SPLIT: str = EnvSpec.model_fields["split"].default


def env_spec(
    name: str,
    pddl_domain: Path | None = None,
    pddl_problems: list[Path] | None = None,
    alfworld_data: Path | None = None,
    split: str = DEFAULT_SPLIT,
) -> EnvSpec:
    """The EnvSpec the environment options describe (problem folders expanded to their files).

    :raises EnvSpecError: for a problem folder without ``.pddl`` files.
    """
    return EnvSpec(
        name=name,
        pddl_domain=str(pddl_domain) if pddl_domain else None,
        pddl_problems=expand_problem_paths(pddl_problems or (), pddl_domain),
        alfworld_data=str(alfworld_data) if alfworld_data else None,
        split=split,
    )
