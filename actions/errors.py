"""The root of every error learnact raises on purpose, in the lowest room so that every layer can use it.

A :class:`LearnactError` is something a caller can act on: a missing file, an unknown task, a sandbox
that cannot start. Each room defines typed subclasses that keep their fields and build their own
message from them (``UnknownTask.task``, ``SandboxUnavailable.backend``, ``RunDirBusy.pid``, ...);
catching ``LearnactError`` catches all of them and nothing else, so a bug (a ``TypeError``, a
``KeyError`` from a typo) keeps its traceback.

A message has two parts: ``message`` says what is wrong and may quote untrusted text (a path, a task
id, an exception of a library); ``remedy``, optional, says what to do. A remedy is written by the
library; in it ``{name}`` stands for a parameter: :meth:`LearnactError.describe` writes it as the
Python parameter (`` `pddl_problems` ``) for ``str(error)``, and the command line passes its own
naming, so that the same error tells a user of the CLI which flag to give (``--pddl-problems``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

Naming = Callable[[str], str]


def parameter(name: str) -> str:
    """How a library message names a parameter: as written in Python, in backticks."""
    return f"`{name}`"


# A parameter in a remedy: ``{pddl_problems}``. Any other brace is text.
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


class LearnactError(Exception):
    """An error of learnact that a caller can handle; ``str(error)`` is one line saying what is wrong
    and, where it helps, what to do."""

    def __init__(self, message: str, remedy: str = "") -> None:
        self.message = message
        self.remedy = remedy
        super().__init__(self.describe())

    def describe(self, naming: Naming = parameter) -> str:
        """The message and its remedy, each parameter the remedy names written by ``naming``."""
        if not self.remedy:
            return self.message
        return f"{self.message}; {_PLACEHOLDER.sub(lambda m: naming(m.group(1)), self.remedy)}"

    def __reduce__(self) -> tuple:
        # Subclasses take their fields, not the message: copy and pickle the instance as it is.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[LearnactError], state: dict) -> LearnactError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error.describe())
    return error
