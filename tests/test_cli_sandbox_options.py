"""`learnact sandbox exec` options: '-' for standard input, tasks chosen like `eval --tasks`, the
environment's data options, and limits checked before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnact.engine.commands.cli import app

PICKUP = 'print(Pickup("b1"))\n'


def exec_cli(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["sandbox", "exec", *args], input=stdin)


@pytest.mark.usefixtures("sandbox_image")
def test_the_program_may_come_from_standard_input_and_the_task_by_index(tmp_path: Path) -> None:
    by_index = exec_cli("-", "--env", "pddl/blockworld", "--task", "3", "--json", stdin=PICKUP)
    assert by_index.exit_code == 0, by_index.output
    program = tmp_path / "pickup.py"
    program.write_text(PICKUP)
    by_id = exec_cli(str(program), "--env", "pddl/blockworld", "--task", "blockworld-04", "--json")
    observations = [json.loads(r.stdout)["calls"][0]["observation"] for r in (by_index, by_id)]
    assert observations[0] == observations[1]


@pytest.mark.usefixtures("sandbox_image")
def test_alfworld_games_are_chosen_with_data_split_and_task(alfworld_data: Path) -> None:
    result = exec_cli("-", "--env", "alfworld", "--alfworld-data", str(alfworld_data), "--split", "valid_seen",
                      "--task", "0", "--json", stdin="print(inventory())\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["calls"][0]["name"] == "inventory"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "pddl/blockworld", "--task", "0-2"], "--task 0-2 selects 3 tasks; give one index or id"),
        (["--env", "pddl/blockworld", "--task", "99"], "outside 0-9"),
        (["--env", "alfworld", "--alfworld-data", "/nonexistent"], "/nonexistent"),
        (["--memory", str(1 << 40)], "MiB is more than this machine's memory"),
    ],
)
def test_bad_options_are_one_line_usage_errors(args: list[str], message: str) -> None:
    result = exec_cli("-", *args, stdin=PICKUP)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert "Traceback" not in result.output


def test_a_too_large_program_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    with big.open("wb") as f:
        f.truncate(50_000_000)  # sparse: its size is read no further than the limit (stat is not trusted)
    result = exec_cli(str(big))
    assert result.exit_code == 2 and "is too large: code may be at most 100000 characters" in result.stderr
    assert exec_cli("-", stdin="x = 1\n" * 100_000).exit_code == 2  # 600 000 characters
    assert os.path.getsize(big) == 50_000_000
