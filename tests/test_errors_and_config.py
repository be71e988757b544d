"""Strict configurations, one error root with typed errors, and how the command line shows both.

None of these tests needs a Docker engine: where a sandbox would start, the engine is made unreachable.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pickle
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel, ValidationError
from typer.testing import CliRunner

import learnact.actions
import learnact.engine
import learnact.envs
import learnact.images
import learnact.sandbox
from learnact.actions import LearnactError
from learnact.engine import (
    EpisodeRecord,
    EpisodeSpec,
    EvalConfig,
    InputError,
    Method,
    RunDirBusy,
    RunSettings,
)
from learnact.engine.commands import common
from learnact.engine.commands import eval as eval_command
from learnact.engine.commands import sandbox as sandbox_command
from learnact.engine.commands.cli import app
from learnact.engine.rundir import differences
from learnact.engine.runs import planning
from learnact.envs import EnvSpec, EnvSpecError, UnknownTask, make_env
from learnact.sandbox import BackendName, RuntimeName, SandboxConfig, SandboxUnavailable

BLOCKS = EnvSpec(name="pddl/blockworld")


# --- configurations refuse mistakes ---------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "value"), [("timeout", 1), ("memory", 64), ("pool", 0)])
def test_a_misspelt_sandbox_setting_is_refused_naming_it(setting: str, value: int) -> None:
    with pytest.raises(ValidationError) as caught:
        SandboxConfig(**{setting: value})
    (error,) = caught.value.errors()
    assert error["loc"] == (setting,) and error["type"] == "extra_forbidden"
    assert setting in str(caught.value)


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (SandboxConfig, {}),
        (EnvSpec, {"name": "pddl/blockworld"}),
        (RunSettings, {"env": BLOCKS}),
        (EpisodeSpec, {"run": RunSettings(env=BLOCKS), "task": "blockworld-01"}),
        (EvalConfig, {"run": RunSettings(env=BLOCKS), "tasks": ["blockworld-01"]}),
    ],
)
def test_every_config_is_frozen_and_refuses_unknown_fields(model: type[BaseModel], fields: dict) -> None:
    config = model(**fields)
    name = next(iter(type(config).model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(config, name, getattr(config, name))
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs are not permitted"):
        model(**fields, surprise=1)


def test_backend_and_runtime_are_one_vocabulary_for_config_and_command_line() -> None:
    config = SandboxConfig(backend="process", runtime="runsc")
    assert config.backend is BackendName.process and config.runtime is RuntimeName.runsc
    assert f"{config.backend} {config.runtime}" == "process runsc"  # formats as its value
    assert config.model_dump(mode="json")["backend"] == "process"
    with pytest.raises(ValidationError, match="backend"):
        SandboxConfig(backend="kubernetes")
    default = SandboxConfig().backend
    for command in (eval_command.evaluate, sandbox_command.exec_program):
        parameters = inspect.signature(command).parameters
        assert parameters["backend"].default is default
        assert parameters["runtime"].default is SandboxConfig().runtime


def test_a_run_is_identified_by_its_settings_as_a_whole() -> None:
    run = RunSettings(env=BLOCKS, max_steps=5)
    config = EvalConfig(run=run, tasks=["blockworld-01", "blockworld-02"], workers=2)
    assert config.episode("blockworld-02") == EpisodeSpec(run=run, task="blockworld-02")
    assert RunSettings(env=EnvSpec(name="pddl/blockworld"), max_steps=5) == run
    other = RunSettings(env=BLOCKS, max_steps=5, sandbox=SandboxConfig(memory_mb=512))
    assert other != run and differences(run, other) == ["sandbox"]
    # a run's identity names what differs inside its settings
    learning = EvalConfig(run=other.model_copy(update={"max_steps": 6}), tasks=[])
    assert differences(config, learning) == ["max_steps", "sandbox", "tasks", "workers"]


def test_the_method_of_a_record_is_kept_as_its_name_which_a_plugin_may_give() -> None:
    record = EpisodeRecord(
        task="t", type="x", env="pddl", method="expert", success=True, progress=1.0, steps=[], duration_s=0.0
    )
    assert record.method == Method.expert and record.model_dump(mode="json")["method"] == "expert"
    assert EpisodeRecord.model_validate({**record.model_dump(), "method": "oracle"}).method == "oracle"
    for bad in ("", "../oracle", "a b", "x" * 101):
        with pytest.raises(ValidationError, match="method"):
            EpisodeRecord.model_validate({**record.model_dump(), "method": bad})


# --- one error root, typed errors ------------------------------------------------------------------------


def _learnact_modules() -> list[str]:
    names = []
    for package in (learnact.actions, learnact.envs, learnact.sandbox, learnact.engine, learnact.images):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.split(".")[-1] in {"runner", "generate"} or ".alfworld" in module.name:
                continue  # the in-sandbox runner (stdlib only); a script; ALFWorld (slow, checked below)
            names.append(module.name)
    return [*names, "learnact.envs.alfworld.games", "learnact.envs.alfworld.goal"]


def test_every_public_exception_of_learnact_is_a_learnact_error() -> None:
    found = []
    for name in _learnact_modules():
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attribute.startswith("_")
            ):
                found.append(value)
                assert issubclass(value, LearnactError), f"{name}.{attribute} is not a LearnactError"
    assert {"SandboxUnavailable", "UnknownTask", "InputError", "PlannerError", "ImageBuildError"} <= {
        e.__name__ for e in found
    }


def test_an_unknown_task_keeps_its_fields_and_survives_pickling() -> None:
    env = make_env(BLOCKS)
    with pytest.raises(UnknownTask) as caught:
        env.reset("nope")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.task, copy.env, copy.available) == ("nope", "pddl/blockworld", tuple(t.id for t in env.tasks()))
    assert str(copy) == str(caught.value)


def test_library_messages_name_parameters_and_the_command_line_names_flags() -> None:
    with pytest.raises(EnvSpecError) as caught:
        make_env(EnvSpec(name="pddl"))
    error = caught.value
    assert str(error) == (
        "the environment 'pddl' needs external files; give `pddl_domain` and `pddl_problems` (files or folders), "
        "or use a built-in set such as pddl/blockworld"
    )
    command = typer.main.get_command(app).commands["eval"]  # type: ignore[attr-defined]
    assert "--pddl-domain and --pddl-problems" in error.describe(common.flag_naming(command))
    assert "--" not in str(error)


def test_typed_errors_build_their_messages_from_their_fields(tmp_path: Path) -> None:
    busy = RunDirBusy(tmp_path, 1234, "eval")
    assert busy.pid == 1234 and busy.path == tmp_path and busy.command == "eval"
    assert (
        str(busy)
        == f"{tmp_path} is in use by another learnact eval (pid 1234); wait for it to finish or use another `out`"
    )
    unavailable = SandboxUnavailable("no Docker engine answers", "start one", backend="docker")
    assert (unavailable.reason, unavailable.hint, unavailable.backend) == (
        "no Docker engine answers",
        "start one",
        "docker",
    )
    assert str(unavailable) == "no Docker engine answers; start one"
    assert str(InputError("-", "standard input is not UTF-8 text")) == "standard input is not UTF-8 text"


def test_exit_codes_are_one_table() -> None:
    assert common.exit_code(SandboxUnavailable("x")) is common.ExitCode.UNAVAILABLE
    assert common.exit_code(learnact.images.ImageBuildError("x")) is common.ExitCode.FAILED
    assert common.exit_code(UnknownTask("t", "e")) is common.ExitCode.USAGE


# --- the command line: one line per error, a traceback for a bug -----------------------------------------


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)


@pytest.mark.usefixtures("no_engine")
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["check", "{tmp}/missing.py"], 2, "no such file: {tmp}/missing.py"),
        (["check", "{tmp}/ok.py", "--env", "nowhere"], 2, "unknown environment 'nowhere'; known: pddl/tyreworld"),
        (["sandbox", "exec", "{tmp}/ok.py", "--task", "0"], 2, "--task needs --env"),
        (["sandbox", "exec", "{tmp}/ok.py", "--env", "pddl/blockworld", "--task", "nope"], 2,
         "unknown task 'nope' in pddl/blockworld (10 tasks: blockworld-01"),
        (["sandbox", "exec", "{tmp}/ok.py"], 4, "no Docker engine answers"),
        (["eval", "--env", "alfworld", "--out", "{tmp}/run"], 2,
         "no ALFWorld data folder; give --alfworld-data or set $ALFWORLD_DATA"),
        (["eval", "--env", "pddl/blockworld", "--pddl-problems", "{tmp}/ok.py", "--out", "{tmp}/run"], 2,
         "'pddl/blockworld' has built-in problems; --pddl-domain and --pddl-problems are for the environment 'pddl'"),
        (["eval", "--env", "pddl", "--pddl-domain", "{tmp}/ok.py", "--pddl-problems", "{tmp}/empty", "--out",
          "{tmp}/run"], 2, "{tmp}/empty is a folder without .pddl files"),
        (["eval", "--env", "pddl/blockworld", "--tasks", "0", "--out", "{tmp}/run"], 4, "no Docker engine answers"),
    ],
)  # fmt: skip
def test_every_error_of_the_command_line_is_one_line_without_traceback(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    (tmp_path / "ok.py").write_text("print(1)\n")
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, [arg.format(tmp=tmp_path) for arg in args])
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message.format(tmp=tmp_path) in line, line
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bug", [RuntimeError("a bug"), ValueError("a bug"), KeyError("a bug")])
def test_a_bug_is_not_a_usage_error_and_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bug: Exception
) -> None:
    def broken(*args: object) -> None:
        raise bug

    monkeypatch.setattr(planning, "select_tasks", broken)
    result = CliRunner().invoke(app, ["eval", "--env", "pddl/blockworld", "--out", str(tmp_path / "run")])
    assert result.exception is bug and result.exit_code == 1
    assert "error:" not in result.stderr


def test_a_bug_prints_its_traceback_in_a_real_process(tmp_path: Path) -> None:
    program = (
        "import sys\n"
        "from learnact.engine.runs import planning\n"
        "from learnact.engine.commands.cli import app\n"
        "def broken(*args):\n"
        "    raise RuntimeError('a bug in select_tasks')\n"
        "planning.select_tasks = broken\n"
        "sys.argv = ['learnact', 'eval', '--env', 'pddl/blockworld', '--out', sys.argv[1]]\n"
        "app()\n"
    )
    done = subprocess.run([sys.executable, "-c", program, str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "RuntimeError: a bug in select_tasks" in done.stderr


# --- logging ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_engine")
def test_verbose_shows_log_lines_and_quiet_does_not() -> None:
    quiet = CliRunner().invoke(app, ["envs", "list", "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert "cannot count the tasks" not in quiet.stderr
    verbose = CliRunner().invoke(app, ["-v", "envs", "list", "--json"])
    assert verbose.exit_code == 0, verbose.output
    assert (
        "INFO learnact.engine.commands.envs: cannot count the tasks of alfworld: no ALFWorld data folder; "
        "give `alfworld_data`" in verbose.stderr
    )


def test_log_lines_show_untrusted_text_literally(capsys: pytest.CaptureFixture[str]) -> None:
    common.configure_logging(0)
    try:
        logging.getLogger("learnact.test").warning("runner said %s", "\x1b]0;pwned\x07\u202e[bold]x[/bold]")
        logging.getLogger("learnact.test").info("not shown without --verbose")
    finally:
        common.configure_logging(0)
    err = capsys.readouterr().err
    assert "WARNING learnact.test: runner said \\x1b]0;pwned\\x07\\u202e[bold]x[/bold]" in err
    assert "\x1b" not in err and "not shown" not in err


# --- what the option parser refuses is one line too -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["learn", "--method", "learnact", "--env", "pddl/blockworld", "--samples", "0"], "--samples"),
        (["eval", "--env", "pddl/blockworld", "--workers", "0"], "--workers"),
        (["eval", "--env", "pddl/blockworld", "--max-steps", "0"], "--max-steps"),
        (["eval", "--env", "pddl/blockworld", "--seeds", "0"], "--seeds"),
        (["actions", "show", ".", "x", "--version", "0"], "--version"),
        (["eval", "--env", "pddl/blockworld", "--model-timeout", "0"], "--model-timeout"),
        (["eval", "--env", "pddl/blockworld", "--no-such-flag"], "--no-such-flag"),
        (["eval"], "--env"),
    ],
)
def test_a_value_the_option_parser_refuses_is_one_line_naming_the_flag(args: list[str], flag: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert flag in result.stderr and "╭" not in result.stderr


@pytest.mark.parametrize("selection", ["", " ", ","])
def test_an_empty_task_selection_is_refused_not_taken_for_every_task(tmp_path: Path, selection: str) -> None:
    out = tmp_path / "run"
    args = ["eval", "--env", "pddl/blockworld", "--method", "expert", "--tasks", selection, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "chooses no task of pddl/blockworld" in result.stderr
    assert not out.exists()


def test_a_library_learned_on_another_environment_is_refused_up_front(tmp_path: Path) -> None:
    from learnact.actions.library import Library, Origin, VersionDraft

    library = Library(tmp_path / "lib")
    code = 'def two(a):\n    """Pick up and put down."""\n    pick(a)\n    drop(a)\n'
    library.new_version(
        VersionDraft(name="two", code=code, description="two", example="two('a')", origin=Origin.created)
    )
    library.select({"two": 1}, 1.0, "pddl/blockworld")
    args = ["eval", "--env", "pddl/gripper", "--method", "learnact", "--library", str(tmp_path / "lib")]
    args += ["--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "the library was learned on pddl/blockworld, not on pddl/gripper" in result.stderr
    assert not (tmp_path / "run").exists()
