"""`learnact report`: the paper's table, Markdown, CSV and plots, from real run directories (the expert and
the act agent on a scripted OpenAI-compatible server, through the sandbox); its numbers are checked against
the episodes the runs recorded, and hand-edited, unfinished or mixed runs are refused with a remedy."""

from __future__ import annotations

import csv
import io
import json
import shutil
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer
from typer.testing import CliRunner

from learnact.actions.library import CandidateScore, Library, RoundRecord
from learnact.actions.text import visible
from learnact.engine import EvalConfig, RunSettings, run_evaluation
from learnact.engine.agents import call_code
from learnact.engine.commands.cli import app
from learnact.engine.llm import OpenAIBackbone
from learnact.engine.records import Method, ModelSettings, mean_and_std
from learnact.engine.reports.model import PlotFormat, Report, ReportError
from learnact.engine.reports.plots import plot_learning, plot_success
from learnact.engine.reports.render import render_csv
from learnact.engine.reports.table import build_report
from learnact.engine.rundir import EPISODES, SUMMARY
from learnact.envs import EnvSpec, make_env
from learnact.sandbox import SandboxConfig

pytestmark = pytest.mark.usefixtures("sandbox_image")

BLOCKS = EnvSpec(name="pddl/blockworld")
TASK = "blockworld-01"
# A model name is untrusted text from config.json: terminal escapes, Markdown and HTML, mathtext.
HOSTILE_MODEL = "m\x1b[31m|<b>$x$"


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def expert_run(out: Path, env: EnvSpec, tasks: tuple[str, ...], seeds: tuple[int, ...] = (0,)) -> Path:
    settings = RunSettings(env=env, sandbox=SandboxConfig(pool_size=1))
    run_evaluation(EvalConfig(run=settings, tasks=tasks, seeds=seeds), out)
    return out


def act_run(out: Path) -> Path:
    """act on blockworld-01 with two seeds: the model answers the expert's plan under seed 0 and an
    impossible action under seed 1, so the seeds' rates differ (a real standard deviation)."""
    env = make_env(BLOCKS)
    env.reset(TASK)
    plan = iter([call_code(name, args) for name, args in env.expert_calls()])

    def answer(body: dict) -> Answer:
        return Answer(next(plan, "Pickup('b9')") if body.get("seed") == 0 else "Pickup('b9')")

    with ScriptedServer(responder=answer) as server:
        settings = RunSettings(
            env=BLOCKS,
            method=Method.act,
            max_steps=30,
            sandbox=SandboxConfig(pool_size=1),
            model=ModelSettings(model=HOSTILE_MODEL, base_url=server.base_url),
        )
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=2.0, max_retries=1)
        run_evaluation(EvalConfig(run=settings, tasks=(TASK,), seeds=(0, 1)), out, backbone=backbone)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real runs, made once: the expert on blockworld (2 tasks × 2 seeds) and on gripper, act on blockworld."""
    base = tmp_path_factory.mktemp("runs")
    return {
        "expert-blocks": expert_run(base / "expert-blocks", BLOCKS, ("blockworld-01", "blockworld-02"), (0, 1)),
        "expert-gripper": expert_run(base / "expert-gripper", EnvSpec(name="pddl/gripper"), ("gripper-01",)),
        "act-blocks": act_run(base / "act-blocks"),
    }


def recorded(run: Path) -> list[dict]:
    """The latest record of each (task, seed), read straight from episodes.jsonl."""
    latest: dict[tuple[str, int], dict] = {}
    for line in (run / EPISODES).read_text().splitlines():
        record = json.loads(line)
        latest[record["task"], record["seed"]] = record
    return list(latest.values())


def expected(run: Path, field: str) -> tuple[float, float]:
    """Mean and sample std over seeds of the per-seed rate of ``field``, from the records."""
    records = recorded(run)
    seeds = sorted({r["seed"] for r in records})
    rates = [
        sum(float(r[field]) for r in records if r["seed"] == s) / sum(r["seed"] == s for r in records) for s in seeds
    ]
    return mean_and_std(rates)


def tokens(run: Path) -> int:
    return sum(r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] for r in recorded(run))


# --- the table ---------------------------------------------------------------------------------------------


def test_the_table_holds_mean_and_std_over_seeds_from_the_records(runs: dict[str, Path]) -> None:
    report = build_report([runs["expert-blocks"], runs["expert-gripper"], runs["act-blocks"]])
    assert report.benchmark == "pddl"
    assert report.columns == ["blockworld", "gripper"]
    assert [(row.method, row.model) for row in report.rows] == [(Method.expert, None), (Method.act, HOSTILE_MODEL)]
    expert, act = report.rows
    assert set(expert.cells) == {"blockworld", "gripper"} and set(act.cells) == {"blockworld"}

    act_cell = act.cells["blockworld"]
    success, progress = expected(runs["act-blocks"], "success"), expected(runs["act-blocks"], "progress")
    assert (act_cell.success.mean, act_cell.success.std) == pytest.approx(success)
    assert (act_cell.progress.mean, act_cell.progress.std) == pytest.approx(progress)
    assert success == pytest.approx((0.5, 0.5**0.5))  # seed 0 solved it, seed 1 did not: a real spread
    assert (act_cell.seeds, act_cell.tasks, act_cell.episodes) == (2, 1, 2)

    blocks = expert.cells["blockworld"]
    assert (blocks.seeds, blocks.tasks, blocks.episodes) == (2, 2, 4)
    assert (blocks.success.mean, blocks.success.std) == pytest.approx(expected(runs["expert-blocks"], "success"))
    assert expert.usage is None
    assert act.usage is not None and act.usage.prompt_tokens + act.usage.completion_tokens == tokens(runs["act-blocks"])
    assert act.usage.calls == len(recorded(runs["act-blocks"])[0]["steps"]) + len(
        recorded(runs["act-blocks"])[1]["steps"]
    )
    assert any("different tasks" in warning for warning in report.warnings)  # act ran 1 task, the expert 2


def test_markdown_csv_and_terminal_through_the_cli(runs: dict[str, Path], tmp_path: Path) -> None:
    md, table = tmp_path / "t.md", tmp_path / "t.csv"
    result = CliRunner().invoke(
        app, ["report", str(runs["expert-blocks"]), str(runs["act-blocks"]), "--markdown", str(md), "--csv", str(table)]
    )
    assert result.exit_code == 0, result.output
    success, progress = expected(runs["act-blocks"], "success"), expected(runs["act-blocks"], "progress")
    act_cell = f"{100 * success[0]:.1f} ± {100 * success[1]:.1f} / {100 * progress[0]:.1f} ± {100 * progress[1]:.1f}"

    # the terminal: the numbers, and the hostile model name made visible (no escape sequence reaches it)
    success_text, progress_text = act_cell.split(" / ")  # on a terminal, one over the other in the cell
    assert f"│ act    │ m\\x1b[31m|<b>$x$ │     2 │ {success_text} │" in result.stdout
    assert f"│ {progress_text} │" in result.stdout and "\x1b" not in result.stdout

    # Markdown: one table row per method, the model name escaped (no HTML, no extra cell)
    text = md.read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0] == "| method | model | seeds | blockworld | learned actions | tokens | cost (USD) |"
    assert lines[1].startswith("| expert | – | 2 | 100.0 ± 0.0 / 100.0 ± 0.0 | – | – | – |")
    act_line = lines[2]
    assert act_line.startswith(r"| act | m\\x1b\[31m\|\<b\>$x$ | 2 | " + act_cell + " | ")
    assert f"| {tokens(runs['act-blocks']):,} | 0.0000 |" in act_line
    assert "<b>" not in text and "mean ± sample standard deviation over seeds" in text

    # CSV: fractions at full precision, the model name as text
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert [row["method"] for row in rows] == ["expert", "act"]
    assert rows[1]["model"] == visible(HOSTILE_MODEL)
    assert float(rows[1]["blockworld_success_mean"]) == pytest.approx(success[0])
    assert float(rows[1]["blockworld_success_std"]) == pytest.approx(success[1])
    assert float(rows[1]["blockworld_progress_std"]) == pytest.approx(progress[1])
    assert int(rows[1]["prompt_tokens"]) + int(rows[1]["completion_tokens"]) == tokens(runs["act-blocks"])
    assert rows[0]["prompt_tokens"] == "" and rows[0]["blockworld_episodes"] == "4"


def test_json_prints_only_the_report(runs: dict[str, Path]) -> None:
    given = [str(runs["expert-blocks"]), str(runs["act-blocks"])]
    result = CliRunner().invoke(app, ["report", *given, "--json"])
    assert result.exit_code == 0, result.output
    assert Report.model_validate_json(result.stdout) == build_report([Path(p) for p in given])


def test_a_run_given_twice_counts_once(runs: dict[str, Path]) -> None:
    run = runs["act-blocks"]
    twice = build_report([run, run.parent / ".." / run.parent.name / run.name])
    assert twice == build_report([run])
    assert len(twice.rows) == 1 and twice.rows[0].runs == [str(run)]


def test_csv_defuses_spreadsheet_formulas(runs: dict[str, Path]) -> None:
    report = build_report([runs["act-blocks"]])
    hostile = report.model_copy(update={"rows": [report.rows[0].model_copy(update={"model": "=HYPERLINK(1)"})]})
    assert next(csv.DictReader(io.StringIO(render_csv(hostile))))["model"] == "'=HYPERLINK(1)"


# --- plots ----------------------------------------------------------------------------------------------


def svg_texts(data: bytes) -> list[str]:
    root = ElementTree.fromstring(data)
    return ["".join(element.itertext()) for element in root.iter("{http://www.w3.org/2000/svg}text")]


def library_with_rounds(path: Path) -> Path:
    """A library written through the library's API: round 0 (2 candidates), round 1 better, round 2 lower
    and rolled back."""
    library = Library(path / "library")
    scores = [(0, [0.5, 1.25], 1, 1.25, False), (1, [1.25, 2.0], 1, 2.0, False), (2, [2.0, 1.5], 0, 2.0, True)]
    for number, candidate_scores, best, best_score, rolled_back in scores:
        candidates = [
            CandidateScore(candidate=i, actions={}, score=s, components={"success": s}, successes=0, tasks=3)
            for i, s in enumerate(candidate_scores)
        ]
        library.record_round(
            RoundRecord(round=number, candidates=candidates, best=best, best_score=best_score, rolled_back=rolled_back)
        )
    library.select({}, 2.0, "pddl/blockworld")
    return path


def test_out_writes_report_files_and_svg_plots_with_the_methods_and_rounds(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    learning = library_with_rounds(tmp_path / "learn")
    out = tmp_path / "report"
    args = ["report", str(runs["expert-blocks"]), str(runs["act-blocks"]), str(learning), str(learning / "library")]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--format", "svg"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["learning.svg", "report.csv", "report.md", "success.svg"]

    success_texts = svg_texts((out / "success.svg").read_bytes())
    assert "expert" in success_texts and f"act · {visible(HOSTILE_MODEL)}" in success_texts  # no mathtext
    assert "blockworld" in success_texts and "success rate (%)" in success_texts
    learning_texts = svg_texts((out / "learning.svg").read_bytes())
    assert {"best", "candidate", "rolled back", "learning round"} <= set(learning_texts)
    assert any(text.startswith("learn (pddl/blockworld)") for text in learning_texts)

    text = (out / "report.md").read_text()
    assert "![success](success.svg)" in text and "![learning](learning.svg)" in text
    assert text.count("| 2 | 2.000 | 2.000, 1.500 | yes |") == 1  # the library given twice is one curve
    assert "| 1 | 2.000 | 1.250, 2.000 |  |" in text
    assert "round" in result.stdout and "rolled back" in result.stdout


def test_png_plots_are_images_of_their_size(runs: dict[str, Path], tmp_path: Path) -> None:
    report = build_report([runs["expert-blocks"], runs["expert-gripper"], library_with_rounds(tmp_path)])
    for data in (plot_success(report, PlotFormat.png), plot_learning(report, PlotFormat.png)):
        assert data is not None and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
        width, height = struct.unpack(">II", data[16:24])
        assert 300 < width < 6000 and 200 < height < 3000
    assert plot_learning(build_report([runs["expert-blocks"]]), PlotFormat.png) is None  # no learning run, no plot


# --- refusals ----------------------------------------------------------------------------------------------


def report_error(args: list[str]) -> str:
    result = CliRunner().invoke(app, ["report", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    return result.stderr


def test_a_folder_that_is_not_a_run_and_a_run_without_summary(runs: dict[str, Path], tmp_path: Path) -> None:
    assert "is not a run directory" in report_error([str(tmp_path)])
    assert "does not exist; give the --out folder of a learnact eval run" in report_error([str(tmp_path / "nope")])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs["act-blocks"], unfinished)
    (unfinished / SUMMARY).unlink()
    message = report_error([str(unfinished)])
    assert "has no summary.json: it has not finished" in message and "run the same learnact eval command" in message


def test_a_hand_edited_summary_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(runs["act-blocks"], edited)
    summary = json.loads((edited / SUMMARY).read_text())
    summary["results"][1]["success"] = True  # seed 1 made to look solved, its stated rates left as they were
    (edited / SUMMARY).write_text(json.dumps(summary))
    with pytest.raises(ReportError, match="states rates for all episodes that its results do not give"):
        build_report([edited])
    summary["results"][1]["progress"] = 7.0
    (edited / SUMMARY).write_text(json.dumps(summary))
    with pytest.raises(ReportError, match="impossible result"):
        build_report([edited])
    (edited / SUMMARY).write_text("{")
    assert "is not a run's summary" in report_error([str(edited)])


def test_two_runs_of_one_method_on_one_domain_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(runs["expert-gripper"], copy)
    message = report_error([str(runs["expert-gripper"]), str(copy)])
    assert "both give expert on gripper" in message and "give one run per method and domain" in message


def test_format_without_out_is_refused(runs: dict[str, Path]) -> None:
    assert "--format is the format of the plots" in report_error([str(runs["act-blocks"]), "--format", "svg"])


@pytest.mark.slow
def test_alfworld_runs_have_a_column_per_task_type_and_mix_with_no_pddl_run(
    runs: dict[str, Path], alfworld_data: Path, tmp_path: Path
) -> None:
    spec = EnvSpec(name="alfworld", alfworld_data=str(alfworld_data), split="valid_seen")
    by_type: dict[str, str] = {}
    for task in make_env(spec).tasks():
        by_type.setdefault(task.type, task.id)
    chosen = (by_type["put"], by_type["clean"])
    run = expert_run(tmp_path / "alf", spec, chosen)
    report = build_report([run])
    assert report.benchmark == "alfworld" and report.columns == ["put", "clean", "all"]
    records = recorded(run)
    (row,) = report.rows
    for column, task in (("put", chosen[0]), ("clean", chosen[1])):
        (record,) = [r for r in records if r["task"] == task]
        assert row.cells[column].success.mean == float(record["success"])
        assert row.cells[column].progress.mean == pytest.approx(record["progress"])
    assert row.cells["all"].episodes == 2
    assert row.cells["all"].success.mean == pytest.approx(sum(r["success"] for r in records) / 2)
    message = report_error([str(run), str(runs["expert-gripper"])])
    assert "different benchmarks" in message and "report each benchmark's runs separately" in message


@pytest.mark.slow
def test_learn_eval_and_report_end_to_end_through_the_cli(tmp_path: Path) -> None:
    """A real LearnAct learning run (the learner's scripted stand-in of tests/test_learnact.py), the act
    baseline and the learned library evaluated, then reported: a row per method, the library's rounds."""
    from test_learnact import StandIn

    runner = CliRunner()
    with ScriptedServer(responder=StandIn()) as server:
        common = ["--model", "m", "--base-url", server.base_url, "--cache-dir", str(tmp_path / "cache")]
        learn = ["learn", "--method", "learnact", "--env", "pddl/blockworld", "--seed", "2", "--train-per-type", "1"]
        learned = runner.invoke(app, [*learn, "--samples", "1", "--out", str(tmp_path / "learn"), *common])
        assert learned.exit_code == 0, learned.output
        evaluate = ["eval", "--env", "pddl/blockworld", "--tasks", TASK, "--seeds", "2", "--max-steps", "5"]
        for method, extra in (("act", []), ("learnact", ["--library", str(tmp_path / "learn")])):
            where = ["--out", str(tmp_path / method)]
            result = runner.invoke(app, [*evaluate, "--method", method, *extra, *where, *common])
            assert result.exit_code == 0, result.output

    out = tmp_path / "report"
    result = runner.invoke(
        app, ["report", str(tmp_path / "act"), str(tmp_path / "learnact"), str(tmp_path / "learn"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    assert [(row["method"], row["model"]) for row in rows] == [("act", "m"), ("learnact", "m")]
    for row, method in zip(rows, ("act", "learnact")):
        run = tmp_path / method
        assert len(recorded(run)) == 2  # one task, two seeds
        success = (float(row["blockworld_success_mean"]), float(row["blockworld_success_std"]))
        assert success == pytest.approx(expected(run, "success"))
        assert int(row["prompt_tokens"]) == sum(r["usage"]["prompt_tokens"] for r in recorded(run))
    # the learned action solves it; act, without it, answers calls of an action it does not have
    assert (rows[0]["blockworld_success_mean"], rows[1]["blockworld_success_mean"]) == ("0.0", "1.0")
    # the mechanism: learnact's steps called its learned action (from the records), act has none
    learned = [r["learned"] for r in recorded(tmp_path / "learnact")]
    steps, worked = sum(u["learned_steps"] for u in learned), sum(u["learned_ok"] for u in learned)
    assert steps > 0 and rows[1]["learned_steps"] == str(steps) and rows[0]["learned_steps"] == ""
    assert float(rows[1]["learned_worked_share"]) == pytest.approx(worked / steps)
    acted = sum(u["learned_acted"] for u in learned)
    assert acted >= worked and float(rows[1]["learned_acted_share"]) == pytest.approx(acted / steps)

    rounds = Library.open_existing(tmp_path / "learn").rounds()
    assert rounds
    text = (out / "report.md").read_text()
    for record in rounds:
        scores = ", ".join(f"{c.score:.3f}" for c in record.candidates)
        assert f"| {record.round} | {record.best_score:.3f} | {scores} |" in text
    assert (out / "learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # what learning cost: the learner's calls and the scoring agent's, from every call log of the learning run
    logs = [tmp_path / "learn" / "calls.jsonl", *(tmp_path / "learn" / "score").rglob("calls.jsonl")]
    calls = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    learned_tokens = sum(
        c["response"]["usage"]["prompt_tokens"] + c["response"]["usage"]["completion_tokens"] for c in calls
    )
    assert len(logs) > 1 and learned_tokens > 0
    assert f"learning: {len(calls)} model calls, {learned_tokens:,} tokens" in text

    # A kill drops a scoring episode after its calls were logged (a resume runs it again), and tears the
    # log's last line: the cost counts the calls of recorded episodes, and the log stays readable.
    scoring_log = logs[1]
    with scoring_log.open("a") as f:
        f.write(scoring_log.read_text().splitlines()[0] + "\n" + '{"episode": "torn')
    again = CliRunner().invoke(app, ["report", str(tmp_path / "learn"), "--markdown", str(tmp_path / "again.md")])
    assert again.exit_code == 0, again.output
    assert f"learning: {len(calls)} model calls, {learned_tokens:,} tokens" in (tmp_path / "again.md").read_text()


def test_an_interrupted_run_is_reported_with_a_warning(tmp_path: Path) -> None:
    gripper = EnvSpec(name="pddl/gripper")
    run = expert_run(tmp_path / "run", gripper, ("gripper-01",))

    def interrupt(record: object) -> None:
        raise KeyboardInterrupt

    settings = RunSettings(env=gripper, sandbox=SandboxConfig(pool_size=1))
    with pytest.raises(KeyboardInterrupt):  # the summary of the first run stays: it lacks gripper-02
        run_evaluation(EvalConfig(run=settings, tasks=("gripper-01", "gripper-02")), run, on_episode=interrupt)
    report = build_report([run])
    assert report.rows[0].cells["gripper"].episodes == 1
    assert any("1 selected episode(s) are not in its summary" in warning for warning in report.warnings)
