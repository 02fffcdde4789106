"""One pattern evaluation, two drivers: a streaming engine (one bar per symbol per boundary) and a
history scan for the backtester. Both call `evaluate` on rows of windows, so they cannot disagree.

`evaluate` judges the last bar of every row: TA-Lib candlesticks (candles.py, rules.py) and the four
custom patterns (custom.py). A row that has fewer bars than a pattern needs is skipped for that pattern:
that is the explicit warm-up, and no signal is ever produced from padding. Candlestick averages need
TA-Lib's running totals at each row's bar, which depend on the series since its first bar: the history
scan computes them over the whole series, the streaming engine carries them bar by bar (rules.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tickstockpl.patterns.candle_settings import Total
from tickstockpl.patterns.candles import (
    DEFAULT_CANDLES,
    FUNCTION_FOR,
    CandleSpec,
    candle_spec,
    detect_candles,
)
from tickstockpl.patterns.custom import DEFAULT_CUSTOM, CustomPattern
from tickstockpl.patterns.rules import totals_for
from tickstockpl.patterns.running_totals import series_totals
from tickstockpl.patterns.windows import FloatArray, Windows, history_windows, slice_rows, volume_score

DIRECTIONS = {1: "bullish", -1: "bearish", 0: "neutral"}
CONTEXT_BARS = 21  # candle confidence looks at up to 20 prior volumes and a 5-bar prior move


class Hits(NamedTuple):
    """Signals of one evaluation, sorted by (row, pattern index)."""

    rows: npt.NDArray[np.intp]
    patterns: npt.NDArray[np.intp]  # index into PatternSet.names
    directions: npt.NDArray[np.int8]
    confidences: FloatArray


@dataclass(frozen=True)
class PatternSet:
    """Which patterns run. `names` fixes each pattern's index, which orders signals within a bar."""

    candles: tuple[str, ...] = DEFAULT_CANDLES
    custom: tuple[CustomPattern, ...] = DEFAULT_CUSTOM
    specs: tuple[CandleSpec, ...] = field(init=False, repr=False, compare=False)
    totals: tuple[Total, ...] = field(init=False, repr=False, compare=False)  # what the rules read

    def __post_init__(self) -> None:
        object.__setattr__(self, "specs", tuple(candle_spec(name) for name in self.candles))
        object.__setattr__(self, "totals", totals_for(FUNCTION_FOR[name] for name in self.candles))

    @property
    def names(self) -> tuple[str, ...]:
        return self.candles + tuple(pattern.name for pattern in self.custom)

    @property
    def width(self) -> int:
        """Bars of history a window must hold for every pattern and its confidence."""
        needs = [spec.width for spec in self.specs] + [pattern.need for pattern in self.custom]
        return max([CONTEXT_BARS, *needs])

    def warmup(self, name: str) -> int:
        """Bars a series needs before `name` can fire."""
        for spec in self.specs:
            if spec.name == name:
                return spec.width
        return next(pattern.need for pattern in self.custom if pattern.name == name)


def evaluate(win: Windows, pset: PatternSet, totals: Mapping[Total, FloatArray] | None = None) -> Hits:
    """Judge the last bar of every row against every pattern in the set.

    `totals`: TA-Lib's running totals at each row's last bar (`pset.totals`), for the numpy rules;
    without them every candlestick goes through TA-Lib's batch functions (same answer, slower)."""
    vol = volume_score(win)
    parts: list[tuple[npt.NDArray[np.intp], int, npt.NDArray[np.int8], FloatArray]] = []
    index = {name: i for i, name in enumerate(pset.names)}
    for name, rows, direction, confidence in detect_candles(win, pset.specs, vol, totals):
        parts.append((rows, index[name], direction, confidence))
    for pattern in pset.custom:
        fires, direction, confidence = pattern.detect(win, vol)
        rows = np.flatnonzero(fires & (win.bars >= pattern.need))
        if len(rows):
            parts.append((rows, index[pattern.name], direction[rows], confidence[rows]))
    if not parts:
        empty = np.zeros(0, np.intp)
        return Hits(empty, empty, np.zeros(0, np.int8), np.zeros(0))
    rows = np.concatenate([p[0] for p in parts])
    patterns = np.concatenate([np.full(len(p[0]), p[1], np.intp) for p in parts])
    order = np.lexsort((patterns, rows))
    return Hits(
        rows[order],
        patterns[order],
        np.concatenate([p[2] for p in parts])[order],
        np.clip(np.concatenate([p[3] for p in parts]), 0.0, 1.0)[order],
    )


class HistorySignal(NamedTuple):
    bar_index: int  # index of the bar in the arrays given
    pattern: str
    direction: str  # bullish / bearish / neutral
    confidence: float


def history_signals(
    open_: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    volume: npt.ArrayLike,
    pset: PatternSet | None = None,
    chunk: int = 20_000,
    width: int | None = None,
) -> list[HistorySignal]:
    """Every signal over a symbol's whole history (bars oldest first, already valid: see bars.py).

    Equal to what StreamingEngine emits bar by bar for the same series: same windows, same code.
    `chunk` bounds memory (rows evaluated per call) and `width` (>= pset.width) the window; neither
    changes the result.
    """
    pset = pset or PatternSet()
    arrays = [np.asarray(a, dtype=np.float64) for a in (open_, high, low, close, volume)]
    win = history_windows(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], max(width or 0, pset.width))
    totals = series_totals(arrays[0], arrays[1], arrays[2], arrays[3], pset.totals)
    out: list[HistorySignal] = []
    for start in range(0, win.rows, chunk):
        part = {total: values[start : start + chunk] for total, values in totals.items()}
        hits = evaluate(slice_rows(win, start, start + chunk), pset, part)
        out.extend(
            HistorySignal(int(r) + start, pset.names[p], DIRECTIONS[int(d)], float(c))
            for r, p, d, c in zip(hits.rows, hits.patterns, hits.directions, hits.confidences, strict=True)
        )
    return out
