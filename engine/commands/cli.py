"""The `learnact` command line (the console script): the group, its signals and logging. Each command lives in its
own module of this package and is registered here."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoArgsIsHelpError  # typer vendors click since 0.29
from typer.core import TyperGroup

from learnact.engine.commands import actions, check, envs, images, import_actions, learn, report, sandbox, serve
from learnact.engine.commands import eval as eval_command
from learnact.engine.commands.common import configure_logging, err
from learnact.engine.markup import shown


class OneLineErrors(TyperGroup):
    """The `learnact` group: a usage error that the option parser finds (a missing option, a value out of
    range, an unknown flag) is one line ``error: ...`` naming the flag, exit 2, as every learnact error is,
    instead of a usage box."""

    def main(
        self,
        args: Any = None,
        prog_name: Any = None,
        complete_var: Any = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.TyperException as exc:
            context = getattr(exc, "ctx", None)
            see = f" (see `{context.command_path} --help`)" if context is not None else ""
            err.print(f"[red]error:[/red] {shown(' '.join(exc.format_message().split()))}{shown(see)}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            err.print("Aborted!")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)  # an int: the status of a typer.Exit


app = typer.Typer(
    cls=OneLineErrors,
    help="learnact: a sandboxed action-code execution engine for LLM agents that learn their actions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
sandbox_app = typer.Typer(help="Run programs in the sandbox.", no_args_is_help=True)
images_app = typer.Typer(help="Build the sandbox images.", no_args_is_help=True)
envs_app = typer.Typer(help="Environments and their tasks.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(images_app, name="images")
app.add_typer(envs_app, name="envs")


# Ctrl-C, `kill`/process supervisors and a closed terminal: each ends the command through the normal
# unwinding, so that every sandbox container and temporary folder this process made is removed.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_handled: list[signal.Signals] = []  # those not ignored when the command started
_acknowledged = False


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    """A further stop signal: the clean-up in progress must finish (an exception raised inside it
    would leave containers behind and print a traceback from atexit), so it is only acknowledged,
    once. (It stays a Python handler: switching to SIG_IGN while signals are pending makes Python
    print "Signal N ignored due to race condition".)"""
    global _acknowledged
    if _acknowledged:
        return
    _acknowledged = True
    try:
        os.write(2, b"learnact: already stopping; removing the sandboxes (send SIGKILL to abandon them)\n")
    except OSError:
        pass


def _stop(signum: int, frame: FrameType | None) -> None:
    for other in _handled:
        signal.signal(other, _already_stopping)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


@app.callback()
def main(
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="log progress to stderr; -vv: every sandbox and run event too"
        ),
    ] = 0,
) -> None:
    """Sandboxed execution of model-written action code (see README.md)."""
    configure_logging(verbose)
    global _acknowledged
    _acknowledged = False
    _handled.clear()
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup, `cmd &` in scripts: stay immune
            signal.signal(signum, _stop)
            _handled.append(signum)


# Command registrations (one line each, module per command):
app.command("eval")(eval_command.evaluate)
envs_app.command("list")(envs.list_envs)
images_app.command("build")(images.build)
sandbox_app.command("exec")(sandbox.exec_program)
app.command("check")(check.check)
app.command("report")(report.report)
actions.app.command("import")(import_actions.import_actions)
app.add_typer(actions.app, name="actions")
app.command("audit")(actions.audit)
app.command("learn")(learn.learn)
app.command("serve")(serve.serve)

if __name__ == "__main__":
    app()
