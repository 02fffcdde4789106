"""The streaming engine: per-series rolling windows, closed bars in, signals out.

State per (symbol, timeframe) is one row of fixed width in a few numpy arrays, so the work per bar is
bounded and a boundary of 10,000 symbols is a handful of array operations, not 10,000 Python loops.
Bars are validated here (values, duplicates, order) and rejects are counted by reason, never raised.
Each accepted bar is judged exactly once, so there is at most one signal per (series, bar, pattern).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from tickstockpl import contract
from tickstockpl.bars import (
    BAD_SYMBOL,
    DUPLICATE,
    OUT_OF_ORDER,
    REASONS,
    Bar,
    check_arrays,
    symbol_is_valid,
)
from tickstockpl.patterns.candle_settings import Total
from tickstockpl.patterns.engine import DIRECTIONS, Hits, PatternSet, evaluate
from tickstockpl.patterns.indicators import (
    DEFAULT_RS_BARS,
    RELATIVE_VOLUME_BARS,
    Indicators,
    defined,
    relative_volume,
)
from tickstockpl.patterns.running_totals import advance_totals
from tickstockpl.patterns.signals import Signal
from tickstockpl.patterns.windows import FloatArray, Windows

FIELDS = 5  # open, high, low, close, volume


class StreamingEngine:
    """Feed closed bars with `process`; get the signals of those bars back, in input order."""

    EVICT_FRACTION = 0.1  # when full, forget this share of the series (the least recently updated)

    def __init__(
        self,
        pset: PatternSet | None = None,
        capacity: int = 256,
        width: int | None = None,
        max_series: int = contract.MAX_TRACKED_SYMBOLS,
        *,
        rs_bars: int = DEFAULT_RS_BARS,
        rs_benchmark: str = "",
    ) -> None:
        """`rs_bars` and `rs_benchmark`: the relative strength's N and benchmark (patterns/indicators.py)."""
        self.pset = pset or PatternSet()
        # A feed of ever-new symbols must not grow the state without bound: at `max_series` series, the
        # least recently updated ones are forgotten (their pattern history restarts if they come back).
        self.max_series = max_series
        self.evicted = 0
        self._free: list[int] = []  # rows of forgotten series, reused before the arrays grow
        # A wider window changes nothing but memory; relative volume reads the 20 bars before the bar.
        self.width = max(width or 0, self.pset.width, RELATIVE_VOLUME_BARS + 1)
        self._rows: dict[tuple[str, int], int] = {}
        self._keys: list[tuple[str, int] | None] = []  # by row; None for a free row
        self._buf = np.full((FIELDS, capacity, self.width), np.nan)
        self._count = np.zeros(capacity, np.int64)  # bars in the window (capped at width)
        self._seen = np.zeros(capacity, np.int64)  # bars accepted since the series began
        self._last_start = np.full(capacity, np.iinfo(np.int64).min, np.int64)
        # TA-Lib's running totals at each series' last bar (rules.py), carried bar by bar.
        self._totals = {total: np.full(capacity, np.nan) for total in self.pset.totals}
        self.indicators = Indicators(capacity, self.width, rs_bars, rs_benchmark)
        # The last batch's series, in order: the next boundary is usually the same list.
        self._last_batch: tuple[tuple[str, ...], tuple[int, ...], npt.NDArray[np.intp]] | None = None
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self._bad_rows: list[int] = []  # series whose symbol can never be published

    @property
    def series(self) -> int:
        return len(self._rows)

    def process(self, bars: Iterable[Bar]) -> list[Signal]:
        """Validate, store and judge bars (any mix of series, oldest first within a series)."""
        batch = bars if isinstance(bars, list) else list(bars)
        if not batch:
            return []
        columns = tuple(zip(*batch, strict=True))
        last = self._last_batch
        if last is not None and columns[0] == last[0] and columns[1] == last[1]:
            return self._process_chunk(batch, columns, last[2])  # the same series as last time
        signals: list[Signal] = []
        chunk: list[Bar] = []
        seen: set[tuple[str, int]] = set()
        for bar in batch:  # split where a series repeats, so each chunk holds one bar per series
            key = (bar.symbol, bar.timeframe)
            if key in seen:
                signals.extend(self._process_chunk(chunk))
                chunk, seen = [], set()
            chunk.append(bar)
            seen.add(key)
        signals.extend(self._process_chunk(chunk, columns if len(chunk) == len(batch) else None))
        return signals

    def _row(self, key: tuple[str, int]) -> int:
        row = self._rows.get(key)
        if row is None:
            if self._free:
                row = self._free.pop()
                self._keys[row] = key
            else:
                row = len(self._keys)
                if row == self._count.shape[0]:
                    self._grow()
                self._keys.append(key)
            self._rows[key] = row
            if not symbol_is_valid(key[0]):
                self._bad_rows.append(row)
        return row

    def _make_room(self, keys: Iterable[tuple[str, int]]) -> None:
        """Before a chunk brings new series: at `max_series`, forget the least recently updated
        series that are not in the chunk (at least EVICT_FRACTION of them, so this is rare)."""
        chunk = set(keys)
        new = sum(1 for key in chunk if key not in self._rows)
        overflow = len(self._rows) + new - self.max_series
        if overflow <= 0:
            return
        count = max(overflow, int(self.max_series * self.EVICT_FRACTION))
        candidates = np.array([row for key, row in self._rows.items() if key not in chunk], np.intp)
        if not len(candidates):
            return
        count = min(count, len(candidates))
        oldest = candidates[np.argpartition(self._last_start[candidates], count - 1)[:count]]
        for row in oldest.tolist():
            key = self._keys[row]
            assert key is not None
            del self._rows[key]
            self._keys[row] = None
        self._buf[:, oldest] = np.nan
        self._count[oldest] = 0
        self._seen[oldest] = 0
        self._last_start[oldest] = np.iinfo(np.int64).min
        for values in self._totals.values():
            values[oldest] = np.nan
        gone = set(oldest.tolist())
        self._bad_rows = [row for row in self._bad_rows if row not in gone]
        self._free.extend(sorted(gone, reverse=True))
        self._last_batch = None
        self.evicted += len(gone)

    def _benchmark_row(self, timeframe: int) -> int | None:
        """The row of the relative strength's benchmark series at `timeframe`, if it has one."""
        return self._rows.get((self.indicators.rs_benchmark, timeframe))

    def _grow(self) -> None:
        old = self._count.shape[0]
        size = old * 2
        buf = np.full((FIELDS, size, self.width), np.nan)
        buf[:, :old] = self._buf
        self._buf = buf
        self._count = np.concatenate([self._count, np.zeros(old, np.int64)])
        self._seen = np.concatenate([self._seen, np.zeros(old, np.int64)])
        fill = np.full(old, np.iinfo(np.int64).min, np.int64)
        self._last_start = np.concatenate([self._last_start, fill])
        self._totals = {
            total: np.concatenate([values, np.full(old, np.nan)]) for total, values in self._totals.items()
        }
        self.indicators.grow(old)

    def _process_chunk(
        self,
        chunk: list[Bar],
        columns: tuple[tuple[Any, ...], ...] | None = None,
        rows: npt.NDArray[np.intp] | None = None,
    ) -> list[Signal]:
        """One bar per series: validate, push, judge. `columns` is the chunk transposed (if known),
        `rows` the series' rows (if known from the last batch)."""
        if columns is None:
            columns = tuple(zip(*chunk, strict=True))
        n = len(chunk)
        if rows is None:
            self._make_room(zip(columns[0], columns[1], strict=True))
            rows = np.fromiter(map(self._row, zip(columns[0], columns[1], strict=True)), np.intp, n)
            self._last_batch = (columns[0], columns[1], rows)
        starts = np.array(columns[2], dtype=np.int64)
        values = np.array(columns[3:8], dtype=np.float64)
        codes = check_arrays(*values)
        last = self._last_start[rows]
        codes[(codes == 0) & (starts == last)] = REASONS.index(DUPLICATE) + 1
        codes[(codes == 0) & (starts < last)] = REASONS.index(OUT_OF_ORDER) + 1
        if self._bad_rows:
            codes[(codes == 0) & np.isin(rows, self._bad_rows)] = REASONS.index(BAD_SYMBOL) + 1
        keep: npt.NDArray[np.intp] | None = None
        timeframes: tuple[Any, ...] = columns[1]
        if codes.any():
            for code, number in zip(*np.unique(codes[codes > 0], return_counts=True), strict=True):
                self.rejected[REASONS[int(code) - 1]] += int(number)
            keep = np.flatnonzero(codes == 0)
            rows, starts, values = rows[keep], starts[keep], values[:, keep]
            timeframes = tuple(timeframes[i] for i in keep.tolist())
        if not len(rows):
            return []
        self.accepted += len(rows)
        win, totals = self._push(rows, starts, values)
        hits = evaluate(win, self.pset, totals)
        if not len(hits.rows):
            return []
        at = hits.rows if keep is None else keep[hits.rows]  # positions in the chunk
        return self._signals(win, hits, columns, at.tolist(), starts, rows, timeframes)

    def _push(
        self, rows: npt.NDArray[np.intp], starts: npt.NDArray[np.int64], values: FloatArray
    ) -> tuple[Windows, dict[Total, FloatArray]]:
        """Shift each row left by one bar, append the new bar, carry the running totals; return the
        rows' windows and totals."""
        n = len(rows)
        where: slice | npt.NDArray[np.intp]
        if rows[0] + n - 1 == rows[-1] and (n < 3 or bool((np.diff(rows) == 1).all())):
            # One boundary of every series in creation order (the usual case): views, no gathers.
            where = slice(int(rows[0]), int(rows[0]) + n)
            block = self._buf[:, where]
            block[:, :, :-1] = block[:, :, 1:].copy()
            block[:, :, -1] = values
        else:
            where = rows
            block = self._buf[:, rows]
            block[:, :, :-1] = block[:, :, 1:]
            block[:, :, -1] = values
            self._buf[:, rows] = block
        self._last_start[where] = starts
        self._count[where] = np.minimum(self._count[where] + 1, self.width)
        self._seen[where] += 1
        index = self._seen[where] - 1
        self.indicators.advance(where, rows, index, block[3])
        totals = advance_totals(
            (block[0], block[1], block[2], block[3]),
            index,
            {total: values_[where] for total, values_ in self._totals.items()},
        )
        for total, carried in totals.items():
            self._totals[total][where] = carried
        win = Windows(block[0], block[1], block[2], block[3], block[4], self._count[where])
        return win, totals

    def _signals(
        self,
        win: Windows,
        hits: Hits,
        columns: tuple[tuple[Any, ...], ...],
        at: list[int],
        starts: npt.NDArray[np.int64],
        accepted: npt.NDArray[np.intp],
        timeframes: tuple[Any, ...],
    ) -> list[Signal]:
        """Signals for the hits, built column-wise (plain Python values, as the event builder wants).
        `accepted` and `timeframes` are the rows and timeframes of the chunk's accepted bars (the
        relative strength's universe)."""
        names = self.pset.names
        rows = hits.rows
        symbols = columns[0]
        series = accepted[rows]
        strength = self.indicators.relative_strength(
            accepted, rows, starts, timeframes, self._benchmark_row, self._last_start
        )
        return list(
            map(
                Signal,
                [symbols[i] for i in at],
                [columns[1][i] for i in at],
                starts[rows].tolist(),
                [names[p] for p in hits.patterns.tolist()],
                [DIRECTIONS[d] for d in hits.directions.tolist()],
                hits.confidences.tolist(),
                win.close[rows, -1].tolist(),
                win.close[rows, -2].tolist(),
                win.volume[rows, -1].tolist(),
                defined(self.indicators.rsi(series, self._seen[series] - 1)),
                defined(relative_volume(win.volume)[rows]),  # for every row: cheaper than a gather first
                defined(strength),
            )
        )
