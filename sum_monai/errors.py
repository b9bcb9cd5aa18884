"""Errors that users see.

Every problem caused by input data is raised as :class:`DataError` naming the file and the problem,
so the CLI can print one clear line instead of a traceback. Validation collects many problems and
raises them together as :class:`DataErrors`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class SumMonaiError(Exception):
    """Base class of the errors the CLI reports as a clean message (exit status 2)."""


class DataError(SumMonaiError):
    """A problem with one input file or folder.

    Args:
        path: the file or folder at fault.
        problem: what is wrong with it, in words a user can act on.

    Example:
        >>> str(DataError("cases/a.png", "mask is 10x10 but its image is 20x20"))
        'cases/a.png: mask is 10x10 but its image is 20x20'
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataErrors(SumMonaiError):
    """Several :class:`DataError` found in one pass (validation reports all problems at once)."""

    def __init__(self, errors: Iterable[DataError], context: str = "") -> None:
        self.errors = list(errors)
        head = f"{len(self.errors)} problem(s) found" + (f" in {context}" if context else "")
        super().__init__(head + ":\n" + "\n".join(f"  - {e}" for e in self.errors))


class ConfigError(SumMonaiError):
    """A bundle, config or command-line setting that cannot work (e.g. missing bundle file)."""
