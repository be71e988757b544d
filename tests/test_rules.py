"""The rule vocabulary: one enum of ids, one table of records, and a checker that reports only members
of the enum; `learnact check --list-rules` prints the table."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from typer.testing import CliRunner

from learnact.actions import RULES, RULES_BY_ID, CodeKind, RuleId, Severity, check, checker
from learnact.actions import rules as rules_module
from learnact.engine.commands.cli import app

CHECKER_SOURCE = Path(checker.__file__).read_text()


def test_every_rule_id_has_exactly_one_record_in_order() -> None:
    assert [rule.id for rule in RULES] == list(RuleId)
    assert list(RULES_BY_ID) == list(RuleId)
    assert [member.value for member in RuleId] == [f"LA{n:03d}" for n in range(1, len(RuleId) + 1)]
    for rule in RULES:
        assert rule.name == rule.id.name.replace("_", "-")
        assert rule.summary and rule.details and rule.why


def test_a_rule_id_reads_as_its_id() -> None:
    rule = RuleId.dangerous_builtin
    assert rule == "LA003" and str(rule) == f"{rule}" == "LA003"
    assert rule in {"LA003"} and RuleId("LA003") is rule


def test_findings_carry_rule_ids_and_serialise_as_the_id() -> None:
    [finding] = check("x = eval\n", CodeKind.agent_snippet)
    assert finding.rule is RuleId.dangerous_builtin
    assert finding.model_dump(mode="json")["rule"] == "LA003"
    assert finding.render("a.py") == f"a.py:1:5: LA003 {finding.message}"
    assert type(finding).model_validate_json(finding.model_dump_json()) == finding


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                ids.add(id(body[0].value))
    return ids


def test_the_checker_names_rules_by_enum_member_never_by_a_bare_id() -> None:
    tree = ast.parse(CHECKER_SOURCE)
    docstrings = _docstrings(tree)
    bare = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and re.search(r"\bLA\d{3}\b", node.value)
    ]
    assert bare == []
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "RuleId"
    }
    assert used == {member.name for member in RuleId}  # every rule is reported somewhere, no other


def test_the_rules_docstring_is_rendered_from_the_records() -> None:
    doc = " ".join((rules_module.__doc__ or "").split())
    for rule in RULES:
        assert f"{rule.id.value} {rule.name} {rule.severity.value}" in doc
        assert " ".join(f"{rule.details} ({rule.why})".split()) in doc


def test_every_family_handler_is_a_method_and_no_node_type_is_handled_twice_by_one_family() -> None:
    assert len(set(checker.FAMILIES)) == len(checker.FAMILIES)
    for family in checker.FAMILIES:
        for node_type, method in family.handles.items():
            assert issubclass(node_type, ast.AST) and callable(getattr(family, method))


def test_the_walk_visits_every_node_once_in_source_order() -> None:
    tree = ast.parse(CHECKER_SOURCE)
    nodes = [node for node in ast.walk(tree) if not isinstance(node, ast.expr_context)]  # Load/Store: no rule's
    seen: list[ast.AST] = []
    checker._walk(tree, {node_type: seen.append for node_type in {type(node) for node in nodes}})
    assert sorted(map(id, seen)) == sorted(map(id, nodes))
    statements = [node for node in seen if isinstance(node, ast.stmt)]
    assert [s.lineno for s in statements] == sorted(s.lineno for s in statements)


def invoke(*args: str):
    return CliRunner().invoke(app, ["check", *args])


def test_list_rules_prints_one_line_per_rule_from_the_records() -> None:
    result = invoke("--list-rules")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(RULES)
    for line, rule in zip(lines, RULES):
        assert line.split()[:3] == [rule.id.value, rule.name, rule.severity.value]
        assert line.endswith(rule.summary)
    assert any(" warning " in line for line in lines) and Severity.warning in {r.severity for r in RULES}


def test_list_rules_as_json_is_the_records() -> None:
    result = invoke("--list-rules", "--format", "json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [entry["id"] for entry in listed] == [rule.id.value for rule in RULES]
    for entry, rule in zip(listed, RULES):
        assert entry == {
            "id": rule.id.value,
            "name": rule.name,
            "severity": rule.severity.value,
            "summary": rule.summary,
            "details": rule.details,
            "why": rule.why,
        }


def test_list_rules_refuses_sarif_and_check_still_needs_a_path() -> None:
    assert invoke("--list-rules", "--format", "sarif").exit_code == 2
    result = invoke()
    assert result.exit_code == 2 and "PATH" in result.output
