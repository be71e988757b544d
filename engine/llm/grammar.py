"""The grammars (GBNF, llama.cpp's format) that constrain what a model may answer, where learnact knows the form
of the answer it can use: an agent step is one call of one available action, a learner's create or fix answer
is Python function definitions.

A grammar fixes the *form* only: the model still chooses which action to call and every argument, and every
line of a function. It never encodes an answer. Whatever a grammar lets through is still untrusted: it is
parsed, checked and sandboxed as any answer is.

A grammar travels in the request (:attr:`ChatRequest.grammar`): the local backbone samples under it, and a
server that reads llama.cpp's ``grammar`` field (llama.cpp's own server) does too (see
:mod:`learnact.engine.llm.openai_backbone`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from learnact.actions.errors import LearnactError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The arguments of a call, as primitives and learned actions take them: strings, numbers, lists of them, by
# position or by keyword. Strings hold no quote of their kind, backslash or line break (no escape to get wrong).
# A list holds at most MAX_LIST_ITEMS values, or as many as the task has objects when that is known: a small model
# that repeats a list's items (['b4', 'b3', 'b2', 'b1', 'b3', 'b2', 'b1', ...]) would otherwise write until its
# answer is cut off (a cut answer holds no call at all), or to the cap, at several seconds a step.
MAX_LIST_ITEMS = 20


def _arguments(max_list_items: int) -> str:
    return rf"""args ::= arg ("," " "? arg)*
arg ::= (ident "=")? value
value ::= string | number | list
list ::= "[" (value ("," " "? value){{0,{max_list_items - 1}}})? "]"
string ::= "\"" [^"\\\n]* "\"" | "'" [^'\\\n]* "'"
number ::= "-"? [0-9]+ ("." [0-9]+)?
ident ::= [A-Za-z_] [A-Za-z0-9_]*
"""


class GrammarError(LearnactError):
    """A grammar cannot be made from what was given (an action name that is not a Python identifier)."""


def call_grammar(names: Sequence[str], thoughts: bool = False, max_list_items: int = MAX_LIST_ITEMS) -> str:
    """One agent step: exactly one line ``Name(args)`` calling one of ``names`` (the actions available in the
    step, learned first, then primitives), optionally after ``Action:`` as the prompt's history writes steps;
    with ``thoughts`` (react) a ``Think: …`` line instead, which the agent answers with ``OK.``. A list argument
    holds at most ``max_list_items`` values (capped at :data:`MAX_LIST_ITEMS`).

    :raises GrammarError: when ``names`` is empty or holds a name that is not a Python identifier, or when
        ``max_list_items`` is below 1.
    """
    step = 'step ::= ("Action: ")? name "(" args? ")"\n'
    root = 'root ::= step | "Think: " [^\\n]+\n' if thoughts else "root ::= step\n"
    return root + step + _names_and_arguments(names, max_list_items)


def call_lines_grammar(names: Sequence[str], max_lines: int) -> str:
    """A usage demonstration: one ```python block of 1 to ``max_lines`` lines, each one call of one of ``names``
    with literal arguments.

    :raises GrammarError: as :func:`call_grammar`, or when ``max_lines`` is below 1.
    """
    if max_lines < 1:
        raise GrammarError(f"a block of call lines holds at least one, not {max_lines}")
    return (
        f'root ::= "```python\\n" (call "\\n"){{1,{max_lines}}} "```"\n'
        + 'call ::= name "(" args? ")"\n'
        + _names_and_arguments(names)
    )


def _names_and_arguments(names: Sequence[str], max_list_items: int = MAX_LIST_ITEMS) -> str:
    if max_list_items < 1:
        raise GrammarError(f"a list argument may hold at least one value, not {max_list_items}")
    if not names:
        raise GrammarError("a grammar of calls needs at least one action name")
    bad = [name for name in names if not _NAME.fullmatch(name)]
    if bad:
        raise GrammarError(f"the action name {bad[0]!r} is not a Python identifier")
    alternatives = " | ".join(f'"{name}"' for name in dict.fromkeys(names))
    return f"name ::= {alternatives}\n" + _arguments(min(max_list_items, MAX_LIST_ITEMS))


# The indented lines of one function a learner's answer may hold, its docstring's among them (the worked examples
# have 5 to 12): a small model that repeats a line (gripper's learner wrote one about 330 times) would otherwise
# write one function to its token limit, and a cut answer is refused whole.
MAX_FUNCTION_LINES = 40


def definitions_grammar(max_functions: int) -> str:
    """The learner's create and fix answers: one ```python block of 1 to ``max_functions`` top-level function
    definitions (a ``def`` line and at most :data:`MAX_FUNCTION_LINES` indented body lines, the docstring among
    them; blank lines between), nothing else: no prose, no top-level statement. The closing fence is what lets
    the model end its answer: without it a model that wants to close the block can only write one more function,
    to the token limit. Whether the code parses and does what it says is the learner's check.

    :raises GrammarError: when ``max_functions`` is below 1.
    """
    if max_functions < 1:
        raise GrammarError(f"an answer of function definitions holds at least one, not {max_functions}")
    more = f" (blank* function){{0,{max_functions - 1}}}" if max_functions > 1 else ""
    return (
        f'root ::= "```python\\n" function{more} blank* "```"\n'
        'function ::= "def " ident "(" [^\\n]* ":" "\\n" body\n'
        f"body ::= line (blank* line){{0,{MAX_FUNCTION_LINES - 1}}}\n"
        + r"""line ::= ("    " | "\t") [^\n]* "\n"
blank ::= [ \t]* "\n"
ident ::= [A-Za-z_] [A-Za-z0-9_]*
"""
    )
