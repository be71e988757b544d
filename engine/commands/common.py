"""What the commands share: the exit statuses, how an error is shown, and logging (the options more than one
command takes are the groups of ``options.py``).

Errors: a command lets a :class:`LearnactError` end it through :func:`reported` (or :func:`failure`),
which prints it as one line, ``error: ...``, with the parameters its remedy names written as the running
command's own flags (``--pddl-problems``, not `` `pddl_problems` ``: read from its parameters), and exits
with the status of the table below. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import TextIO

import typer
from rich.console import Console
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler
from typer._click.core import Command  # typer vendors click since 0.29
from typer._click.globals import get_current_context

from learnact.actions import LearnactError
from learnact.actions.errors import parameter
from learnact.actions.text import visible
from learnact.engine.agents import BUILTIN_METHODS, Learns, method_spec
from learnact.engine.llm.base import ModelFailure
from learnact.engine.markup import shown
from learnact.envs import EnvSpec
from learnact.images import ImageBuildError
from learnact.sandbox import SandboxUnavailable


class ExitCode(IntEnum):
    """The exit status of every command."""

    OK = 0
    FAILED = 1  # it ran and reports a failure: an error finding (check), a status other than ok
    # (sandbox exec), a failed build (images build)
    USAGE = 2  # an option, file, environment, task or run directory that cannot be used; nothing ran
    EPISODE_ERRORS = 3  # an episode recorded in the run directory ended by an error, or the model failed
    UNAVAILABLE = 4  # the sandbox cannot run here: no Docker engine, image or runtime
    INTERRUPTED = 130  # Ctrl-C (SIGTERM and SIGHUP end a command with 128 + their number)


def exit_code(error: LearnactError) -> ExitCode:
    """The exit status a command ends with on ``error``."""
    if isinstance(error, SandboxUnavailable):
        return ExitCode.UNAVAILABLE
    if isinstance(error, ImageBuildError):
        return ExitCode.FAILED
    if isinstance(error, ModelFailure):
        return ExitCode.EPISODE_ERRORS
    return ExitCode.USAGE


def flag_naming(command: Command | None = None) -> Callable[[str], str]:
    """How a command line names a library parameter: as the flag of ``command``'s own parameter of that name
    (default: the command running now), the long one; a parameter the command does not take keeps its
    library name."""
    if command is None:
        context = get_current_context(silent=True)
        command = context.command if context is not None else None
    flags = {param.name: max(param.opts, key=len) for param in (command.params if command else ()) if param.opts}

    def naming(name: str) -> str:
        found = flags.get(name)
        return found if found and found.startswith("--") else parameter(name)

    return naming


# soft_wrap: a message is one line however narrow the terminal (or the 80 columns of a pipe).
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    """Print ``error: message`` as one line on stderr, the message shown literally; the Exit to raise."""
    err.print(f"[red]error:[/red] {shown(message)}")
    return typer.Exit(code)


def failure(error: LearnactError) -> typer.Exit:
    """Print ``error`` as :func:`fail` does, with flags for parameters; the Exit (its status) to raise."""
    return fail(error.describe(flag_naming()), exit_code(error))


@contextmanager
def resumable(out: Path, kept: str) -> Iterator[None]:
    """A stop signal in the block ends the command with its status, saying that ``kept`` (what is kept) is in
    ``out`` and how to resume: Ctrl-C (KeyboardInterrupt) with 130, SIGTERM or SIGHUP (the SystemExit that
    the signal handler raises) with 128 + its number."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"interrupted: {kept} kept in {shown(str(out))}; run the same command to resume")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except SystemExit as exc:
        if isinstance(exc.code, int) and exc.code - 128 in (signal.SIGTERM, signal.SIGHUP):
            name = signal.Signals(exc.code - 128).name
            err.print(f"stopped by {name}: {kept} kept in {shown(str(out))}; run the same command to resume")
        raise


@contextmanager
def reported() -> Iterator[None]:
    """A LearnactError raised in the block ends the command (:func:`failure`); a bug keeps its traceback."""
    try:
        yield
    except LearnactError as error:
        raise failure(error) from None


# What each kind of learning gives `learnact eval`: its name, and what a method that uses it needs.
_LEARNED = {
    Learns.notes: ("notes", "the notes of a learning run"),
    Learns.library: ("learned actions", "a learned action library"),
}


def learning_run(method: str, learns: Learns, run: Path | None, flag: str, env: EnvSpec) -> Path | None:
    """The learning run given as ``flag`` (``--notes``, ``--library``) when ``method`` uses what ``learns``
    names; None for a method that uses none.

    :raises typer.Exit: (the error printed, status USAGE) for a run given to a method that uses none of it, or
        none given to a method that does.
    """
    what, needed = _LEARNED[learns]
    if method_spec(method).learns is not learns:
        if run is not None:
            users = [name for name, spec in BUILTIN_METHODS.items() if spec.learns is learns]
            does = "do" if len(users) > 1 else "does"
            raise fail(f"{flag}: the method {method} uses no {what} ({' and '.join(users)} {does})")
        return None
    if run is None:
        raise fail(
            f"the method {method} needs {needed}: run `learnact learn --method {method} --env {env.name} ...` "
            f"first, then give its run directory as {flag} RUN"
        )
    return run


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
