"""The streaming engine: per-series rolling windows, closed bars in, signals out.

State per (symbol, timeframe) is one row of fixed width in a few numpy arrays, so the work per bar is
bounded and a boundary of 10,000 symbols is a handful of array operations, not 10,000 Python loops.
Bars are validated here (values, duplicates, order) and rejects are counted by reason, never raised.
Each accepted bar is judged exactly once, so there is at most one signal per (series, bar, pattern).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

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
    tier_for,
    timeframe_label,
)
from tickstockpl.patterns.candle_settings import Total
from tickstockpl.patterns.engine import DIRECTIONS, Hits, PatternSet, evaluate
from tickstockpl.patterns.running_totals import advance_totals
from tickstockpl.patterns.windows import FloatArray, Windows

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


def publishable(signals: Iterable[Signal], min_confidence: float) -> list[Signal]:
    """The signals worth publishing: confidence (as the contract rounds it, 2 dp) at least `min_confidence`.

    Applied where events leave the process (detector service, `replay --publish`), never inside the
    engine, so the backtester and the counters still see everything that was detected."""
    return [s for s in signals if round(s.confidence, contract.CONFIDENCE_DECIMALS) >= min_confidence]


class EventBuilder:
    """`signal_to_event` for many signals at once, several times cheaper, with the same result.

    Why: at a 10,000-symbol boundary the reference builder, which re-validates every field of every
    event, costs more than detection itself. The engine's values are already plain and checked, so
    here each event is built directly and only what can still differ per event is checked cheaply:
    a symbol, pattern, direction or timeframe is trusted once the reference builder has accepted an
    event carrying it; numbers are checked by type and range. Any signal that fails a cheap check is
    built by `signal_to_event`, which produces the same event or raises the same ContractError, so the
    two paths cannot disagree (tests/unit/test_events.py). Flow ids are random UUID4s, drawn in bulk.
    """

    MAX_TRUSTED = 100_000  # a feed of ever-new symbols must not grow the caches without bound

    def __init__(self) -> None:
        self._symbols: set[str] = set()
        self._names: set[tuple[str, str, int]] = set()  # (pattern, direction, timeframe)
        self._frames: dict[int, tuple[str, str]] = {}  # timeframe -> (tier, label)

    def build(self, signals: Sequence[Signal], now: float | None = None) -> list[dict[str, Any]]:
        """Contract events for `signals`, in order (envelope timestamp `now`, default: the time now).

        Each is a `contract.BuiltPatternEvent`, so that `outbox.enqueue` does not check it again."""
        stamp = float(time.time() if now is None else now)
        if not math.isfinite(stamp):
            return [contract.BuiltPatternEvent(signal_to_event(s, now=stamp)) for s in signals]
        events: list[dict[str, Any]] = []
        for signal, flow_id in zip(signals, flow_ids(len(signals)), strict=True):
            event = self._direct(signal, flow_id, stamp)
            if event is None:
                event = self._reference(signal, stamp)
            events.append(contract.BuiltPatternEvent(event))
        return events

    def _direct(self, s: Signal, flow_id: str, stamp: float) -> dict[str, Any] | None:
        symbol, timeframe, start, pattern, direction, confidence, close, _, volume = s
        if (
            symbol not in self._symbols
            or (pattern, direction, timeframe) not in self._names
            or type(confidence) is not float
            or type(close) is not float
            or type(volume) is not float
            or type(start) is not int
            or not 0.0 <= confidence <= 1.0
            or not math.isfinite(close + volume)  # a sum of finite floats may overflow: then go slow
        ):
            return None
        change = round(s.price_change, 4)
        if not math.isfinite(change):
            return None
        tier, label = self._frames[timeframe]
        return {
            "event_type": contract.EVENT_PATTERN_DETECTED,
            "source": contract.SOURCE_SYSTEM,
            "timestamp": stamp,
            "data": {
                "symbol": symbol,
                "pattern": pattern,
                "confidence": round(confidence, contract.CONFIDENCE_DECIMALS),
                "flow_id": flow_id,
                "price_change": change,
                "current_price": close,
                "volume": volume,
                "timestamp": float(start + timeframe),
                "tier": tier,
                "source": tier,
                "direction": direction,
                "timeframe": label,
                "bar_start": start,
            },
        }

    def _reference(self, s: Signal, stamp: float) -> dict[str, Any]:
        """Build with full validation; remember what it accepted so the next such signal goes direct."""
        event = signal_to_event(s, now=stamp)
        if len(self._symbols) >= self.MAX_TRUSTED or len(self._names) >= self.MAX_TRUSTED:
            self._symbols.clear()
            self._names.clear()
        if type(s.symbol) is str and type(s.timeframe) is int:
            self._symbols.add(s.symbol)
            self._names.add((s.pattern, s.direction, s.timeframe))
            self._frames[s.timeframe] = (event["data"]["tier"], event["data"]["timeframe"])
        return event


def flow_ids(count: int) -> list[str]:
    """`count` canonical lower-case UUID4 strings, as `str(uuid.uuid4())` makes them (16 bytes from
    os.urandom, version and variant bits set), formatted in one numpy pass, not one UUID object each."""
    raw = np.frombuffer(os.urandom(16 * count), np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    nibbles = np.empty((count, 32), np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    digits = _HEX[nibbles]
    chars = np.full((count, 36), ord("-"), np.uint8)
    for lo, hi, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        chars[:, at : at + hi - lo] = digits[:, lo:hi]
    text = chars.tobytes().decode("ascii")
    return [text[i : i + 36] for i in range(0, 36 * count, 36)]


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


class StreamingEngine:
    """Feed closed bars with `process`; get the signals of those bars back, in input order."""

    EVICT_FRACTION = 0.1  # when full, forget this share of the series (the least recently updated)

    def __init__(
        self,
        pset: PatternSet | None = None,
        capacity: int = 256,
        width: int | None = None,
        max_series: int = contract.MAX_TRACKED_SYMBOLS,
    ) -> None:
        self.pset = pset or PatternSet()
        # A feed of ever-new symbols must not grow the state without bound: at `max_series` series, the
        # least recently updated ones are forgotten (their pattern history restarts if they come back).
        self.max_series = max_series
        self.evicted = 0
        self._free: list[int] = []  # rows of forgotten series, reused before the arrays grow
        self.width = max(width or 0, self.pset.width)  # a wider window changes nothing but memory
        self._rows: dict[tuple[str, int], int] = {}
        self._keys: list[tuple[str, int] | None] = []  # by row; None for a free row
        self._buf = np.full((FIELDS, capacity, self.width), np.nan)
        self._count = np.zeros(capacity, np.int64)  # bars in the window (capped at width)
        self._seen = np.zeros(capacity, np.int64)  # bars accepted since the series began
        self._last_start = np.full(capacity, np.iinfo(np.int64).min, np.int64)
        # TA-Lib's running totals at each series' last bar (rules.py), carried bar by bar.
        self._totals = {total: np.full(capacity, np.nan) for total in self.pset.totals}
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
        if codes.any():
            for code, number in zip(*np.unique(codes[codes > 0], return_counts=True), strict=True):
                self.rejected[REASONS[int(code) - 1]] += int(number)
            keep = np.flatnonzero(codes == 0)
            rows, starts, values = rows[keep], starts[keep], values[:, keep]
        if not len(rows):
            return []
        self.accepted += len(rows)
        win, totals = self._push(rows, starts, values)
        hits = evaluate(win, self.pset, totals)
        if not len(hits.rows):
            return []
        at = hits.rows if keep is None else keep[hits.rows]  # positions in the chunk
        return self._signals(win, hits, columns, at.tolist(), starts)

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
    ) -> list[Signal]:
        """Signals for the hits, built column-wise (plain Python values, as the event builder wants)."""
        names = self.pset.names
        rows = hits.rows
        symbols, timeframes = columns[0], columns[1]
        return list(
            map(
                Signal,
                [symbols[i] for i in at],
                [timeframes[i] for i in at],
                starts[rows].tolist(),
                [names[p] for p in hits.patterns.tolist()],
                [DIRECTIONS[d] for d in hits.directions.tolist()],
                hits.confidences.tolist(),
                win.close[rows, -1].tolist(),
                win.close[rows, -2].tolist(),
                win.volume[rows, -1].tolist(),
            )
        )
