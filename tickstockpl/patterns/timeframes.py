"""Higher timeframes from the one input feed: 5 m, 15 m, 1 h and the trading day, cut by the calendar.

`Aggregator.push` takes the feed's closed bars and returns the higher-timeframe bars they complete.
A period (sessions.py: cut from the session's open, the last one ending at the close; the day is the
session) is closed, and only then, when the feed has reached its end: a bar of the symbol that ends
at or after it, a bar of a later period, or a boundary of the whole feed at or past it (so a symbol
that did not trade in the last minute still gets its 16:00 bar at 16:00). What is never emitted:
  - a period the symbol's data does not cover from its start (the feed, or the symbol, began inside
    it), and the period still open when the feed ends (the forming bar of a file): both would be
    bars with a wrong open or close, judged as if whole. They are counted in `partial`.
  - bars outside every session (pre-market, nights): judged on their own timeframe, counted in
    `outside`, aggregated into nothing.
Values: first open, highest high, lowest low, last close, summed volume (a pandas resample of the
same bars, tests/unit/test_timeframes.py). Bars the engine rejects (bad values, duplicates, out of
order, unusable symbols) are left out here too, so they are counted once, by the engine.

The work per boundary is a few numpy operations per timeframe, whatever the number of symbols.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tickstockpl import contract
from tickstockpl.bars import Bar, check_arrays, parse_timeframe, symbol_is_valid
from tickstockpl.patterns.combos import ComboFinder
from tickstockpl.patterns.engine import PatternSet
from tickstockpl.patterns.indicators import DEFAULT_RS_BARS
from tickstockpl.patterns.sessions import DAY, IntArray, SessionCalendar
from tickstockpl.patterns.signals import Signal
from tickstockpl.patterns.streaming import StreamingEngine

NONE = np.iinfo(np.int64).min  # no open period / no bar yet


class _Frame:
    """The open period of every row for one target timeframe."""

    def __init__(self, length: int, capacity: int) -> None:
        self.length = length
        self.start = np.full(capacity, NONE, np.int64)  # NONE: no open period
        self.end = np.zeros(capacity, np.int64)
        self.whole = np.zeros(capacity, bool)  # the row's data covers the period from its start
        self.values = np.zeros((5, capacity))  # open, high, low, close, volume

    def grow(self, size: int) -> None:
        old = len(self.start)
        self.start = np.concatenate([self.start, np.full(size - old, NONE, np.int64)])
        self.end = np.concatenate([self.end, np.zeros(size - old, np.int64)])
        self.whole = np.concatenate([self.whole, np.zeros(size - old, bool)])
        self.values = np.concatenate([self.values, np.zeros((5, size - old))], axis=1)


class Aggregator:
    """Closed bars of the input feed in, closed bars of the higher timeframes out (see the module doc)."""

    def __init__(
        self,
        lengths: Sequence[int],
        calendar: SessionCalendar,
        capacity: int = 256,
        max_rows: int = contract.MAX_TRACKED_SYMBOLS,
    ) -> None:
        self.calendar = calendar
        self.frames = [_Frame(length, capacity) for length in sorted(set(lengths))]
        self.max_rows = max_rows
        self._rows: dict[tuple[str, int], int] = {}  # (symbol, input timeframe) -> row
        self._keys: list[tuple[str, int] | None] = []
        self._free: list[int] = []
        self._first = np.full(capacity, NONE, np.int64)  # the row's first bar start
        self._last = np.full(capacity, NONE, np.int64)  # the row's last bar start
        self._bad = np.zeros(capacity, bool)
        self._last_chunk: tuple[tuple[Any, ...], tuple[Any, ...], npt.NDArray[np.intp]] | None = None
        self.watermark = NONE  # the feed's boundary: every bar up to here has arrived
        self.partial = 0  # periods not covered from start to end: never emitted
        self.outside = 0  # input bars outside every session
        self.evicted = 0

    @property
    def open_periods(self) -> int:
        """Periods begun and not yet closed (at the end of a feed: its forming bars, never judged)."""
        return sum(int((frame.start != NONE).sum()) for frame in self.frames)

    def push(self, bars: Sequence[Bar]) -> dict[int, list[Bar]]:
        """The higher-timeframe bars that `bars` (one boundary, or any mix, oldest first) complete."""
        out: dict[int, list[Bar]] = {frame.length: [] for frame in self.frames}
        if not bars:
            return out
        columns = tuple(zip(*bars, strict=True))
        last = self._last_chunk
        if (last is not None and columns[0] == last[0] and columns[1] == last[1]) or len(
            set(zip(columns[0], columns[1], strict=True))
        ) == len(bars):
            self._push_chunk(columns, out)
        else:  # a series twice in one batch: in chunks of one bar per series, as the engine does
            chunk: list[Bar] = []
            seen: set[tuple[str, int]] = set()
            for bar in bars:
                if (bar.symbol, bar.timeframe) in seen:
                    self._push_chunk(tuple(zip(*chunk, strict=True)), out)
                    chunk, seen = [], set()
                chunk.append(bar)
                seen.add((bar.symbol, bar.timeframe))
            self._push_chunk(tuple(zip(*chunk, strict=True)), out)
        return out

    def _push_chunk(self, columns: tuple[tuple[Any, ...], ...], out: dict[int, list[Bar]]) -> None:
        rows = self._rows_of(columns)
        starts = np.array(columns[2], np.int64)
        lengths = np.array(columns[1], np.int64)
        values = np.array(columns[3:8], np.float64)
        ok = (check_arrays(*values) == 0) & (starts > self._last[rows]) & ~self._bad[rows]
        self._last[rows[ok]] = starts[ok]
        self._first[rows] = np.where(self._first[rows] == NONE, np.where(ok, starts, NONE), self._first[rows])
        ends = starts + lengths
        index = self.calendar.session_index(starts)
        inside = ok & (index >= 0)
        self.outside += int((ok & (index < 0)).sum())
        for frame in self.frames:
            use = inside & (lengths < frame.length)
            if frame.length < DAY:
                use &= frame.length % np.maximum(lengths, 1) == 0  # 5 m bars make 15 m, never 2 m bars
            if use.any():
                self._fold(frame, rows[use], starts[use], ends[use], values[:, use], index[use], out)
        if ok.any():
            self.watermark = max(self.watermark, int(ends[ok].min()))
            for frame in self.frames:
                self._emit(frame, np.flatnonzero((frame.start != NONE) & (frame.end <= self.watermark)), out)

    def _fold(
        self,
        frame: _Frame,
        rows: npt.NDArray[np.intp],
        starts: IntArray,
        ends: IntArray,
        values: npt.NDArray[np.float64],
        index: IntArray,
        out: dict[int, list[Bar]],
    ) -> None:
        """Add one bar per row to its period; emit the periods these bars end (or leave behind)."""
        begin, end = self.calendar.periods(index, starts, frame.length)
        current = frame.start[rows]
        self._emit(frame, rows[(current != NONE) & (current != begin)], out)  # a later period began
        fresh = frame.start[rows] == NONE
        new = rows[fresh]
        frame.start[new] = begin[fresh]
        frame.end[new] = end[fresh]
        frame.whole[new] = begin[fresh] >= self._first[new]
        frame.values[:, new] = values[:, fresh]
        more = rows[~fresh]
        if len(more):
            added = values[:, ~fresh]
            frame.values[1, more] = np.maximum(frame.values[1, more], added[1])
            frame.values[2, more] = np.minimum(frame.values[2, more], added[2])
            frame.values[3, more] = added[3]
            frame.values[4, more] += added[4]
        self._emit(frame, rows[ends >= frame.end[rows]], out)

    def _emit(self, frame: _Frame, rows: npt.NDArray[np.intp], out: dict[int, list[Bar]]) -> None:
        """Close these rows' periods: whole ones become bars, partial ones are counted and dropped."""
        if not len(rows):
            return
        whole = rows[frame.whole[rows]]
        self.partial += len(rows) - len(whole)
        if len(whole):
            keys = self._keys
            symbols = [keys[row][0] for row in whole.tolist()]  # rows being emitted are in use
            o, h, low, c, v = frame.values[:, whole].tolist()
            length = frame.length
            out[length].extend(
                map(Bar, symbols, [length] * len(whole), frame.start[whole].tolist(), o, h, low, c, v)
            )
        frame.start[rows] = NONE

    def _rows_of(self, columns: tuple[tuple[Any, ...], ...]) -> npt.NDArray[np.intp]:
        last = self._last_chunk
        if last is not None and columns[0] == last[0] and columns[1] == last[1]:
            return last[2]
        keys = list(zip(columns[0], columns[1], strict=True))
        self._make_room(keys)
        rows = np.fromiter(map(self._row, keys), np.intp, len(keys))
        self._last_chunk = (columns[0], columns[1], rows)
        return rows

    def _row(self, key: tuple[str, int]) -> int:
        row = self._rows.get(key)
        if row is None:
            if self._free:
                row = self._free.pop()
                self._keys[row] = key
            else:
                row = len(self._keys)
                if row == len(self._last):
                    self._grow()
                self._keys.append(key)
            self._rows[key] = row
            self._bad[row] = not symbol_is_valid(key[0])
        return row

    def _grow(self) -> None:
        old = len(self._last)
        for frame in self.frames:
            frame.grow(old * 2)
        self._first = np.concatenate([self._first, np.full(old, NONE, np.int64)])
        self._last = np.concatenate([self._last, np.full(old, NONE, np.int64)])
        self._bad = np.concatenate([self._bad, np.zeros(old, bool)])

    def _make_room(self, keys: list[tuple[str, int]]) -> None:
        """At `max_rows`, forget the least recently updated rows not in this chunk (a tenth at least):
        their open periods are dropped (counted in `partial`), as the engine forgets their series."""
        chunk = set(keys)
        overflow = len(self._rows) + sum(1 for key in chunk if key not in self._rows) - self.max_rows
        if overflow <= 0:
            return
        candidates = np.array([row for key, row in self._rows.items() if key not in chunk], np.intp)
        count = min(max(overflow, self.max_rows // 10), len(candidates))
        if not count:
            return
        oldest = candidates[np.argpartition(self._last[candidates], count - 1)[:count]]
        for frame in self.frames:
            self.partial += int((frame.start[oldest] != NONE).sum())
            frame.start[oldest] = NONE
        for row in oldest.tolist():
            key = self._keys[row]
            assert key is not None
            del self._rows[key]
            self._keys[row] = None
        self._first[oldest] = NONE
        self._last[oldest] = NONE
        self._free.extend(sorted(oldest.tolist(), reverse=True))
        self._last_chunk = None
        self.evicted += count


class TimeframeEngine:
    """The detector's engine with timeframes: the feed's own series, an engine per higher timeframe.

    One StreamingEngine each (not one for all): each keeps its fast path, one boundary being one block
    of its rows. Same interface as StreamingEngine for the detector: `process`, and the counters of
    the input feed (`accepted`, `rejected`); `series` and `evicted` cover every timeframe.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        calendar: SessionCalendar,
        *,
        pset: PatternSet | None = None,
        combo_lengths: Sequence[int] = (),
        max_series: int = contract.MAX_TRACKED_SYMBOLS,
        rs_bars: int = DEFAULT_RS_BARS,
        rs_benchmark: str = "",
    ) -> None:
        self.calendar = calendar

        def engine(patterns: PatternSet | None) -> StreamingEngine:
            return StreamingEngine(
                patterns, max_series=max_series, rs_bars=rs_bars, rs_benchmark=rs_benchmark
            )

        self.base = engine(pset)
        self.pset = self.base.pset
        self.aggregator = Aggregator(lengths, calendar, max_rows=max_series)
        self.engines = {length: engine(self.pset) for length in set(lengths)}
        self.combos = ComboFinder(combo_lengths, calendar) if len(set(combo_lengths)) > 1 else None

    @property
    def accepted(self) -> int:
        return self.base.accepted

    @property
    def rejected(self) -> Counter[str]:
        return self.base.rejected

    @property
    def series(self) -> int:
        return self.base.series + sum(engine.series for engine in self.engines.values())

    @property
    def evicted(self) -> int:
        return self.base.evicted + sum(engine.evicted for engine in self.engines.values())

    def process(self, bars: Iterable[Bar]) -> list[Signal]:
        """Signals of the feed's bars, then of the higher-timeframe bars they close, then the combos."""
        batch = bars if isinstance(bars, list) else list(bars)
        signals = self.base.process(batch)
        for length, closed in self.aggregator.push(batch).items():
            if closed:
                signals.extend(self.engines[length].process(closed))
        if self.combos is not None and signals:
            signals.extend(self.combos.find(signals))
        return signals

    def warm(self, batches: Iterable[list[Bar]], judged_from: int = 3600) -> int:
        """Learn from history (a source's bars from before its live feed): aggregate it, and feed the
        timeframes of `judged_from` and more their bars, judging nothing that anyone sees. The feed's
        own series and the short timeframes warm up within minutes of live feed; running history
        through their engines would cost more than the rest together. Returns the bars read."""
        read = 0
        for batch in batches:
            read += len(batch)
            for length, closed in self.aggregator.push(batch).items():
                if closed and length >= judged_from:
                    self.engines[length].process(closed)
        return read


def engine_for(
    timeframes: Sequence[str],
    combo_timeframes: Sequence[str],
    calendar: SessionCalendar,
    pset: PatternSet | None = None,
    *,
    rs_bars: int = DEFAULT_RS_BARS,
    rs_benchmark: str = "",
) -> StreamingEngine | TimeframeEngine:
    """The detector's engine for its settings: a plain StreamingEngine when no timeframe is added.
    `rs_bars` and `rs_benchmark`: the relative strength's settings, for every timeframe's engine."""
    if not timeframes:
        return StreamingEngine(pset, rs_bars=rs_bars, rs_benchmark=rs_benchmark)
    return TimeframeEngine(
        [parse_timeframe(label) for label in timeframes],
        calendar,
        pset=pset,
        rs_bars=rs_bars,
        rs_benchmark=rs_benchmark,
        combo_lengths=[parse_timeframe(label) for label in combo_timeframes],
    )
