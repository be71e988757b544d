"""Hostile files: a run folder or a library may have been handed over or planted. Nothing learnact writes
follows a link or writes through a hard link; nothing it reads blocks (a FIFO), streams forever (a device)
or is read past a limit counted while reading (a sparse file); what a reviewer reads of a library is what
runs (every version's sha256 verified, every ``.py`` compared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from learnact.actions.files import AppendLog, make_folders, read_bounded, write_atomic
from learnact.actions.library import Library, LibraryError, Origin, VersionDraft
from learnact.engine.llm import CallLog
from learnact.engine.rundir import FORMAT, RunDir, RunDirError, RunKind

PRECIOUS = "precious: not learnact's to touch\n"
ACTION = '''def stack_on(block, target):
    """Pick up block and stack it on target."""
    pickup(block)
    stack(block, target)
'''


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text(PRECIOUS)
    return path


def learnact(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "learnact.engine.commands.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def library_run(folder: Path) -> Path:
    """A run folder holding a finished library of one selected action on blockworld."""
    library = Library(folder / "library")
    library.new_version(
        VersionDraft(
            name="stack_on", code=ACTION, description="stack", example='stack_on("b1", "b2")', origin=Origin.created
        )
    )
    library.select({"stack_on": 1}, score=1.0, env="pddl/blockworld")
    return folder


# --- the file rules, one by one ----------------------------------------------------------------------------


def test_an_atomic_write_replaces_a_planted_link_and_never_writes_through_it(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").symlink_to(victim)
    write_atomic(tmp_path / "run" / "summary.json", "{}", root=tmp_path / "run")
    assert victim.read_text() == PRECIOUS
    assert not (tmp_path / "run" / "summary.json").is_symlink()
    assert (tmp_path / "run" / "summary.json").read_text() == "{}"


def test_a_link_on_the_way_below_the_root_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "library").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(OSError, match="symbolic link"):
        write_atomic(tmp_path / "run" / "library" / "library.json", "{}", root=tmp_path / "run")
    with pytest.raises(OSError, match="symbolic link"):
        read_bounded(tmp_path / "run" / "library" / "library.json", 100, root=tmp_path / "run")
    (tmp_path / "run" / "score").symlink_to(elsewhere, target_is_directory=True)  # a learning run's scoring
    with pytest.raises(OSError, match="symbolic link"):
        make_folders(tmp_path / "run", tmp_path / "run" / "score" / "round-0" / "candidate-0")
    assert list(elsewhere.iterdir()) == []


def test_a_log_refuses_a_symbolic_link_and_a_hard_link(tmp_path: Path, victim: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "calls.jsonl").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        AppendLog(run / "calls.jsonl", root=run, max_bytes=1000).append(b'{"x": "$(rm -rf ~)"}\n')
    os.unlink(run / "calls.jsonl")
    os.link(victim, run / "calls.jsonl")
    with pytest.raises(OSError, match="2 hard links"):
        AppendLog(run / "calls.jsonl", root=run, max_bytes=1000).append(b"{}\n")
    assert victim.read_text() == PRECIOUS


def test_the_call_log_and_the_episode_log_never_write_through_a_link(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "calls.jsonl").symlink_to(victim)
    (tmp_path / "episodes.jsonl").symlink_to(victim)
    with pytest.raises(RunDirError, match="calls.jsonl: it is a symbolic link"):
        CallLog(tmp_path).read()
    with pytest.raises(RunDirError, match="episodes.jsonl: it is a symbolic link"):
        RunDir(tmp_path).finished()
    assert victim.read_text() == PRECIOUS


def test_reads_refuse_a_fifo_and_a_device_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # no writer: a blocking open would wait forever
    started = time.monotonic()
    with pytest.raises(OSError, match="it is a FIFO, not a regular file"):
        read_bounded(tmp_path / "fifo", 1000, root=tmp_path)
    with pytest.raises(OSError, match="it is a character device, not a regular file"):
        read_bounded(Path("/dev/zero"), 1000)  # a file named by the user is opened as named, still refused
    assert time.monotonic() - started < 5


def test_a_sparse_file_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    sparse = tmp_path / "rounds.jsonl"
    with open(sparse, "wb") as f:
        f.truncate(64 << 30)  # 64 GiB that take no disk
    with pytest.raises(OSError, match="larger than 1,000,000 bytes"):
        read_bounded(sparse, 1_000_000, root=tmp_path)


def test_a_lock_file_someone_else_wrote_is_neither_truncated_nor_used(tmp_path: Path) -> None:
    (tmp_path / ".lock").write_text("my notes, not a lock\n")
    with pytest.raises(RunDirError, match="not a learnact lock file"):
        RunDir(tmp_path).lock()
    assert (tmp_path / ".lock").read_text() == "my notes, not a lock\n"


def test_a_busy_run_folder_names_the_command_that_holds_it(tmp_path: Path) -> None:
    holder = RunDir(tmp_path, RunKind.learnact)
    holder.lock()
    try:
        with pytest.raises(RunDirError, match=r"in use by another learnact learn \(pid \d+\)"):
            RunDir(tmp_path).lock()
    finally:
        holder.unlock()


def test_a_run_folder_another_process_creates_first_is_locked_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two evals started on one new folder: the one that finds it made between its look and its mkdir goes on to
    the lock, which decides which of them runs (it had stopped with "cannot create the run directory")."""
    out = tmp_path / "run"
    mkdir = Path.mkdir

    def made_by_the_other_process_first(self: Path, *args, **kwargs) -> None:
        if self == out and not out.exists():
            mkdir(out)
        mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", made_by_the_other_process_first)
    run = RunDir(out, RunKind.evaluation)
    run.lock()
    try:
        assert (out / ".lock").read_text().startswith(f"{os.getpid()} ")
    finally:
        run.unlock(discard_if_unused=True)
    assert out.is_dir()  # this process did not create it, so it does not remove it


def test_a_folder_locked_a_moment_before_its_holder_wrote_its_line_still_names_the_holder(tmp_path: Path) -> None:
    """The second of two evals on one new folder met the lock file created and locked but still empty, and said
    "pid unknown"."""
    import fcntl
    import threading

    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT | os.O_EXCL)
    fcntl.flock(fd, fcntl.LOCK_EX)
    writes = threading.Timer(0.2, lambda: os.pwrite(fd, b"4242 learn\n", 0))
    writes.start()
    try:
        with pytest.raises(RunDirError, match=r"in use by another learnact learn \(pid 4242\)"):
            RunDir(tmp_path).lock()
    finally:
        writes.join()
        os.close(fd)


def test_a_run_whose_folder_was_removed_under_it_still_releases_it(tmp_path: Path) -> None:
    """A learn stopped (SIGTERM) after its folder had been removed ended with a FileNotFoundError traceback."""
    import shutil

    out = tmp_path / "out"
    run = RunDir(out, RunKind.learnact)
    run.lock()
    shutil.rmtree(out)
    run.unlock(discard_if_unused=True)
    out.mkdir()
    RunDir(out, RunKind.learnact).lock()  # the lock was released: the folder can be taken again


# --- the commands, on a planted run folder ------------------------------------------------------------------


@pytest.mark.parametrize("name", [".lock", "episodes.jsonl", "config.json"])
def test_eval_refuses_a_run_folder_with_a_planted_link(tmp_path: Path, victim: Path, name: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"kind": "evaluation", "format": FORMAT}))  # a run of this version
    (out / name).symlink_to(victim)
    result = learnact("eval", "--env", "pddl/blockworld", "--method", "expert", "--tasks", "0", "--out", str(out))
    one_line_error(result, name, "symbolic link")
    assert victim.read_text() == PRECIOUS


@pytest.mark.parametrize(
    ("file", "plant"),
    [
        ("library/outcomes.jsonl", "/dev/zero"),
        ("library/library.json", "fifo"),
        ("library/rounds.jsonl", "sparse"),
        ("library", "link to a folder"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ["actions", "list", "{run}"],
        ["audit", "{run}"],
        ["check", "{run}"],
        ["report", "{run}"],
        ["eval", "--env", "pddl/blockworld", "--method", "learnact", "--library", "{run}", "--tasks", "0",
         "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--out", "{run}/eval"],
    ],
    ids=["actions list", "audit", "check DIR", "report", "eval --library"],
)  # fmt: skip
def test_every_reader_of_a_library_refuses_a_hostile_file_at_once(
    tmp_path: Path, file: str, plant: str, command: list[str]
) -> None:
    run = library_run(tmp_path / "run")
    path = run / file
    if plant == "link to a folder":
        os.rename(path, tmp_path / "real-library")
        path.symlink_to(tmp_path / "real-library", target_is_directory=True)
    else:
        path.unlink(missing_ok=True)
        if plant == "fifo":
            os.mkfifo(path)
        elif plant == "sparse":
            with open(path, "wb") as f:
                f.truncate(64 << 30)
        else:
            path.symlink_to(plant)
    started = time.monotonic()
    result = learnact(*(part.replace("{run}", str(run)) for part in command), timeout=60)
    one_line_error(result, path.name)
    assert time.monotonic() - started < 30


# --- what a reviewer reads is what runs ---------------------------------------------------------------------


def edit_recorded_code(run: Path) -> None:
    """Change the code of stack_on v1 in versions.jsonl, leaving its sha256 and its .py file as they were."""
    versions = run / "library" / "versions.jsonl"
    record = json.loads(versions.read_text())
    record["code"] = record["code"].replace("pickup(block)", "pickup(block)\n    import_everything()")
    versions.write_text(json.dumps(record) + "\n")


@pytest.mark.parametrize(
    "command",
    [
        ["actions", "show", "{run}", "stack_on"],
        ["check", "{run}"],
        ["audit", "{run}"],
        ["eval", "--env", "pddl/blockworld", "--method", "learnact", "--library", "{run}", "--tasks", "0",
         "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--out", "{run}/eval"],
    ],
    ids=["actions show", "check DIR", "audit", "eval --library"],
)  # fmt: skip
def test_a_version_edited_after_it_was_recorded_is_refused(tmp_path: Path, command: list[str]) -> None:
    run = library_run(tmp_path / "run")
    edit_recorded_code(run)
    result = learnact(*(part.replace("{run}", str(run)) for part in command))
    one_line_error(result, "does not match its sha256")


@pytest.mark.parametrize("command", [["check", "{run}"], ["audit", "{run}"]], ids=["check DIR", "audit"])
def test_a_code_file_that_differs_from_the_record_is_refused(tmp_path: Path, command: list[str]) -> None:
    run = library_run(tmp_path / "run")
    (run / "library" / "code" / "stack_on" / "v1.py").write_text(ACTION.replace("pickup", "putdown"))
    result = learnact(*(part.replace("{run}", str(run)) for part in command))
    one_line_error(result, "v1.py differs from the code of 'stack_on' v1")


def test_the_library_api_refuses_an_edited_version(tmp_path: Path) -> None:
    run = library_run(tmp_path / "run")
    edit_recorded_code(run)
    with pytest.raises(LibraryError, match="does not match its sha256"):
        Library.open_existing(run)


# --- run folders of one kind refuse another kind ------------------------------------------------------------

LEARN = ["learn", "--env", "pddl/blockworld", "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--no-cache"]


def test_a_run_folder_is_used_only_by_its_own_kind_of_command(tmp_path: Path) -> None:
    evaluation = tmp_path / "eval"
    made = learnact("eval", "--env", "pddl/blockworld", "--method", "expert", "--tasks", "0", "--out", str(evaluation))
    assert made.returncode == 0, made.stderr
    assert json.loads((evaluation / "run.json").read_text())["kind"] == "evaluation"
    for method in ("learnact", "act_reflexion"):
        refused = learnact(*LEARN, "--method", method, "--out", str(evaluation))
        one_line_error(refused, "holds an evaluation run (learnact eval), not a")
    assert sorted(p.name for p in evaluation.iterdir()) == sorted(
        [".lock", "run.json", "config.json", "splits.json", "episodes.jsonl", "summary.json"]
    )


def test_a_run_folder_of_an_earlier_format_is_refused_with_a_remedy_and_left_as_it_is(tmp_path: Path) -> None:
    learning = library_run(tmp_path / "learning")  # library/ with no run.json: an earlier learnact's run
    before = sorted(p.name for p in learning.iterdir())
    refused = learnact("eval", "--env", "pddl/blockworld", "--method", "expert", "--tasks", "0", "--out", str(learning))
    one_line_error(refused, "holds library of a run written by an earlier learnact (no run.json)")
    assert "rerun the command with another --out" in refused.stderr
    assert sorted(p.name for p in learning.iterdir()) == before
    evaluation = tmp_path / "eval"
    made = learnact("eval", "--env", "pddl/blockworld", "--method", "expert", "--tasks", "0", "--out", str(evaluation))
    assert made.returncode == 0, made.stderr
    (evaluation / "run.json").write_text(json.dumps({"kind": "evaluation", "format": 1}))
    refused = learnact(
        "eval", "--env", "pddl/blockworld", "--method", "expert", "--tasks", "0", "--out", str(evaluation)
    )
    one_line_error(refused, "holds a run folder of format 1")
