"""The one way the benchmarks print their figures: a fixed-width table, first column left-aligned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def print_table(headers: Sequence[str], formats: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``formats``: a format spec per numeric column after the first (e.g. ``8.2f``, ``8d``); ``""`` for text."""
    width = max(len(str(r[0])) for r in rows)
    numeric = [max(len(h), 8) for h in headers[1:]]
    print(
        "  ".join(
            [headers[0].ljust(width)] + [h.rjust(n) if f else h for h, f, n in zip(headers[1:], formats, numeric)]
        )
    )
    for row in rows:
        cells = [str(row[0]).ljust(width)]
        cells += [format(value, f).rjust(n) if f else str(value) for value, f, n in zip(row[1:], formats, numeric)]
        print("  ".join(cells))
