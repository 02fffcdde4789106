"""TA-Lib's running totals of candle ranges, carried exactly as TA-Lib carries them.

`series_totals` over a whole history (one cumulative sum each), `advance_totals` one bar at a time
in the streaming engine: the same float operations in the same order, so a bar's result is TA-Lib's
result on the series from its first bar, bit for bit (see rules.py for why that matters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from tickstockpl.patterns.candle_settings import BODY, HIGHLOW, FloatArray, Total


def _ranges(kind: int, open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """TA_CANDLERANGE over arrays of any shape."""
    if kind == BODY:
        return np.abs(close - open_)
    if kind == HIGHLOW:
        return high - low
    white = close >= open_
    return (high - np.where(white, close, open_)) + (np.where(white, open_, close) - low)


def series_totals(
    open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray, totals: Iterable[Total]
) -> dict[Total, FloatArray]:
    """Each total at every bar of one series (oldest first), NaN before its start: what TA-Lib's batch
    function carries over the whole series, computed with one sequential cumulative sum each."""
    n = len(close)
    out: dict[Total, FloatArray] = {}
    ranges: dict[int, FloatArray] = {}
    for total in totals:
        kind, period, back, start = total
        values = np.full(n, np.nan)
        if n > start:
            r = ranges.get(kind)
            if r is None:
                r = ranges[kind] = _ranges(kind, open_, high, low, close)
            first = 0.0
            for j in range(start - back - period, start - back):  # TA-Lib's initial loop, in order
                first += float(r[j])
            steps = r[start - back : n - 1 - back] - r[start - back - period : n - 1 - back - period]
            values[start:] = np.cumsum(np.concatenate(([first], steps)))  # left to right, as TA-Lib adds
        out[total] = values
    return out


def advance_totals(
    blocks: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    index: npt.NDArray[np.int64],
    previous: Mapping[Total, FloatArray],
) -> dict[Total, FloatArray]:
    """The totals for the rows' newest bars, from their windows (o, h, l, c; newest bar last) and the
    totals of the bar before: `index` is each newest bar's position in its series (0 = first bar).

    Rows at a total's start get TA-Lib's initial sum, rows past it `previous + (range(new) - range(old))`,
    rows before it NaN: the same operations, in the same order, as `series_totals`."""
    open_, high, low, close = blocks
    cache: dict[tuple[int, int], FloatArray] = {}

    def ranges(kind: int, back: int) -> FloatArray:
        """TA_CANDLERANGE of the bar `back` bars before each row's newest."""
        key = (kind, back)
        value = cache.get(key)
        if value is None:
            col = -1 - back
            value = _ranges(kind, open_[:, col], high[:, col], low[:, col], close[:, col])
            cache[key] = value
        return value

    out: dict[Total, FloatArray] = {}
    for total, before in previous.items():
        kind, period, back, start = total
        values = before + (ranges(kind, back + 1) - ranges(kind, back + 1 + period))
        values[index < start] = np.nan
        starting = np.flatnonzero(index == start)
        if len(starting):
            first = np.zeros(len(starting))
            for j in range(back + period, back, -1):  # oldest bar first, as TA-Lib's initial loop
                first = first + ranges(kind, j)[starting]
            values[starting] = first
        out[total] = values
    return out
