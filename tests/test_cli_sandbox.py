"""Hostile text in the human output of the CLIs: what a program says reaches the terminal as inert text.

`learnact sandbox exec` runs under a real pseudo-terminal (so that rich renders as for a person): the
raw bytes the terminal would receive may hold rich's own colour codes (SGR: ESC [ digits m) and
nothing else that a terminal acts on, whatever the program printed or raised.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest
from rich.console import Console

from learnact.engine import EpisodeRecord, Summary
from learnact.engine.commands import common
from learnact.engine.commands import eval as eval_command

# Window title (OSC 0), clipboard (OSC 52), a hyperlink (OSC 8), a cursor move up with an erased line
# and a fake status line, 8-bit CSI, a right-to-left override, rich markup; then in an exception.
HOSTILE = (
    "\\x1b]0;pwned-title\\x07",
    "\\x1b]52;c;cHduZWQ=\\x07",
    "\\x1b]8;;http://evil.example/\\x1b\\\\click\\x1b]8;;\\x1b\\\\",
    "\\x1b[1A\\x1b[2K\\rok in 0.001 s",
    "\\x9b2J\\u202eevil\\u2066",
    "[bold red]fake[/bold red] :skull: \\x1b[0m",
)
PROGRAM = "".join(f"print('{text}')\n" for text in HOSTILE) + "raise ValueError('" + "".join(HOSTILE) + "')\n"
SGR = re.compile(rb"\x1b\[[0-9;]*m")


def run_in_pty(args: list[str], timeout_s: float = 120.0) -> tuple[int, bytes]:
    """Exit status and every byte written to the terminal (no output processing: CR stays CR)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "50"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        status = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return status, b"".join(chunks)


def learnact(*args: str) -> list[str]:
    return [sys.executable, "-m", "learnact.engine.commands.cli", *args]


@pytest.mark.docker
def test_program_output_and_errors_cannot_drive_the_terminal(tmp_path: Path, sandbox_image: str) -> None:
    program = tmp_path / "hostile.py"
    program.write_text(PROGRAM, encoding="utf-8")
    status, raw = run_in_pty(learnact("sandbox", "exec", str(program)))
    assert status == 1, raw.decode("utf-8", "replace")
    assert b"ValueError" in raw and b"error" in raw
    inert = SGR.sub(b"", raw)
    assert b"\x1b" not in inert, raw  # no OSC, no cursor movement: only rich's colours
    assert b"\x07" not in raw and b"\r" not in raw
    assert not re.search(rb"\xc2[\x80-\x9f]", raw)  # C1 controls (UTF-8 encoded)
    assert "\u202e".encode() not in raw and "\u2066".encode() not in raw
    text = inert.decode("utf-8")
    # What the program wrote is all there, made visible.
    assert "\\x1b]0;pwned-title\\x07" in text and "\\x1b]52;c;cHduZWQ=" in text
    assert "\\x1b[1A\\x1b[2K\\x0dok in 0.001 s" in text and "\\x9b2J\\u202eevil\\u2066" in text
    assert "[bold red]fake[/bold red] :skull:" in text  # markup and emoji codes shown, not interpreted


@pytest.mark.docker
def test_json_output_stays_json_and_holds_no_control_character(tmp_path: Path, sandbox_image: str) -> None:
    program = tmp_path / "hostile.py"
    program.write_text(PROGRAM + "", encoding="utf-8")
    status, raw = run_in_pty(learnact("sandbox", "exec", "--json", str(program)))
    assert status == 1
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", raw.replace(b"\r\n", b"\n"))
    assert raw.isascii()  # C1 controls and bidi overrides are escaped too
    result = json.loads(raw)
    assert result["status"] == "error" and "\x1b]0;pwned-title\x07" in result["stdout"]
    assert result["error"]["message"].startswith("\x1b]0;pwned-title\x07")


@pytest.mark.docker
def test_lone_surrogates_print_in_both_outputs(tmp_path: Path, sandbox_image: str) -> None:
    program = tmp_path / "surrogates.py"
    program.write_text("print('\\ud800')\nraise ValueError('\\udfff')\n", encoding="utf-8")
    for extra in ([], ["--json"]):
        completed = subprocess.run(learnact("sandbox", "exec", *extra, str(program)), capture_output=True, timeout=120)
        assert completed.returncode == 1, completed.stderr.decode("utf-8", "replace")
        assert b"Traceback" not in completed.stderr
        assert b"\\ud800" in completed.stdout and b"\\udfff" in completed.stdout


def test_eval_summary_and_errors_show_hostile_text_literally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Task ids, types and episode errors come from problem files, environments and exceptions."""
    hostile = "\x1b]0;t\x07\x1b[2K\r[bold]x[/bold]\u202e"
    record = EpisodeRecord(
        task="task" + hostile, type="type" + hostile, env="pddl", method="expert", status="error",
        error="PlannerError: " + hostile, success=False, progress=0.0, steps=[], duration_s=0.0,
    )  # fmt: skip
    summary = Summary.of("pddl" + hostile, "expert", [record])
    buffer = tmp_path / "out.txt"
    with buffer.open("w") as file:
        monkeypatch.setattr(eval_command, "Console", lambda **kwargs: Console(file=file, width=300, **kwargs))
        eval_command.show_summary(summary, tmp_path / ("run" + hostile))
        monkeypatch.setattr(common, "err", Console(file=file, width=300))
        common.fail("bad problem file: " + hostile)
    text = buffer.read_text(encoding="utf-8")
    for char in ("\x1b", "\x07", "\r", "\u202e"):
        assert char not in text
    assert text.count("\\x1b]0;t\\x07\\x1b[2K\\x0d[bold]x[/bold]\\u202e") >= 5  # type, task, error, title, path
