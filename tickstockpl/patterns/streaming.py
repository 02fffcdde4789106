"""The streaming engine: per-series rolling windows, closed bars in, signals out.

State per (symbol, timeframe) is one row of fixed width in a few numpy arrays, so the work per bar is
bounded and a boundary of 10,000 symbols is a handful of array operations, not 10,000 Python loops.
Bars are validated here (values, duplicates, order) and rejects are counted by reason, never raised.
Each accepted bar is judged exactly once, so there is at most one signal per (series, bar, pattern).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from tickstockpl import contract
from tickstockpl.bars import DUPLICATE, OUT_OF_ORDER, REASONS, Bar, check_arrays, tier_for, timeframe_label
from tickstockpl.patterns.engine import DIRECTIONS, PatternSet, evaluate
from tickstockpl.patterns.windows import Windows

FIELDS = 5  # open, high, low, close, volume


class Signal(NamedTuple):
    """One detected pattern on one closed bar, with what the event needs."""

    symbol: str
    timeframe: int
    start: int
    pattern: str
    direction: str
    confidence: float
    close: float
    prev_close: float
    volume: float

    @property
    def close_time(self) -> int:
        return self.start + self.timeframe

    @property
    def price_change(self) -> float:
        """Percent change of the close against the previous bar's close."""
        return (self.close / self.prev_close - 1.0) * 100.0 if self.prev_close > 0 else 0.0


def signal_to_event(signal: Signal, now: float | None = None) -> dict[str, Any]:
    """The contract envelope for a signal (contract.build_pattern_event does every check)."""
    tier = tier_for(signal.timeframe)
    return contract.build_pattern_event(
        symbol=signal.symbol,
        pattern=signal.pattern,
        confidence=signal.confidence,
        tier=tier,
        price_change=round(signal.price_change, 4),
        current_price=signal.close,
        volume=signal.volume,
        detected_at=float(signal.close_time),
        extra={
            "direction": signal.direction,
            "timeframe": timeframe_label(signal.timeframe),
            "bar_start": signal.start,
        },
        now=now,
    )


class StreamingEngine:
    """Feed closed bars with `process`; get the signals of those bars back, in input order."""

    def __init__(self, pset: PatternSet | None = None, capacity: int = 256, width: int | None = None) -> None:
        self.pset = pset or PatternSet()
        self.width = max(width or 0, self.pset.width)  # a wider window changes nothing but memory
        self._rows: dict[tuple[str, int], int] = {}
        self._keys: list[tuple[str, int]] = []
        self._buf = np.full((FIELDS, capacity, self.width), np.nan)
        self._count = np.zeros(capacity, np.int64)
        self._last_start = np.full(capacity, np.iinfo(np.int64).min, np.int64)
        self.accepted = 0
        self.rejected: Counter[str] = Counter()

    @property
    def series(self) -> int:
        return len(self._keys)

    def process(self, bars: Iterable[Bar]) -> list[Signal]:
        """Validate, store and judge bars (any mix of series, oldest first within a series)."""
        signals: list[Signal] = []
        chunk: list[Bar] = []
        seen: set[tuple[str, int]] = set()
        for bar in bars:  # split where a series repeats, so each chunk holds one bar per series
            key = (bar.symbol, bar.timeframe)
            if key in seen:
                signals.extend(self._process_chunk(chunk))
                chunk, seen = [], set()
            chunk.append(bar)
            seen.add(key)
        if chunk:
            signals.extend(self._process_chunk(chunk))
        return signals

    def reject(self, reason: str, count: int = 1) -> None:
        """Count a bar a source could not even parse (missing field), alongside the engine's own."""
        self.rejected[reason] += count

    def snapshot(self) -> Mapping[str, int]:
        """Counters in the stats-hash layout: bars_received, bars_rejected:<reason>."""
        stats = {"bars_received": self.accepted + sum(self.rejected.values())}
        stats.update({f"bars_rejected:{reason}": n for reason, n in self.rejected.items()})
        return stats

    def _row(self, key: tuple[str, int]) -> int:
        row = self._rows.get(key)
        if row is None:
            row = len(self._keys)
            if row == self._count.shape[0]:
                self._grow()
            self._rows[key] = row
            self._keys.append(key)
        return row

    def _grow(self) -> None:
        size = self._count.shape[0] * 2
        buf = np.full((FIELDS, size, self.width), np.nan)
        buf[:, : self._count.shape[0]] = self._buf
        self._buf = buf
        self._count = np.concatenate([self._count, np.zeros(size - len(self._count), np.int64)])
        fill = np.full(size - len(self._last_start), np.iinfo(np.int64).min, np.int64)
        self._last_start = np.concatenate([self._last_start, fill])

    def _process_chunk(self, chunk: list[Bar]) -> list[Signal]:
        n = len(chunk)
        rows = np.fromiter((self._row((b.symbol, b.timeframe)) for b in chunk), np.intp, n)
        starts = np.fromiter((b.start for b in chunk), np.int64, n)
        values = np.array([b[3:] for b in chunk], dtype=np.float64).reshape(n, FIELDS)
        codes = check_arrays(*values.T)
        last = self._last_start[rows]
        codes[(codes == 0) & (starts == last)] = REASONS.index(DUPLICATE) + 1
        codes[(codes == 0) & (starts < last)] = REASONS.index(OUT_OF_ORDER) + 1
        if codes.any():
            for code, number in zip(*np.unique(codes[codes > 0], return_counts=True), strict=True):
                self.rejected[REASONS[int(code) - 1]] += int(number)
            keep = np.flatnonzero(codes == 0)
            rows, starts, values, chunk = rows[keep], starts[keep], values[keep], [chunk[i] for i in keep]
        if not len(rows):
            return []
        self.accepted += len(rows)
        win = self._push(rows, starts, values)
        return self._signals(win, chunk)

    def _push(self, rows: npt.NDArray[np.intp], starts: npt.NDArray[np.int64], values: Any) -> Windows:
        """Shift each row left by one bar, append the new bar, and return the rows' windows."""
        n = len(rows)
        if rows[0] + n - 1 == rows[-1] and (n < 3 or bool((np.diff(rows) == 1).all())):
            # One boundary of every series in creation order (the usual case): views, no gathers.
            span = slice(int(rows[0]), int(rows[0]) + n)
            block = self._buf[:, span]
            block[:, :, :-1] = block[:, :, 1:].copy()
            block[:, :, -1] = values.T
            self._last_start[span] = starts
            self._count[span] = np.minimum(self._count[span] + 1, self.width)
            bars = self._count[span]
        else:
            block = self._buf[:, rows]
            block[:, :, :-1] = block[:, :, 1:]
            block[:, :, -1] = values.T
            self._buf[:, rows] = block
            self._last_start[rows] = starts
            self._count[rows] = np.minimum(self._count[rows] + 1, self.width)
            bars = self._count[rows]
        return Windows(block[0], block[1], block[2], block[3], block[4], bars)

    def _signals(self, win: Windows, chunk: list[Bar]) -> list[Signal]:
        hits = evaluate(win, self.pset)
        names = self.pset.names
        prev_close = win.close[:, -2]
        out = []
        for r, p, d, c in zip(
            hits.rows.tolist(),
            hits.patterns.tolist(),
            hits.directions.tolist(),
            hits.confidences.tolist(),
            strict=True,
        ):
            bar = chunk[r]
            out.append(
                Signal(
                    bar.symbol,
                    bar.timeframe,
                    bar.start,
                    names[p],
                    DIRECTIONS[d],
                    c,
                    bar.close,
                    float(prev_close[r]),
                    bar.volume,
                )
            )
        return out
