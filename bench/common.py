"""Shared helpers for benchmarks: print a table, merge figures into bench/results.json.

Every benchmark measures its baseline in the same run and prints both, since our machines are
shared and noisy: a ratio means something, a bare number from another day does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

RESULTS_PATH = Path(os.environ.get("TICKSTOCKPL_BENCH_RESULTS", Path(__file__).with_name("results.json")))


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned plain-text table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print(
            "  ".join(
                cell.rjust(width) if i else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))


def record(figures: Mapping[str, float]) -> None:
    """Merge flat "name": number pairs into bench/results.json (other benchmarks' keys are kept)."""
    existing: dict[str, float] = {}
    if RESULTS_PATH.exists():
        existing = json.loads(RESULTS_PATH.read_text())
    existing.update({name: round(float(value), 3) for name, value in figures.items()})
    RESULTS_PATH.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
