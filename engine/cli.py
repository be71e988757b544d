"""The `learnact` command line. Each command lives in its own module and is registered here."""

from __future__ import annotations

import signal
from types import FrameType

import typer

app = typer.Typer(
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


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@app.callback()
def main() -> None:
    """Sandboxed execution of model-written action code (see README.md)."""
    # `kill` and process supervisors send SIGTERM: exit through the normal unwinding, so that
    # every sandbox container this process started is removed (as on Ctrl-C).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

# Command registrations (one line each, module per command):
from learnact.engine import cli_envs, cli_eval  # noqa: E402

app.command("eval")(cli_eval.evaluate)
envs_app.command("list")(cli_envs.list_envs)
from learnact.engine import cli_images  # noqa: E402
images_app.command("build")(cli_images.build)
from learnact.engine import cli_sandbox  # noqa: E402
sandbox_app.command("exec")(cli_sandbox.exec_program)
from learnact.engine import cli_check  # noqa: E402
app.command("check")(cli_check.check)

if __name__ == "__main__":
    app()
