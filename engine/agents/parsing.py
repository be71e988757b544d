"""Model answers into decisions: one line of code, a thought, or nothing usable.

The answer is untrusted text: code fences and ``Action:`` prefixes are stripped and the first line that
parses as Python and calls something is taken (else the first that parses as a statement other than a
bare name); whatever it is, the sandbox's check and the sandbox decide what happens to it. Nothing here
executes or evaluates the text.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

MAX_LINE_CHARS = 2000
MAX_PROGRAM_CHARS = 20000  # a longer program answer is not run
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
_PREFIX = re.compile(r"^\s*(?:action\s*:\s*)+", re.IGNORECASE)
_THINK = re.compile(r"^\s*think\s*:\s*", re.IGNORECASE)
_STOP = re.compile(r"^\s*observation\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    """``code`` (a line to run) or ``thought`` (react), or neither: the answer held nothing usable."""

    code: str | None = None
    thought: str | None = None


def _lines(text: str) -> list[str]:
    """The answer's lines, fences removed, up to the first ``Observation:`` the model wrote itself."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if _STOP.match(line):
            break
        if line.strip().startswith("```"):
            continue
        if line.strip():
            kept.append(line.strip()[:MAX_LINE_CHARS])
    return kept


def _statement(line: str) -> ast.stmt | None:
    try:
        tree = ast.parse(line, mode="exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    return tree.body[0] if len(tree.body) == 1 else None


def parse_answer(text: str, thoughts: bool = False) -> Parsed:
    """Parse a model's answer; ``thoughts``: a leading ``Think:`` line is a thought (react)."""
    lines = _lines(text)
    if thoughts and lines and _THINK.match(lines[0]):
        return Parsed(thought=_THINK.sub("", lines[0], count=1).strip())
    candidates = [_PREFIX.sub("", line).strip() for line in lines]
    candidates = [c for c in candidates if c and not (thoughts and _THINK.match(c))]
    fallback: str | None = None
    for line in candidates:
        statement = _statement(line)
        if statement is None:
            continue
        if any(isinstance(node, ast.Call) for node in ast.walk(statement)):
            return Parsed(code=line)
        if fallback is None and not (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Name)):
            fallback = line
    return Parsed(code=fallback)


def parse_program(text: str) -> str | None:
    """A whole program (code_as_policy) from a model's answer: the first fenced block if there is one,
    else the whole text; None when it is empty or longer than MAX_PROGRAM_CHARS. Not checked here: the
    sandbox's checker decides whether it runs."""
    text = text.replace("\r\n", "\n")
    fenced = _FENCE.search(text)
    if fenced is None and text.lstrip().startswith("```"):  # an unclosed fence: what follows it
        fenced_text = text.lstrip().split("\n", 1)[1] if "\n" in text.lstrip() else ""
    else:
        fenced_text = fenced.group(1) if fenced is not None else text
    program = textwrap.dedent(fenced_text.strip("\n")).rstrip()
    if not program.strip() or len(program) > MAX_PROGRAM_CHARS:
        return None
    return program + "\n"
