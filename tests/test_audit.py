"""`learnact actions`, `learnact check DIR` and `learnact audit`: a library built through its API (as the
learner writes one) read back on the terminal and as one self-contained HTML page, which headless
Chromium loads: the page shows every version, change and call, and model-written text that tries to break
out of the page (``</pre><script>``, an event handler, a bidirectional override) is shown, never run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnact.actions import CodeKind, check
from learnact.actions.library import CallOutcome, CandidateScore, Feedback, Library, Origin, RoundRecord, VersionDraft
from learnact.engine.commands.cli import app
from learnact.engine.reports.audit import build_audit
from learnact.engine.reports.audit_html import audit_html
from learnact.envs import primitive_specs

ENV = "pddl/blockworld"
PRIMITIVES = primitive_specs(ENV)
ATTACK = "</pre><script>document.title='PWNED'</script><img src=x onerror=\"document.title='PWNED'\">"
BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: would reorder the code a reviewer reads

STACK_V1 = '''def stack_on(block, target):
    """Pick up block and stack it on target."""
    Pickup(block)
    Stack(block, target)
'''
STACK_V2 = '''def stack_on(block, target):
    """Pick up block and stack it on target, clearing it first."""
    Unstack(block, "b9")
    Pickup(block)
    Stack(block, target)
'''
# A later, hostile version: the model's code tries to close the page's <pre> and run a script.
STACK_V3 = f'''def stack_on(block, target):
    """Pick up block and stack it on target. {ATTACK}"""
    Pickup(block)
    Stack(block, target)  # {BIDI}done
'''
CLEAR_V1 = '''def clear_block(block):
    """Take whatever is on block off it."""
    Unstack(top_of(block), block)
    Putdown(top_of(block))
'''
CLEAR_V2 = '''def clear_block(block, top):
    """Take top off block."""
    Unstack(top, block)
    Putdown(top)
'''
TRACEBACK = (
    'Traceback (most recent call last):\n  File "<action>", line 3, in clear_block\n'
    "NameError: name 'top_of' is not defined"
)
BROKEN = "def tower(blocks:\n    pass\n"


def created(name: str, code: str, description: str, example: str = 'stack_on("b1", "b2")') -> VersionDraft:
    """A version as Create writes it (the call create-0), with the static checker's verdict."""
    verdict = tuple(check(code, CodeKind.action_module, PRIMITIVES))
    return VersionDraft(name, code, description, example, Origin.created, call_id="create-0", verdict=verdict)


def score_round_zero(library: Library) -> CallOutcome:
    """Round 0 scored: stack_on v1's call failed on problem1 and worked on problem2, clear_block v2's worked; the
    set kept. The failed call."""
    failed = CallOutcome(
        name="stack_on",
        version=1,
        phase="score",
        round=0,
        candidate=0,
        task="problem1",
        step=2,
        code='stack_on("b1", "b2")',
        ok=False,
        status="ok",
        error="Pickup: b1 is not clear",
        primitive_steps=['Pickup("b1")  -> b1 is not clear', 'Stack("b1", "b2")  -> you are not holding b1'],
    )
    library.record_outcomes(
        [
            failed,
            failed.model_copy(update={"task": "problem2", "ok": True, "error": None, "primitive_steps": []}),
            CallOutcome(
                name="clear_block",
                version=2,
                phase="score",
                task="problem1",
                step=1,
                code='clear_block("b2", "b1")',
                ok=True,
                status="ok",
            ),
        ]
    )
    library.record_round(
        RoundRecord(
            round=0,
            candidates=[
                CandidateScore(
                    candidate=0,
                    actions={"stack_on": 1, "clear_block": 2},
                    score=1.25,
                    components={"step_correction": 0.25, "call_ratio": 0.5, "success": 0.5},
                    successes=1,
                    tasks=2,
                )
            ],
            best=0,
            best_score=1.25,
        )
    )
    library.select({"stack_on": 1, "clear_block": 2}, 1.25, ENV)
    return failed


def build_library(path: Path) -> Library:
    """The library of a two-round LearnAct run on blockworld: stack_on created, updated after a failed call,
    then rewritten (hostile) and rolled back; clear_block fixed after a finding; tower dropped."""
    library = Library(path)
    stack_v1 = created("stack_on", STACK_V1, "stack block on target")
    library.new_version(stack_v1)
    clear_v1 = library.new_version(created("clear_block", CLEAR_V1, "clear a block", 'clear_block("b2")'))
    assert clear_v1.verdict  # top_of is not defined: a real finding
    finding = Feedback(kind="finding", text="\n".join(f.render("clear_block.py") for f in clear_v1.verdict))
    fixed = created("clear_block", CLEAR_V2, "take top off block", 'clear_block("b2", "b1")')
    library.new_version(replace(fixed, origin=Origin.validated_fix, parent=1, call_id="validate-1", feedback=finding))
    tower = created("tower", BROKEN, "build a tower", 'tower(["b1"])')
    library.new_version(replace(tower, dropped="still failing after 3 fixes: LA001 syntax error"))
    failed = score_round_zero(library)
    failed_call = Feedback(
        kind="failed_call",
        text="Pickup: b1 is not clear (the call's 1st primitive step)",
        trajectory=f'> stack_on("b1", "b2")\nPickup: b1 is not clear\n{ATTACK}',
    )
    update = {"origin": Origin.update, "call_id": "optimise-1", "parent": 1, "round": 1, "feedback": failed_call}
    library.new_version(replace(created("stack_on", STACK_V2, "stack block on target, unstacking it first"), **update))
    hostile = replace(created("stack_on", STACK_V3, f"stack {ATTACK}"), notes=(f"note {ATTACK}",))
    traceback = Feedback(kind="traceback", text=f"Traceback: {ATTACK}")
    second = {**update, "call_id": "optimise-2", "parent": 2, "round": 2, "feedback": traceback}
    library.new_version(replace(hostile, **second))
    library.record_outcomes(
        [
            failed.model_copy(
                update={"version": 3, "round": 2, "candidate": 1, "code": f"stack_on('{ATTACK}')", "error": ATTACK}
            )
        ]
    )
    library.record_round(
        RoundRecord(
            round=2,
            candidates=[
                CandidateScore(
                    candidate=1,
                    actions={"stack_on": 3, "clear_block": 2},
                    score=0.5,
                    components={"success": 0.5},
                    successes=1,
                    tasks=2,
                )
            ],
            best=1,
            best_score=1.25,
            rolled_back=True,
        )
    )
    library.new_version(replace(stack_v1, origin=Origin.rollback, call_id=None, parent=1, round=2))
    library.select({"stack_on": 4, "clear_block": 2}, 1.25, ENV)
    return library


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    build_library(tmp_path / "run" / "library")
    return tmp_path / "run"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


# --- learnact actions --------------------------------------------------------------------------------


def test_actions_list_shows_every_action_with_its_selected_version(run_dir: Path) -> None:
    result = invoke("actions", "list", str(run_dir))
    assert result.exit_code == 0, result.output
    assert "3 actions, 2 selected (env pddl/blockworld, score 1.250)" in result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert set(rows) >= {"stack_on", "clear_block", "tower"}
    assert "v4" in rows["stack_on"] and "stack_on(block, target)" in rows["stack_on"]
    assert "1/3" in rows["stack_on"]  # one of its three calls worked
    assert "│ -" in rows["tower"]  # not selected
    listed = json.loads(invoke("actions", "list", str(run_dir / "library"), "--json").output)
    assert listed["selected"] == {"stack_on": 4, "clear_block": 2}
    assert [a["versions"] for a in listed["actions"]] == [4, 2, 1]


def test_actions_show_prints_a_version_with_its_origin_verdict_and_code(run_dir: Path) -> None:
    result = invoke("actions", "show", str(run_dir), "clear_block", "--version", "1")
    assert result.exit_code == 0, result.output
    assert "clear_block v1\n" in result.output and "origin: created, round 0, model call create-0" in result.output
    assert "clear_block/v1.py:3:13: LA006 'top_of' is not defined" in result.output  # a real finding
    assert "    Unstack(top_of(block), block)" in result.output
    selected = invoke("actions", "show", str(run_dir), "stack_on")
    assert "stack_on v4 (from v1) [selected]" in selected.output and "origin: rollback" in selected.output
    shown = json.loads(invoke("actions", "show", str(run_dir), "tower", "--json").output)
    assert shown["dropped"].startswith("still failing") and shown["signature"] == ""


def test_actions_show_makes_control_characters_visible(run_dir: Path) -> None:
    result = invoke("actions", "show", str(run_dir), "stack_on", "--version", "3")
    assert result.exit_code == 0
    assert BIDI not in result.output and "\\u202edone" in result.output
    assert ATTACK in result.output  # on a terminal it is plain text


def test_actions_history_lists_versions_with_parents_origins_and_feedback(run_dir: Path) -> None:
    result = invoke("actions", "history", str(run_dir), "stack_on")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if re.match(r"│ v\d", line)]
    assert [row.split("│")[3].strip() for row in rows] == ["created", "update", "update", "rollback"]
    assert "(selected)" in rows[3] and "failed_call: Pickup: b1 is not clear" in rows[1]
    assert "0/1" in rows[2]  # v3's one call failed
    versions = json.loads(invoke("actions", "history", str(run_dir), "stack_on", "--json").output)
    assert [(v["version"], v["parent"]) for v in versions] == [(1, None), (2, 1), (3, 2), (4, 1)]


def test_actions_diff_shows_the_change_against_the_parent_or_a_given_version(run_dir: Path) -> None:
    result = invoke("actions", "diff", str(run_dir), "stack_on", "--version", "2")
    assert result.exit_code == 0, result.output
    assert "--- stack_on/v1.py\n+++ stack_on/v2.py\n" in result.output
    assert '+    Unstack(block, "b9")\n' in result.output
    assert "-stack block on target\n+stack block on target, unstacking it first\n" in result.output
    same = invoke("actions", "diff", str(run_dir), "stack_on", "--against", "1")  # v4 (selected) is v1's code
    assert "stack_on: v1 and v4 are the same" in same.output
    first = invoke("actions", "diff", str(run_dir), "tower")
    assert first.exit_code == 2 and "has no parent" in first.output and "--against" in first.output


def test_actions_refuse_what_is_not_a_library_an_action_or_a_version(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke("actions", "list", str(tmp_path / "empty"))
    assert result.exit_code == 2 and "is not an action library" in result.output
    assert "run folder" in result.output
    unknown = invoke("actions", "show", str(run_dir), "nope")
    assert unknown.exit_code == 2 and "no action 'nope'" in unknown.output
    assert invoke("actions", "history", str(run_dir), "nope").exit_code == 2
    missing = invoke("actions", "show", str(run_dir), "stack_on", "--version", "9")
    assert missing.exit_code == 2 and "has no version 9 (it has 1..4)" in missing.output


# --- learnact check DIR ------------------------------------------------------------------------------


def test_check_a_library_checks_the_selected_version_of_every_action(run_dir: Path) -> None:
    clean = invoke("check", str(run_dir))
    assert clean.exit_code == 0, clean.output
    assert "2 actions (selected versions) checked as action modules against the primitives of pddl/blockworld" in (
        clean.output
    )
    library = Library.open_existing(run_dir)
    library.select({"stack_on": 4, "clear_block": 1}, None, ENV)  # clear_block v1 calls top_of
    result = invoke("check", str(run_dir), "--format", "json")
    assert result.exit_code == 1
    findings = json.loads(result.output)
    assert {f["action"] for f in findings} == {"clear_block"} and {f["version"] for f in findings} == {1}
    assert all(f["path"].endswith("code/clear_block/v1.py") for f in findings)
    sarif = json.loads(invoke("check", str(run_dir), "--format", "sarif").output)
    locations = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]]
    assert locations and all(uri.endswith("code/clear_block/v1.py") for uri in locations)
    text = invoke("check", str(run_dir))
    assert "code/clear_block/v1.py:3:13: LA006 'top_of' is not defined" in text.output
    assert ": 2 errors, 0 warnings" in text.output


def test_check_a_library_without_an_environment_names_every_primitive_call(tmp_path: Path) -> None:
    library = Library(tmp_path / "lib")
    library.new_version(VersionDraft(name="stack_on", code=STACK_V1, description="", example="", origin=Origin.created))
    bare = invoke("check", str(tmp_path / "lib"))
    assert bare.exit_code == 1 and "latest (nothing selected yet)" in bare.output and "give --env" in bare.output
    assert invoke("check", str(tmp_path / "lib"), "--env", ENV).exit_code == 0


# --- learnact audit: terminal ---------------------------------------------------------------------------


def test_audit_prints_versions_changes_verdicts_feedback_calls_and_rounds(run_dir: Path) -> None:
    result = invoke("audit", str(run_dir))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "env: pddl/blockworld" in out and "selected set's score: 1.250" in out
    assert "created → update → update → rollback" in out
    assert "below the previous best: rolled back" in out
    assert "v2 ← v1  update  round 1  call optimise-1" in out
    assert '+    Unstack(block, "b9")' in out  # the change
    assert "feedback (finding):" in out and "top_of" in out
    assert "dropped: still failing after 3 fixes" in out
    assert "failed calls (2 of 3):" in out and "task problem1 step 2 v1" in out
    assert "\\u202edone" in out and BIDI not in out
    as_json = invoke("audit", str(run_dir), "--json").output
    assert BIDI not in as_json and "\\u202edone" in as_json  # JSON escapes it
    dumped = json.loads(as_json)
    assert [v["version"]["origin"] for v in dumped["actions"][0]["versions"]] == [
        "created",
        "update",
        "update",
        "rollback",
    ]


def test_audit_of_what_is_not_a_library_fails_with_usage_status(tmp_path: Path) -> None:
    result = invoke("audit", str(tmp_path), "--html", str(tmp_path / "a.html"))
    assert result.exit_code == 2 and "is not an action library" in result.output
    assert not (tmp_path / "a.html").exists()


# --- learnact audit: the page ------------------------------------------------------------------------


def test_the_page_escapes_every_untrusted_string_and_loads_nothing(run_dir: Path) -> None:
    page = audit_html(build_audit(run_dir))
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert not re.search(r"<[^>]*\bon[a-z]+\s*=", page, re.IGNORECASE), "no tag carries an event handler"
    assert page.count(ATTACK) == 0
    assert "&lt;/pre&gt;&lt;script&gt;document.title=&#x27;PWNED&#x27;&lt;/script&gt;" in page
    assert BIDI not in page and "\\u202edone" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page), "the page must fetch nothing"
    assert "<link" not in page


def chromium() -> str:
    """The headless browser (Debian's chromium); missing: skipped, a failure under CI=true."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = "chromium is not installed (apt-get install chromium; .ci/engine installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def dump_dom(page: Path, tmp_path: Path) -> str:
    """The DOM of ``page`` after Chromium loaded it (and ran whatever it would run)."""
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # as root (CI); the page is our own file and runs no script
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=2000",  # let any timer or handler the page might hold fire first
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_headless_chromium_would_show_a_script_that_ran(tmp_path: Path) -> None:
    """The check below is sound: a page whose script runs shows its effect in the dumped DOM."""
    page = tmp_path / "runs.html"
    page.write_text("<html><head><title>before</title></head><body><script>document.title='RAN'</script></body>")
    assert "<title>RAN</title>" in dump_dom(page, tmp_path)


def test_the_page_in_headless_chromium_shows_the_audit_and_runs_no_model_script(run_dir: Path, tmp_path: Path) -> None:
    page = tmp_path / "audit.html"
    result = invoke("audit", str(run_dir), "--html", str(page))
    assert result.exit_code == 0, result.output
    assert f"audit page: {page}" in result.output
    dom = dump_dom(page, tmp_path)

    assert "PWNED" not in dom.split("<body")[0]  # the title was not changed by any script
    assert "<title>learnact audit:" in dom
    assert len(re.findall(r"<script\b", dom)) == 0  # no script element from the data exists
    assert len(re.findall(r"<img\b", dom)) == 0
    assert not re.search(r"<[^>]*\bon[a-z]+\s*=", dom, re.IGNORECASE), "no element carries an event handler"
    # The attack text is there, as text: escaped in the serialised DOM.
    assert "&lt;/pre&gt;&lt;script&gt;document.title='PWNED'&lt;/script&gt;&lt;img src=x onerror=" in dom
    assert "\\u202edone" in dom and BIDI not in dom

    for name in ("stack_on", "clear_block", "tower"):
        assert f'<section id="action-{name}">' in dom
    for version in (1, 2, 3, 4):
        assert f'id="action-stack_on-v{version}"' in dom
    assert 'id="action-clear_block-v2"' in dom and 'id="action-tower-v1"' in dom
    # diff lines of v2 against v1, of v4 (the rollback) against v1: no change
    assert '<span class="add">+    Unstack(block, "b9")</span>' in dom
    assert '<span class="file">--- stack_on/v1.py</span>' in dom
    assert "no change from v1" in dom
    # the feedback behind the fix, the verdicts, the calls, the rounds
    assert "Feedback behind this version (finding)" in dom and "top_of" in dom
    assert "Feedback behind this version (failed_call)" in dom
    assert "still failing after 3 fixes" in dom
    assert "Pickup: b1 is not clear" in dom and "primitive steps inside" in dom
    assert "below the previous best: rolled back" in dom
    assert "step_correction 0.250" in dom


def test_the_page_as_a_person_sees_it(run_dir: Path, tmp_path: Path) -> None:
    """A screenshot of the page renders (the file is kept for a look: LEARNACT_AUDIT_SCREENSHOT)."""
    page = tmp_path / "audit.html"
    page.write_text(audit_html(build_audit(run_dir)), encoding="utf-8")
    shot = Path(os.environ.get("LEARNACT_AUDIT_SCREENSHOT", tmp_path / "audit.png"))
    subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400", f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True, timeout=120, check=True, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
