"""Reading untrusted code from a file or standard input with its size checked before anything else.

A file is refused from its size on disk, standard input after at most the limit's worth of bytes: no
parsing, decoding or copying of a large input ever starts (a 50 MB file is refused at once).
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path

from learnact.actions.errors import LearnactError
from learnact.actions.files import read_bounded
from learnact.actions.policy import MAX_CODE_CHARS

STDIN = "-"
BYTES_PER_CHAR = 4  # UTF-8: no character takes more


class InputError(LearnactError):
    """The input ``path`` (``-``: standard input) cannot be used: ``message`` names it and says why."""

    def __init__(self, path: str, message: str, remedy: str = "") -> None:
        self.path = path
        super().__init__(message, remedy)


def read_code(path: str | Path, limit_chars: int = MAX_CODE_CHARS) -> str:
    """The text of ``path`` (``-``: standard input) as UTF-8, at most ``limit_chars`` characters.

    :raises InputError: for a missing, unreadable or non-UTF-8 input, a directory, or one over the limit.
    """
    path = str(path)
    label = "standard input" if path == STDIN else path
    limit_bytes = limit_chars * BYTES_PER_CHAR
    limit = f"code may be at most {limit_chars} characters"
    too_large = InputError(path, f"{label} is too large: {limit}")
    if path == STDIN:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is not None:
            data = stream.read(limit_bytes + 1)
            if len(data) > limit_bytes:
                raise too_large
        else:  # a text stream (tests): read at most limit + 1 characters
            text = sys.stdin.read(limit_chars + 1)
            if len(text) > limit_chars:
                raise too_large
            return _universal_newlines(text)
    else:
        try:
            data = read_bounded(Path(path), limit_bytes)
        except FileNotFoundError:
            raise InputError(path, f"no such file: {label}") from None
        except IsADirectoryError:
            raise InputError(path, f"{label} is a directory", "give a Python file") from None
        except OSError as error:
            if error.errno == errno.EFBIG:
                raise too_large from None
            raise InputError(path, f"cannot read {label}: {error.strerror}", "give a Python file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(path, f"{label} is not UTF-8 text") from None
    if len(text) > limit_chars:
        raise too_large
    return _universal_newlines(text)


def _universal_newlines(text: str) -> str:
    """As a text-mode read gives it (so line numbers match any editor's)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
