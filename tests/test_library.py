"""The action library: every version kept with its parent, sha256 and code file; atomic writes; a killed
write (a torn last line) loses nothing already written; a library that is not one is refused."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from learnact.actions import check
from learnact.actions.library import (
    ActionVersion,
    CallOutcome,
    CandidateScore,
    Feedback,
    Library,
    LibraryError,
    Origin,
    RoundRecord,
    VersionDraft,
)
from learnact.actions.models import ActionSet, CodeKind, LearnedAction

STACK_V1 = '''def stack_on(block, target):
    """Pick up block and stack it on target."""
    pickup(block)
    stack(block, target)
'''
STACK_V2 = '''def stack_on(block, target):
    """Unstack whatever holds block, then stack it on target."""
    unstack_any(block)
    pickup(block)
    stack(block, target)
'''
CLEAR = '''def clear_all(blocks):
    """Put every block on the table."""
    for b in blocks:
        unstack(b, "table")
        putdown(b)
'''
TRACEBACK = 'Traceback (most recent call last):\n  File "<action>", line 3, in stack_on\nNameError: unstack_any'


def build(path: Path) -> Library:
    """A library with two actions: stack_on created, fixed, then annotated; clear_all created."""
    library = Library(path)
    example = 'stack_on("b1", "b2")'
    first = VersionDraft("stack_on", STACK_V1, "stack a block", example, Origin.created, call_id="call-1")
    library.new_version(first)
    fixed = replace(first, code=STACK_V2, description="stack a block, unstacking it first", parent=1)
    traceback = Feedback(kind="traceback", text=TRACEBACK)
    verdict = tuple(check(STACK_V2, CodeKind.action_module))
    library.new_version(
        replace(fixed, origin=Origin.validated_fix, call_id="call-2", feedback=traceback, verdict=verdict)
    )
    failed = Feedback(kind="failed_call", text="stack failed: b2 is not clear", trajectory="> stack_on(b1, b2)")
    note = ("call it only when block is clear",)
    library.new_version(
        replace(fixed, origin=Origin.plan_note, notes=note, parent=2, call_id="call-3", round=1, feedback=failed)
    )
    library.new_version(VersionDraft("clear_all", CLEAR, "clear", 'clear_all(["b1"])', Origin.created))
    return library


def test_versions_are_numbered_per_action_with_their_parents_hashes_and_code_files(tmp_path: Path) -> None:
    library = build(tmp_path / "lib")
    assert library.names() == ["stack_on", "clear_all"]
    versions = library.versions("stack_on")
    assert [(v.version, v.parent, v.origin) for v in versions] == [
        (1, None, Origin.created),
        (2, 1, Origin.validated_fix),
        (3, 2, Origin.plan_note),
    ]
    assert library.versions("clear_all")[0].version == 1
    for version in versions:
        assert version.sha256 == hashlib.sha256(version.code.encode()).hexdigest()
        assert (tmp_path / "lib/code/stack_on" / f"v{version.version}.py").read_text() == version.code
    assert versions[0].signature == "stack_on(block, target)"
    assert versions[1].feedback == Feedback(kind="traceback", text=TRACEBACK)
    assert [f.rule.value for f in versions[1].verdict] == [f.rule.value for f in check(STACK_V2, "action_module")]
    assert versions[2].notes == ("call it only when block is clear",) and versions[2].round == 1
    assert library.versions("unknown") == []


def test_everything_reads_back_from_the_files(tmp_path: Path) -> None:
    written = build(tmp_path / "lib")
    written.select({"stack_on": 3, "clear_all": 1}, 1.5, "pddl/blockworld")
    again = Library.open_existing(tmp_path / "lib")
    assert again.versions("stack_on") == written.versions("stack_on")
    assert again.selected() == {"stack_on": 3, "clear_all": 1}
    assert (again.env(), again.score()) == ("pddl/blockworld", 1.5)
    lines = (tmp_path / "lib/versions.jsonl").read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["stack_on"] * 3 + ["clear_all"]


def test_the_selected_set_is_what_an_agent_gets(tmp_path: Path) -> None:
    library = build(tmp_path / "lib")
    assert library.current() == ActionSet()
    library.select({"stack_on": 3, "clear_all": 1}, None, "pddl/blockworld")
    current = library.current()
    assert current.names() == ["stack_on", "clear_all"]
    assert current.actions[0] == LearnedAction(
        name="stack_on",
        code=STACK_V2,
        description="stack a block, unstacking it first",
        example='stack_on("b1", "b2")',
        notes=("call it only when block is clear",),
        version=3,
    )
    assert library.get("stack_on").version == 3
    assert library.get("stack_on", 1).code == STACK_V1
    library.select({"stack_on": 1}, 0.5, "pddl/blockworld")  # a rollback selects an earlier version
    assert library.current().names() == ["stack_on"] and library.get("stack_on").version == 1
    assert Library.open_existing(tmp_path / "lib").selected() == {"stack_on": 1}


def test_unknown_actions_versions_and_selections_are_refused(tmp_path: Path) -> None:
    library = build(tmp_path / "lib")
    with pytest.raises(LibraryError, match="no action 'nope'.*stack_on, clear_all"):
        library.get("nope", 1)
    with pytest.raises(LibraryError, match="has no version 4 .*1..3"):
        library.get("stack_on", 4)
    with pytest.raises(LibraryError, match="not in the selected set"):
        library.get("stack_on")
    with pytest.raises(LibraryError, match="has no version 9"):
        library.select({"stack_on": 9}, 1.0, "pddl/blockworld")
    assert not (tmp_path / "lib/library.json").exists()
    with pytest.raises(LibraryError, match="parent .* must be one of its earlier versions"):
        library.new_version(
            VersionDraft(name="stack_on", code=STACK_V1, description="", example="", origin=Origin.update, parent=4)
        )
    assert len(library.versions("stack_on")) == 3


def test_a_model_written_name_cannot_leave_the_library_folder(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    for name in ("../escape", "a/b", "", "x" * 101, "é"):
        with pytest.raises(LibraryError, match="name"):
            library.new_version(
                VersionDraft(name=name, code="def f():\n    pass\n", description="", example="", origin=Origin.created)
            )
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "lib").exists() or list((tmp_path / "lib").rglob("*")) == []


def test_untrusted_text_is_made_encodable_and_feedback_bounded(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    huge = "E" * 200_000
    odd = VersionDraft("odd", "def odd():\n    return '\ud800'\n", "lone \udcff surrogate", "odd()", Origin.created)
    version = library.new_version(replace(odd, feedback=Feedback(kind="traceback", text=huge)))
    assert "\\ud800" in version.code and "\\udcff" in version.description
    assert len(version.feedback.text.encode()) <= 64_000 and version.feedback.text.endswith("bytes]")
    assert Library.open_existing(tmp_path / "lib").get("odd", 1) == version
    outcome = CallOutcome(
        name="odd", version=1, phase="test", task="t", step=0, code="x" * 100_000, ok=False, status="error",
        error="\udc80", primitive_steps=["y" * 50_000] * 300,
    )  # fmt: skip
    assert len(outcome.code.encode()) <= 16_000 and outcome.error == "\\udc80"
    assert len(outcome.primitive_steps) == 200 and all(len(step) <= 16_000 for step in outcome.primitive_steps)
    library.record_outcomes([outcome])
    assert Library.open_existing(tmp_path / "lib").outcomes() == [outcome]


def test_signature_is_empty_for_code_that_does_not_parse(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    broken = library.new_version(VersionDraft("broken", "def broken(:\n", "", "", Origin.created))
    assert broken.signature == "" and broken.code == "def broken(:\n"
    two = "def helper(a):\n    '''h'''\n\ndef outer(x, *ys, k=1):\n    '''o'''\n"
    helper = library.new_version(VersionDraft("outer", two, "", "", Origin.created))
    assert helper.signature == "outer(x, *ys, k=1)"


def test_outcomes_and_rounds_are_appended_and_read_back(tmp_path: Path) -> None:
    library = build(tmp_path / "lib")
    failed = CallOutcome(
        name="stack_on",
        version=1,
        phase="score",
        round=0,
        candidate=2,
        task="problem1",
        step=3,
        code='stack_on("b1", "b2")',
        ok=False,
        status="error",
        error="NameError: name 'x' is not defined",
        primitive_steps=['pickup("b1")  # You pick up b1.'],
    )
    worked = failed.model_copy(update={"version": 3, "phase": "test", "ok": True, "status": "ok", "error": None})
    other = failed.model_copy(update={"name": "clear_all"})
    library.record_outcomes([failed, worked])
    library.record_outcomes([other])
    library.record_outcomes([])
    assert library.outcomes() == [failed, worked, other]
    assert library.outcomes("stack_on") == [failed, worked]
    scores = [
        CandidateScore(
            candidate=0, actions={"stack_on": 1}, score=0.5, components={"success": 0.5}, successes=1, tasks=2
        ),
        CandidateScore(
            candidate=1, actions={"stack_on": 2}, score=1.0, components={"success": 1.0}, successes=2, tasks=2
        ),
    ]
    first = RoundRecord(round=0, candidates=scores, best=1, best_score=1.0)
    second = RoundRecord(round=1, candidates=scores[:1], best=1, best_score=1.0, rolled_back=True)
    library.record_round(first)
    library.record_round(second)
    assert Library.open_existing(tmp_path / "lib").rounds() == [first, second]


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path: Path) -> None:
    library = build(tmp_path / "lib")
    versions_file = tmp_path / "lib/versions.jsonl"
    whole = versions_file.read_bytes()
    torn = json.dumps(library.versions("stack_on")[0].model_dump(mode="json"))[:57].encode()
    versions_file.write_bytes(whole + torn)  # a write killed half-way
    reopened = Library.open_existing(tmp_path / "lib")
    assert reopened.names() == ["stack_on", "clear_all"] and len(reopened.versions("stack_on")) == 3
    added = reopened.new_version(
        VersionDraft(name="clear_all", code=CLEAR + "\n", description="", example="", origin=Origin.update)
    )
    assert added.version == 2
    assert versions_file.read_bytes().startswith(whole) and torn not in versions_file.read_bytes()
    assert Library.open_existing(tmp_path / "lib").versions("clear_all")[-1] == added

    outcomes_file = tmp_path / "lib/outcomes.jsonl"
    outcomes_file.write_bytes(b'{"name": "stack_on", "vers')
    assert reopened.outcomes() == []
    outcome = CallOutcome(name="stack_on", version=1, phase="test", task="t", step=0, code="x", ok=True, status="ok")
    reopened.record_outcomes([outcome])
    assert Library.open_existing(tmp_path / "lib").outcomes() == [outcome]


def test_writes_are_atomic_replacements_leaving_no_temporary_files(tmp_path: Path) -> None:
    library = build(tmp_path / "lib")
    manifest = tmp_path / "lib/library.json"
    library.select({"stack_on": 1}, 0.0, "pddl/blockworld")
    inode = manifest.stat().st_ino
    library.select({"stack_on": 2}, 1.0, "pddl/blockworld")
    assert manifest.stat().st_ino != inode  # replaced by a rename, never rewritten in place
    assert json.loads(manifest.read_text()) == {
        "format": 1,
        "env": "pddl/blockworld",
        "selected": {"stack_on": 2},
        "score": 1.0,
        "learning": None,
        "usage": None,
    }
    leftovers = [p.name for p in (tmp_path / "lib").rglob(".*")]
    assert leftovers == []


def test_a_write_that_fails_says_so_and_changes_no_record(tmp_path: Path) -> None:
    library = build(tmp_path / "lib")
    versions_file = tmp_path / "lib/versions.jsonl"
    before = versions_file.read_bytes()
    # versions.jsonl made a folder: the append cannot open it.
    os.replace(versions_file, tmp_path / "saved.jsonl")
    versions_file.mkdir()
    with pytest.raises(LibraryError, match="cannot write .*versions.jsonl"):
        library.new_version(
            VersionDraft(name="clear_all", code=CLEAR, description="", example="", origin=Origin.update)
        )
    versions_file.rmdir()
    os.replace(tmp_path / "saved.jsonl", versions_file)
    assert versions_file.read_bytes() == before
    assert Library.open_existing(tmp_path / "lib").versions("clear_all")[-1].version == 1


def test_open_existing_accepts_a_run_folder_holding_the_library(tmp_path: Path) -> None:
    build(tmp_path / "run" / "library")
    assert Library.open_existing(tmp_path / "run").path == tmp_path / "run" / "library"
    assert Library.found_at(tmp_path / "run") == Library.found_at(tmp_path / "run/library") == tmp_path / "run/library"
    assert Library.found_at(tmp_path) is None


def test_open_existing_refuses_what_is_not_a_readable_library(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="does not exist") as missing:
        Library.open_existing(tmp_path / "missing")
    assert "run folder" in missing.value.remedy
    (tmp_path / "file").write_text("x")
    with pytest.raises(LibraryError, match="is not a folder"):
        Library.open_existing(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LibraryError, match="is not an action library"):
        Library.open_existing(tmp_path / "empty")

    bad_manifest = tmp_path / "bad_manifest"
    bad_manifest.mkdir()
    (bad_manifest / "library.json").write_text("{not json")
    with pytest.raises(LibraryError, match="library.json is not valid JSON"):
        Library.open_existing(bad_manifest)
    (bad_manifest / "library.json").write_text('{"format": 1, "env": "x", "selected": {}, "rogue": 1}')
    with pytest.raises(LibraryError, match="not a library manifest .*rogue"):
        Library.open_existing(bad_manifest)
    (bad_manifest / "library.json").write_text('{"format": 2, "env": "x", "selected": {}}')
    with pytest.raises(LibraryError, match="format 2.*reads format 1") as newer:
        Library.open_existing(bad_manifest)
    assert newer.value.remedy == "use a newer learnact"

    build(tmp_path / "lib")
    lines = (tmp_path / "lib/versions.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "lib/versions.jsonl").write_text(lines[0] + '{"name": "stack_on"}\n' + "".join(lines[1:]))
    with pytest.raises(LibraryError, match="versions.jsonl:2 is not an action version .*version"):
        Library.open_existing(tmp_path / "lib")
    (tmp_path / "lib/versions.jsonl").write_text(lines[0] + lines[2])  # version 3 right after version 1
    with pytest.raises(LibraryError, match="versions.jsonl:2 is version 3 of 'stack_on'; the next one should be 2"):
        Library.open_existing(tmp_path / "lib")
    (tmp_path / "lib/versions.jsonl").write_text("".join(lines))
    (tmp_path / "lib/rounds.jsonl").write_text('{"round": -1}\n')
    with pytest.raises(LibraryError, match="rounds.jsonl:1 is not a learning round"):
        Library.open_existing(tmp_path / "lib")


def test_diff_shows_code_description_and_notes_changes(tmp_path: Path) -> None:
    library = build(tmp_path / "lib")
    code_change = library.diff("stack_on", 1, 2)
    assert code_change.startswith("--- stack_on/v1.py\n+++ stack_on/v2.py\n@@ ")
    assert "+    unstack_any(block)\n" in code_change
    assert '-    """Pick up block and stack it on target."""\n' in code_change
    assert "--- stack_on/v1 description\n+++ stack_on/v2 description\n" in code_change
    assert "-stack a block\n+stack a block, unstacking it first\n" in code_change
    assert "notes" not in code_change
    note_change = library.diff("stack_on", 2, 3)
    assert ".py" not in note_change  # the code did not change
    assert note_change.endswith("+call it only when block is clear\n")
    assert library.diff("stack_on", 3, 3) == ""
    no_newline = library.new_version(
        VersionDraft(
            name="clear_all",
            code=CLEAR.rstrip("\n"),
            description="clear",
            example='clear_all(["b1"])',
            origin=Origin.update,
            parent=1,
        )
    )
    assert library.diff("clear_all", 1, no_newline.version) == ""  # only the final newline differs
    with pytest.raises(LibraryError, match="no version 7"):
        library.diff("stack_on", 1, 7)


def test_action_version_records_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        ActionVersion.model_validate(
            {
                "name": "a",
                "version": 1,
                "parent": None,
                "code": "",
                "signature": "",
                "description": "",
                "example": "",
                "sha256": "0" * 64,
                "origin": "created",
                "call_id": None,
                "rogue": True,
            }
        )


def test_a_full_disk_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    library = build(tmp_path / "lib")
    real_fsync = os.fsync

    def full(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("outcomes.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    outcome = CallOutcome(name="clear_all", version=1, phase="score", task="t", step=0, code="x", ok=True, status="ok")
    with pytest.raises(
        LibraryError, match=r"cannot write .*outcomes.jsonl: No space left on device \(the disk is full\)"
    ):
        library.record_outcomes([outcome])
    assert (tmp_path / "lib" / "outcomes.jsonl").read_bytes() == b""
