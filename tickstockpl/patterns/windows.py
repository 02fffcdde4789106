"""The one input every pattern reads: a block of rolling windows, one row per (series, bar).

Each row holds the last `width` bars of one series, oldest first, the bar being judged in the last
column. The streaming engine builds one row per symbol at a bar boundary; `history_windows` builds one
row per bar of a whole history. Patterns are pure functions of these rows, which is why streaming and
backtesting give the same signals: they run the same code on the same numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Windows(NamedTuple):
    """Rows of rolling windows. `bars` is how many real bars each row holds (the rest is NaN padding
    on the left); a pattern that needs n bars ignores rows with bars < n: that is the warm-up."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    bars: IntArray

    @property
    def rows(self) -> int:
        return int(self.close.shape[0])

    @property
    def width(self) -> int:
        return int(self.close.shape[1])


def history_windows(
    open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray, volume: FloatArray, width: int
) -> Windows:
    """One row per bar of a series (row t = bars t-width+1 .. t), as zero-copy strided views."""
    pad = np.full(width - 1, np.nan)
    views = [
        sliding_window_view(np.concatenate([pad, np.asarray(series, dtype=np.float64)]), width)
        for series in (open_, high, low, close, volume)
    ]
    bars = np.minimum(np.arange(1, len(close) + 1, dtype=np.int64), width)
    return Windows(views[0], views[1], views[2], views[3], views[4], bars)


def slice_rows(win: Windows, start: int, stop: int) -> Windows:
    """Rows start..stop-1 (a chunk of a long history, to bound memory)."""
    return Windows(
        win.open[start:stop],
        win.high[start:stop],
        win.low[start:stop],
        win.close[start:stop],
        win.volume[start:stop],
        win.bars[start:stop],
    )


def average_range(win: Windows, bars: int, offset: int = 1) -> FloatArray:
    """Mean high-low range of `bars` bars ending `offset` bars before the last column: the yardstick
    that makes tolerances and breakout sizes comparable across a $5 stock and a $900 one."""
    end = win.width - offset
    return (win.high[:, end - bars : end] - win.low[:, end - bars : end]).mean(axis=1)


def volume_score(win: Windows, bars: int = 20) -> FloatArray:
    """0 at or below average volume, 1 at three times the average (of up to `bars` prior bars).

    Uses only the bars a row actually has (at least one), so it can be computed from the first bar a
    pattern may fire on and never delays a signal.
    """
    width = min(bars, win.width - 1)
    prior = win.volume[:, -1 - width : -1]
    known = ~np.isnan(prior)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = np.where(known, prior, 0.0).sum(axis=1) / known.sum(axis=1)
        score = np.clip((win.volume[:, -1] / avg - 1.0) / 2.0, 0.0, 1.0)
    return np.where(np.isfinite(score), score, 0.0)
