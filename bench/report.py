"""Markdown output of the benchmarks and its place in ``docs/benchmarks.md``.

Each benchmark owns one section of the document, between ``<!-- bench:NAME:start -->`` and
``<!-- bench:NAME:end -->``; ``--write`` replaces only that section (appends it the first time)
and leaves the hand-written text around it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sum_monai.utils.atomic import atomic_write_text

#: The results document.
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; cells are converted with ``str``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markers(name: str) -> tuple[str, str]:
    """Start and end comment lines delimiting the section of benchmark ``name``."""
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def replace_section(document: str, name: str, body: str) -> str:
    """``document`` with the section of ``name`` replaced by ``body`` (appended if absent)."""
    start, end = markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}"
    i, j = document.find(start), document.find(end)
    if i >= 0 and j > i:
        return document[:i] + block + document[j + len(end) :]
    return document.rstrip() + "\n\n" + block + "\n"


def write_section(name: str, body: str, doc: Path = DOC) -> Path:
    """Replace (or append) the section of ``name`` in ``doc``, atomically."""
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    return atomic_write_text(doc, replace_section(text, name, body))


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals, ``-`` for ``None``."""
    return "-" if value is None else f"{value:.{digits}f}"
