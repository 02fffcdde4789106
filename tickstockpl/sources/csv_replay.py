"""Replay of real OHLCV CSV files (data/README.md): several symbols and files merged in time order.

Layout: `timestamp,symbol,open,high,low,close,volume`; timestamp is a date (`2013-03-01`, a daily bar,
taken to start at 00:00 UTC) or ISO 8601 with an offset (`2026-07-29 09:30:00-04:00`, the bar start).
The bar length is the smallest gap between two bars of one symbol in the file, unless given.
"""

from __future__ import annotations

import csv
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

from tickstockpl.bars import Bar, bar_from_fields
from tickstockpl.sources.pacing import Pacer


def parse_timestamp(text: str) -> int | None:
    """Epoch seconds of a date (00:00 UTC) or an ISO 8601 time; None if unreadable."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def infer_timeframe(starts_by_symbol: Iterable[Sequence[int]]) -> int:
    """The smallest positive gap between consecutive bars of any one symbol (60 if there is none)."""
    gaps = [b - a for starts in starts_by_symbol for a, b in zip(starts, starts[1:], strict=False) if b > a]
    return min(gaps) if gaps else 60


def load_csv(
    path: str | Path, timeframe: int | None = None, rejected: Counter[str] | None = None
) -> list[Bar]:
    """Every parseable bar of one file, in file order; unparseable rows are counted in `rejected`."""
    rows: list[tuple[str, int | None, dict[str, str]]] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            rows.append((record.get("symbol") or "", parse_timestamp(record.get("timestamp") or ""), record))
    if timeframe is None:
        starts: dict[str, list[int]] = {}
        for symbol, start, _ in rows:
            if start is not None:
                starts.setdefault(symbol, []).append(start)
        timeframe = infer_timeframe(starts.values())
    bars = []
    for symbol, start, record in rows:
        bar = bar_from_fields(symbol, timeframe, start, record)
        if isinstance(bar, Bar):
            bars.append(bar)
        elif rejected is not None:
            rejected[bar] += 1
    return bars


def merge_in_time(bar_lists: Iterable[list[Bar]]) -> list[Bar]:
    """All bars ordered by close time, then symbol: the order a live feed would deliver them."""
    return sorted(
        (bar for bars in bar_lists for bar in bars), key=lambda b: (b.start + b.timeframe, b.symbol)
    )


class CsvReplaySource:
    """Replays CSV files as one time-ordered feed, one batch per bar close time."""

    def __init__(self, files: Sequence[str | Path], speed: float = 0.0, timeframe: int | None = None) -> None:
        if not files:
            raise ValueError("CSV replay needs at least one file (TICKSTOCKPL_CSV_FILES)")
        self.files = [Path(f) for f in files]
        for path in self.files:  # fail at start (misconfigured), not when the replay reaches the file
            if not path.is_file():
                raise FileNotFoundError(f"CSV file not found: {path}")
            with path.open("rb"):
                pass
        self.speed = speed
        self.timeframe = timeframe
        self.rejected: Counter[str] = Counter()
        self._bars: list[Bar] | None = None

    @property
    def bars(self) -> list[Bar]:
        """The whole merged feed (loaded once)."""
        if self._bars is None:
            self._bars = merge_in_time(load_csv(f, self.timeframe, self.rejected) for f in self.files)
        return self._bars

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        pacer = Pacer(self.speed)
        for close_time, group in groupby(self.bars, key=lambda b: b.start + b.timeframe):
            if not pacer.wait_until(close_time, stop):
                return
            yield list(group)

    def close(self) -> None:
        return None
