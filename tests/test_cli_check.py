"""`learnact check`: linter-style text, JSON and SARIF output, exit statuses and usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnact.actions import RULES
from learnact.engine.commands import check as check_command
from learnact.engine.commands.cli import app
from learnact.envs import ParamSpec, PrimitiveSpec, UnknownEnvironment, primitive_specs

BAD_MODULE = "import os\n\n\ndef act(x):\n    return eval(x)\n"
GOOD_MODULE = 'def act(block):\n    """Pick up `block`."""\n    return pickup(block)\n'


def write(tmp_path: Path, text: str, name: str = "code.py") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def invoke(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["check", *args], input=stdin)


@pytest.fixture
def fake_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment `toy` with one primitive, pickup(block); other names are unknown."""

    def specs(name: str) -> list[PrimitiveSpec]:
        if name != "toy":
            raise UnknownEnvironment(name, ["toy"])
        return [PrimitiveSpec(name="pickup", params=(ParamSpec(name="block"),), doc="Pick up a block.")]

    monkeypatch.setattr(check_command, "primitive_specs", specs)


def test_text_output_is_one_linter_line_per_finding_and_a_summary_on_stderr(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_MODULE)
    result = invoke(str(path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"{path}:1:8: LA002 module 'os' cannot be imported in an action; allowed: "
        "bisect, collections, copy, functools, heapq, itertools, json, math, random, re, statistics, string, typing"
    )
    assert [line.split(": ", 1)[1].split()[0] for line in lines] == ["LA002", "LA009", "LA003"]
    assert result.stderr.strip() == f"{path}: 3 errors, 0 warnings (checked as an action module)"


def test_clean_code_exits_0(tmp_path: Path, fake_env: None) -> None:
    result = invoke(str(write(tmp_path, GOOD_MODULE)), "--env", "toy")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no problems found" in result.stderr


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    result = invoke(str(write(tmp_path, "len = 3\nprint(len)\n")))
    assert result.exit_code == 0
    assert "LA013" in result.stdout
    assert "0 errors, 1 warning" in result.stderr


def test_env_primitives_are_checked(tmp_path: Path, fake_env: None) -> None:
    result = invoke(str(write(tmp_path, "pickup('a', 'b')\n")), "--env", "toy")
    assert result.exit_code == 1
    assert "LA007 pickup() takes 1 argument (block) but 2 were given" in result.stdout


def test_without_env_primitive_calls_are_unknown(tmp_path: Path) -> None:
    result = invoke(str(write(tmp_path, "pickup('a')\n")))
    assert result.exit_code == 1
    assert "LA006 'pickup' is not defined" in result.stdout


def test_a_registered_environment_gives_its_primitives(tmp_path: Path) -> None:
    primitive = primitive_specs("pddl/blockworld")[0]
    too_many = ", ".join(["'b1'"] * (len(primitive.params) + 1))
    result = invoke(str(write(tmp_path, f"{primitive.name}({too_many})\n")), "--env", "pddl/blockworld")
    assert result.exit_code == 1
    assert f"LA007 {primitive.name}() takes" in result.stdout


def test_unknown_env_is_a_one_line_usage_error_listing_known_ones(tmp_path: Path, fake_env: None) -> None:
    result = invoke(str(write(tmp_path, GOOD_MODULE)), "--env", "nowhere")
    assert result.exit_code == 2
    assert result.stderr == "error: unknown environment 'nowhere'; known: toy\n"


def test_unknown_env_from_the_real_registry(tmp_path: Path) -> None:
    result = invoke(str(write(tmp_path, GOOD_MODULE)), "--env", "nowhere")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "nowhere" in result.stderr and "pddl/blockworld" in result.stderr


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: tmp / "missing.py", "no such file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: (tmp / "latin1.py").write_bytes(b"x = '\xe9'\n") and tmp / "latin1.py", "is not UTF-8 text"),
    ],
)
def test_unreadable_input_is_a_one_line_usage_error(tmp_path: Path, make, words: str) -> None:
    result = invoke(str(make(tmp_path)))
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and words in result.stderr
    assert "Traceback" not in result.output


def test_kind_auto_and_forced(tmp_path: Path) -> None:
    module = write(tmp_path, "def act():\n    return 1\n")
    assert "LA009" in invoke(str(module)).stdout  # auto: only definitions, so an action module
    forced = invoke(str(module), "--kind", "agent-snippet")
    assert "LA010" in forced.stdout and "LA009" not in forced.stdout
    assert "checked as an agent snippet" in forced.stderr
    snippet = write(tmp_path, "x = 1\n", "snippet.py")
    assert invoke(str(snippet)).exit_code == 0
    assert "LA009" in invoke(str(snippet), "--kind", "action-module").stdout


PROGRAM = (
    "def solve(blocks):\n    for block in blocks:\n        grab(block)\n\n\n"
    "def grab(block):\n    return pickup(block)\n\n\nsolve(['a', 'b'])\n"
)


def test_kind_program_accepts_helpers_and_top_level_calls(tmp_path: Path, fake_env: None) -> None:
    path = write(tmp_path, PROGRAM)
    result = invoke(str(path), "--kind", "program", "--env", "toy")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"{path}: no problems found (checked as a program)"
    auto = invoke(str(path), "--env", "toy")  # auto: definitions and top-level calls make a program
    assert auto.exit_code == 0 and "checked as a program" in auto.stderr
    as_snippet = invoke(str(path), "--kind", "agent-snippet", "--env", "toy")
    assert as_snippet.exit_code == 1 and "LA010" in as_snippet.stdout


def test_kind_program_keeps_the_safety_rules(tmp_path: Path, fake_env: None) -> None:
    code = "import os\n\n\ndef solve():\n    return eval('1')\n\n\nlater()\nsolve()\n\n\ndef later():\n    pass\n"
    result = invoke(str(write(tmp_path, code)), "--kind", "program", "--env", "toy", "--format", "json")
    assert result.exit_code == 1
    assert [(f["rule"], f["line"]) for f in json.loads(result.stdout)] == [("LA002", 1), ("LA003", 5), ("LA015", 8)]
    only_defs = invoke(str(write(tmp_path, "def solve():\n    return 1\n", "defs.py")), "--kind", "program")
    assert only_defs.exit_code == 0 and "LA017" in only_defs.stdout  # a warning: it calls nothing


def test_actions_file_makes_its_functions_callable(tmp_path: Path) -> None:
    actions = write(tmp_path, GOOD_MODULE, "actions.py")
    snippet = write(tmp_path, "act('b1')\n", "snippet.py")
    assert invoke(str(snippet)).exit_code == 1
    result = invoke(str(snippet), "--actions", str(actions))
    assert result.exit_code == 0, result.output


def test_standard_input(tmp_path: Path) -> None:
    result = invoke("-", stdin="x = eval('1')\n")
    assert result.exit_code == 1
    assert result.stdout.startswith("<stdin>:1:5: LA003 ")


def test_json_output_is_the_list_of_findings(tmp_path: Path) -> None:
    result = invoke(str(write(tmp_path, BAD_MODULE)), "--format", "json")
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    assert [f["rule"] for f in findings] == ["LA002", "LA009", "LA003"]
    assert all(set(f) == {"rule", "severity", "line", "col", "message"} for f in findings)
    assert findings[2] == {
        "rule": "LA003",
        "severity": "error",
        "line": 5,
        "col": 12,
        "message": findings[2]["message"],
    }
    assert findings[2]["message"].startswith("'eval' is not allowed in action code")


def test_json_output_of_clean_code_is_an_empty_list(tmp_path: Path) -> None:
    result = invoke(str(write(tmp_path, "x = 1\n")), "--format", "json")
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_sarif_output_is_a_sarif_2_1_0_log(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_MODULE + "len = 2\n")
    result = invoke(str(path), "--format", "sarif", "--kind", "action-module")
    assert result.exit_code == 1
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "learnact-check" and driver["version"]
    assert [r["id"] for r in driver["rules"]] == [r.id for r in RULES]
    for described, rule in zip(driver["rules"], RULES):
        assert described["name"] == rule.name
        assert described["shortDescription"]["text"] == rule.summary
        assert described["defaultConfiguration"]["level"] == rule.severity.value
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["LA002", "LA009", "LA003", "LA009", "LA013"]
    assert [r["level"] for r in results] == ["error", "error", "error", "error", "warning"]
    for sarif_result in results:
        assert driver["rules"][sarif_result["ruleIndex"]]["id"] == sarif_result["ruleId"]
        assert sarif_result["message"]["text"]
        (location,) = sarif_result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uri"] == path.as_uri()
    regions = [r["locations"][0]["physicalLocation"]["region"] for r in results]
    assert regions == [
        {"startLine": 1, "startColumn": 8},
        {"startLine": 4, "startColumn": 1},
        {"startLine": 5, "startColumn": 12},
        {"startLine": 6, "startColumn": 1},
        {"startLine": 6, "startColumn": 1},
    ]


def test_sarif_uri_of_a_relative_path_is_percent_encoded() -> None:
    log = check_command.to_sarif([], "my actions/a b.py")
    assert log["runs"][0]["results"] == []
    assert check_command._artifact_uri("my actions/a b.py") == "my%20actions/a%20b.py"


def test_the_installed_command_keeps_stdout_for_findings(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_MODULE)
    command = [
        sys.executable,
        "-c",
        "from learnact.engine.commands.cli import app; app()",
        "check",
        str(path),
        "--format",
        "json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert [f["rule"] for f in json.loads(done.stdout)] == ["LA002", "LA009", "LA003"]
    missing = subprocess.run(command[:3] + ["check", str(tmp_path / "nope.py")], capture_output=True, text=True)
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == f"error: no such file: {tmp_path / 'nope.py'}\n"


@pytest.mark.parametrize(
    "code",
    [
        "x = = 1  # \x1b]0;pwned\x07\x1b]52;c;aGk=\x07\x1b[2K ok \u202eevil\n",  # the syntax error quotes the line
        "print('{a.b\x1b[2K\x9b1A}'.format(a=1))\n",  # the finding quotes the format field
    ],
    ids=["syntax-error", "format-field"],
)
def test_text_output_shows_control_characters_of_quoted_code_as_escapes(tmp_path: Path, code: str) -> None:
    path = write(tmp_path, code)
    result = invoke(str(path))
    assert result.exit_code == 1
    output = result.stdout + result.stderr
    assert "\\x1b" in output
    for char in ("\x1b", "\x07", "\r", "\x9b", "\u202e"):
        assert char not in output
    text = json.loads(invoke("--format", "json", str(path)).stdout)  # JSON keeps the text itself
    assert "\x1b" in text[0]["message"]


# The peak resident memory of this process alone: VmHWM starts anew at exec, while ru_maxrss keeps the
# high-water mark that the child inherited from the (large) pytest process at fork.
MEASURED_CHECK = """
import re, sys
from learnact.engine.commands.cli import app
try:
    app(["check", *sys.argv[1:]])
except SystemExit as exit:
    status = open("/proc/self/status").read()
    print(exit.code, int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


@pytest.mark.parametrize("via_stdin", [False, True])
def test_a_50_mb_file_is_refused_at_once_without_reading_it(tmp_path: Path, via_stdin: bool) -> None:
    big = tmp_path / "big.py"
    with big.open("wb") as f:
        f.write(b"x = 1\n" * (50_000_000 // 6))
    started = time.monotonic()
    with big.open("rb") as stdin:
        run = subprocess.run(
            [sys.executable, "-c", MEASURED_CHECK, "-" if via_stdin else str(big)],
            stdin=stdin, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    code, peak_mib = map(int, run.stdout.split())
    assert code == 2
    assert run.stderr.strip().startswith("error: ")
    assert "is too large" in run.stderr and "at most 100000 characters" in run.stderr
    assert time.monotonic() - started < 20
    assert peak_mib < 150, f"{peak_mib} MiB: the file was read or parsed"


def test_too_large_actions_module_is_refused_before_parsing(tmp_path: Path) -> None:
    snippet = write(tmp_path, "act('b1')\n")
    actions = write(tmp_path, "(" * 200_000, "actions.py")
    result = invoke(str(snippet), "--actions", str(actions))
    assert result.exit_code == 2 and "is too large" in result.stderr
