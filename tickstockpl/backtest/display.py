"""Terminal output of the backtest commands: a progress bar and the results tables.

On a terminal the bar redraws one line; piped (CI, TickStockAppV2's launcher) it prints a line at
each whole 10 %, so logs stay readable.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

WIDTH = 30


class ProgressBar:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._last_tenth = -1

    def update(self, fraction: float, note: str = "") -> None:
        fraction = min(1.0, max(0.0, fraction))
        filled = int(round(fraction * WIDTH))
        line = f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {fraction * 100:5.1f}% {note}"
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            self.stream.flush()
            return
        tenth = int(fraction * 10)
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(line.rstrip(), file=self.stream, flush=True)

    def done(self, note: str = "") -> None:
        self.update(1.0, note)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned plain-text table; numbers right-aligned."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_report(results: Mapping[str, Any]) -> str:
    """The headline figures, then one table by pattern and one by symbol."""
    headline = [
        ("trades", results["total_trades"]),
        ("winning trades", results["winning_trades"]),
        ("win rate", _pct(results["win_rate"])),
        ("ROI", _pct(results["roi"])),
        ("max drawdown", _pct(results["max_drawdown"])),
        ("Sharpe ratio", f"{results['sharpe_ratio']:.3f}"),
        ("final equity", f"{results['final_equity']:,.2f}"),
        ("commission paid", f"{results['total_commission']:,.2f}"),
        ("signals (neutral / not traded / of which unfunded)", _signals(results)),
        ("bars tested", results["bars_tested"]),
    ]
    parts = [table(("figure", "value"), headline)]
    for key, title in (("by_pattern", "pattern"), ("by_symbol", "symbol")):
        rows = [
            (
                name,
                g["total_trades"],
                g["winning_trades"],
                _pct(g["win_rate"]),
                f"{g['pnl']:,.2f}",
                _pct(g["roi"]),
            )
            for name, g in results[key].items()
        ]
        parts.append(table((title, "trades", "wins", "win rate", "P&L", "ROI"), rows))
    if results.get("symbols_without_data"):
        parts.append("no bars in range for: " + ", ".join(results["symbols_without_data"]))
    return "\n\n".join(parts)


def _signals(results: Mapping[str, Any]) -> str:
    counts = (results["neutral_signals"], results["skipped_signals"], results["unfunded_signals"])
    return f"{results['signals']} ({' / '.join(map(str, counts))})"


def _pct(value: float) -> str:
    return f"{value * 100:.2f}%"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
