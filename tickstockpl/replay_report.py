"""What `tickstockpl replay` found (ReplayResult), and how it prints it: a summary for people, or one
JSON object for machines (`--json`).

The summary stays readable whatever the number of symbols: patterns by name, the top symbols,
totals, bars rejected by reason, and which confidence filter `--publish` used.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class ReplayResult:
    files: list[str] = field(default_factory=list)
    bars: int = 0  # handed to the engine (rejects included)
    accepted: int = 0  # bars that passed the engine's checks: none means no usable row at all
    rows: int = 0  # data rows read from the files
    by_pattern: Counter[str] = field(default_factory=Counter)  # every signal, whatever its confidence
    by_symbol: Counter[str] = field(default_factory=Counter)
    symbols: int = 0  # distinct symbols in the files
    series: int = 0  # (symbol, bar length) pairs the engine judged
    rejected: Counter[str] = field(default_factory=Counter)
    late: int = 0  # bars older than some already replayed (files overlapping out of order)
    empty_files: list[str] = field(default_factory=list)
    publish: bool = False
    min_confidence: float | None = None  # the filter --publish used
    published: int = 0
    held_back: int = 0  # detected, but below the minimum confidence for publishing
    elapsed_s: float = 0.0

    @property
    def signals(self) -> int:
        return self.by_pattern.total()


def as_dict(result: ReplayResult) -> dict[str, Any]:
    """Every figure of a replay, as plain JSON types."""
    return {
        "files": result.files,
        "rows": result.rows,
        "bars": result.bars,
        "symbols": result.symbols,
        "series": result.series,
        "patterns": result.signals,
        "by_pattern": dict(result.by_pattern.most_common()),
        "by_symbol": dict(result.by_symbol.most_common()),
        "rejected": dict(sorted(result.rejected.items())),
        "rejected_total": result.rejected.total(),
        "late_bars": result.late,
        "files_without_bars": result.empty_files,
        "publish": {
            "enabled": result.publish,
            "min_confidence": result.min_confidence,
            "published": result.published,
            "held_back": result.held_back,
        },
        "elapsed_s": round(result.elapsed_s, 3),
        "bars_per_s": round(result.bars / result.elapsed_s) if result.elapsed_s > 0 else None,
    }


def json_report(result: ReplayResult) -> str:
    return orjson.dumps(as_dict(result)).decode()


def text_report(result: ReplayResult, top: int = 10) -> str:
    """The summary: totals, patterns by name, the `top` symbols, rejects, what --publish did."""
    if result.empty_files:
        lines = [f"replay: no usable bar in {path}" for path in result.empty_files]
        if result.rejected:
            lines.append(f"rejected rows: {_reasons(result.rejected)}")
        return "\n".join(lines)
    rate = f", {result.bars / result.elapsed_s:,.0f} bars/s" if result.elapsed_s > 0 else ""
    lines = [
        f"{result.bars:,} bars of {result.symbols:,} symbols ({result.series:,} series) from "
        f"{len(result.files):,} file(s) "
        f"in {result.elapsed_s:,.1f} s{rate}: {result.signals:,} patterns"
    ]
    if result.by_pattern:
        lines += ["", "patterns by name", *_table(result.by_pattern.most_common(), result.signals)]
    if result.by_symbol and top:
        shown = result.by_symbol.most_common(top)
        title = f"top {len(shown)} of {len(result.by_symbol):,} symbols with patterns"
        lines += ["", title, *_table(shown, result.signals)]
    lines.append("")
    if result.rejected:
        lines.append(f"rejected bars: {result.rejected.total():,} ({_reasons(result.rejected)})")
    else:
        lines.append("rejected bars: none")
    if result.late:
        lines.append(
            f"{result.late:,} bars came after later ones (files overlapping in time, not in time order);"
            " each symbol was still judged in order"
        )
    if result.publish:
        lines.append(
            f"published: {result.published:,} events enqueued for the relay (filter: confidence >= "
            f"{result.min_confidence:.2f}); {result.held_back:,} below it held back"
        )
    else:
        lines.append("published: nothing (no --publish)")
    return "\n".join(lines)


def _table(rows: list[tuple[str, int]], total: int) -> list[str]:
    width = max(len(name) for name, _ in rows)
    count_width = max(len(f"{count:,}") for _, count in rows)
    return [
        f"  {name:<{width}}  {count:>{count_width},}  {100 * count / max(total, 1):5.1f}%"
        for name, count in rows
    ]


def _reasons(rejected: Any) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(rejected.items()))
