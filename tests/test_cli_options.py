"""The option groups: declared once, spliced into each command that takes them, and the flags an error names
read from the running command's own parameters."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from learnact.engine.commands.cli import app
from learnact.engine.commands.options import ModelOptions, SandboxOptions, with_groups
from learnact.sandbox import BackendName


def params(command: str) -> dict[str, object]:
    return {param.name: param for param in typer.main.get_command(app).commands[command].params}  # type: ignore[attr-defined]


def test_eval_and_learn_take_the_same_declaration_of_every_shared_option_each_with_its_help() -> None:
    evaluate, learn = params("eval"), params("learn")
    shared = set(evaluate) & set(learn)
    assert set(ModelOptions.model_fields) <= shared and {"backend", "runtime", "executor", "workers", "out"} <= shared
    # The method and the step budget mean something else to each command (what to run, what to learn).
    for name in shared - {"method", "max_steps"}:
        assert evaluate[name].opts == learn[name].opts and evaluate[name].help == learn[name].help, name
    for command in (evaluate, learn):
        assert all(param.help for name, param in command.items() if name != "more_problems")


def test_a_group_is_spliced_into_the_signature_and_handed_to_the_command_built() -> None:
    received: list[SandboxOptions] = []
    toy = typer.Typer()

    @toy.command()
    @with_groups
    def run(*, sandbox_options: SandboxOptions, name: str = "x") -> None:
        received.append(sandbox_options)

    @toy.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(toy, ["run", "--backend", "process", "--name", "y"])
    assert result.exit_code == 0, result.output
    assert received == [SandboxOptions(backend=BackendName.process)]
    assert "--runtime" in CliRunner().invoke(toy, ["run", "--help"]).output


def test_an_error_names_the_flags_of_the_command_that_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "--env", "pddl/blockworld", "--ray-address", "auto", "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert "a Ray address is for the ray executor; give --executor ray or no --ray-address" in result.stderr
    assert not (tmp_path / "run").exists()
