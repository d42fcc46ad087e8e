"""The project's errors for bad input: the scripts print them as one line and exit with status 2.

Anything else that escapes a script is a bug and keeps its traceback. The messages name the input
(file, argument or config key), what was expected, what was found and what to do.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any, Iterator


class InputError(ValueError):
    """A file, argument or value given by the user that cannot be used."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class FileFormatError(InputError):
    """A file exists but does not hold what was expected: truncated, another format, or refused because
    loading it would import something other than tensors and plain containers."""


@contextlib.contextmanager
def reported_as_one_line(debug: bool = False) -> Iterator[None]:
    """Around a script's work: an :class:`InputError` is printed as ``error: …`` on stderr and the process exits
    with status 2 (argparse's status for bad usage); with ``debug`` it propagates with its traceback."""
    try:
        yield
    except InputError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def check_integer(name: str, value: Any, least: int) -> None:
    """Refuse anything but an integer ≥ ``least`` (a bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{name}: expected an integer ≥ {least}, found {value!r}")


def check_positive(name: str, value: Any) -> None:
    """Refuse anything but a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"{name}: expected a finite number > 0, found {value!r}")
