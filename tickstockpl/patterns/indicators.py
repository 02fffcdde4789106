"""The indicators every pattern event carries (`data.indicators`, contract §2.3), kept bar by bar.

The streaming engine advances them once per accepted bar, from the bars the patterns see, with fixed
state per series (RSI's two Wilder averages, the last N-bar growth, and a ring of the last N closes
when N reaches past the engine's window): a
bar costs the same whether its series has 30 bars or 30,000, and 10,000 series are a handful of array
operations. Each value equals a batch computation over the whole series (tests/unit/test_indicators.py
checks every pattern bar of the real data files against TA-Lib and pandas). A value that is not
defined yet is NaN in these arrays and None in a Signal, and the event leaves it out: never NaN,
null or infinity on the wire.

- `rsi`: RSI(14), Wilder's smoothing, as `talib.RSI` computes it: the plain means of the first 14
  gains and losses at the 15th bar, then `avg = (avg * 13 + x) / 14`; `100 * (gain / (gain + loss))`,
  and 0 where the close has not moved at all (TA-Lib's rule). The same operations in the same order,
  and, like the TA-Lib we depend on (its C is compiled to multiply by 1/14, not divide by 14), a
  multiplication by the reciprocal: equal to `talib.RSI` bit for bit on the real data files.
- `relative_volume`: `V_t / mean(V_{t-20} .. V_{t-1})`, the mean of the 20 bars *before* the bar, so
  a spike does not dilute its own yardstick (pandas: `volume / volume.rolling(20).mean().shift(1)`).
  Defined from the 21st bar, and left out while those 20 bars have no volume at all.
- `relative_strength`: the series' growth over N bars against its benchmark's,
  `(C_t / C_{t-N}) / B`: 1.0 is in line with the benchmark (the consumer shows it as "1.0x"), 1.1 is
  10 % better. The benchmark B is either the equal-weighted universe (empty TICKSTOCKPL_RS_BENCHMARK):
  the mean of `C_t / C_{t-N}` over every series of the same timeframe and bar start handed to the
  engine together (one boundary: an equal-weighted basket bought N bars ago), or one benchmark
  series (TICKSTOCKPL_RS_BENCHMARK=SPY): SPY's growth at the same timeframe and bar start, from this
  boundary or an earlier batch. Defined from the series' (N+1)th bar, when B is known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from tickstockpl.patterns.windows import FloatArray, IntArray

RSI_PERIOD: Final = 14
_BY_PERIOD: Final = 1.0 / RSI_PERIOD
RELATIVE_VOLUME_BARS: Final = 20
DEFAULT_RS_BARS: Final = 20
MAX_RS_BARS: Final = 1000  # the ring costs 8 bytes per bar per series: bounded, whatever the setting

Rows = slice | npt.NDArray[np.intp]


class Indicators:
    """Per-series indicator state, one row per series (the streaming engine's rows, whose windows
    hold the last `width` bars)."""

    def __init__(
        self, capacity: int, width: int, rs_bars: int = DEFAULT_RS_BARS, rs_benchmark: str = ""
    ) -> None:
        if not 1 <= rs_bars <= MAX_RS_BARS:
            raise ValueError(f"rs_bars must be within 1-{MAX_RS_BARS}, got {rs_bars}")
        self.rs_bars = rs_bars
        self.rs_benchmark = rs_benchmark
        self._gain = np.zeros(capacity)  # RSI: the sum of gains while seeding, then Wilder's average
        self._loss = np.zeros(capacity)
        self.growth = np.full(capacity, np.nan)  # C_t / C_{t-N} at each series' last bar
        # The close N bars back is in the window when N < width; else a ring keeps the last N closes
        # (the close of bar i at i % N).
        self._ring = np.full((capacity, rs_bars), np.nan) if rs_bars >= width else None

    def grow(self, extra: int) -> None:
        """Room for `extra` more series."""
        self._gain = np.concatenate([self._gain, np.zeros(extra)])
        self._loss = np.concatenate([self._loss, np.zeros(extra)])
        self.growth = np.concatenate([self.growth, np.full(extra, np.nan)])
        if self._ring is not None:
            self._ring = np.concatenate([self._ring, np.full((extra, self.rs_bars), np.nan)])

    def advance(self, where: Rows, rows: npt.NDArray[np.intp], index: IntArray, closes: FloatArray) -> None:
        """Carry the state over each row's newest bar: `closes` are the rows' windows of closes
        (newest last, NaN padding before a series' first bar), `index` the newest bar's position in
        its series (0 = the first). `where` selects the same rows as `rows` (a slice when they are
        consecutive, which is cheaper)."""
        close = closes[:, -1]
        diff = close - closes[:, -2]  # NaN at a series' first bar
        up = np.maximum(diff, 0.0)  # TA-Lib adds a gain when diff >= 0, subtracts a loss when < 0:
        down = -np.minimum(diff, 0.0)  # adding 0.0 for the other one changes no bit
        seeding = not bool((index > RSI_PERIOD).all())  # some series still in their first 15 bars
        self._gain[where] = _wilder(self._gain[where], up, index, seeding)
        self._loss[where] = _wilder(self._loss[where], down, index, seeding)
        if self._ring is None:
            self.growth[where] = close / closes[:, -1 - self.rs_bars]  # NaN while it is padding
            return
        slot = index % self.rs_bars
        before = self._ring[rows, slot]  # the close rs_bars bars ago, once the ring has gone round
        self._ring[rows, slot] = close
        self.growth[where] = np.where(index >= self.rs_bars, close / before, np.nan)

    def rsi(self, rows: npt.NDArray[np.intp], index: IntArray) -> FloatArray:
        """RSI at the rows' last bars (NaN before the 15th bar)."""
        gain, loss = self._gain[rows], self._loss[rows]
        total = gain + loss
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(total != 0.0, 100.0 * (gain / total), 0.0)
        return np.where(index >= RSI_PERIOD, value, np.nan)

    def relative_strength(
        self,
        rows: npt.NDArray[np.intp],
        hits: npt.NDArray[np.intp],
        starts: IntArray,
        timeframes: Sequence[int],
        benchmark_row: Callable[[int], int | None],
        last_start: IntArray,
    ) -> FloatArray:
        """Relative strength at the bars `hits` (positions in `rows`) of one boundary-like batch:
        `rows`, `starts` and `timeframes` describe every accepted bar handed over together, the universe.
        `benchmark_row(timeframe)` finds the benchmark series' row; `last_start` is each row's last bar."""
        growth = self.growth[rows[hits]]
        if self.rs_benchmark:
            bench = np.full(len(hits), np.nan)
            for timeframe in set(timeframes[i] for i in hits.tolist()):
                row = benchmark_row(timeframe)
                if row is None:
                    continue
                mine = np.fromiter((timeframes[i] == timeframe for i in hits.tolist()), bool, len(hits))
                same_bar = mine & (starts[hits] == last_start[row])
                bench[same_bar] = self.growth[row]
        else:
            bench = universe_means(self.growth[rows], starts, timeframes)[hits]
        return growth / bench


def _wilder(average: FloatArray, move: FloatArray, index: IntArray, seeding: bool) -> FloatArray:
    """One of RSI's averages after a bar: the sum of the moves while seeding (bars 1-14), their mean
    at bar 14, then `(average * 13 + move) * (1 / 14)` (0 at a series' first bar)."""
    period = RSI_PERIOD
    if not seeding:  # every series past its seeding: the usual case
        return (average * (period - 1) + move) * _BY_PERIOD
    with np.errstate(invalid="ignore"):  # a first bar's move is NaN (no close before it)
        smoothed = (average * (period - 1) + move) * _BY_PERIOD
        summed = average + move
    summed = np.where(index == period, summed * _BY_PERIOD, summed)
    return np.where(index > period, smoothed, np.where(index >= 1, summed, 0.0))


def relative_volume(volume: FloatArray) -> FloatArray:
    """`V_t / mean(V_{t-20} .. V_{t-1})` per window row (newest bar last); NaN until defined.

    einsum sums a row several times faster than `mean(axis=1)` over 20 columns (in another order:
    the same up to rounding, and exactly the same for whole-share volumes)."""
    prior = np.einsum("ij->i", volume[:, -1 - RELATIVE_VOLUME_BARS : -1]) / RELATIVE_VOLUME_BARS
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN while the window has padding
        return np.where(prior > 0.0, volume[:, -1] / prior, np.nan)


def defined(values: FloatArray) -> list[float | None]:
    """Plain floats for a Signal, None where not defined (NaN)."""
    out: list[float | None] = values.tolist()
    if np.isnan(values).any():  # during warm-up; after it, the list is returned as it is
        out = [None if value != value else value for value in out]
    return out


def universe_means(growth: FloatArray, starts: IntArray, timeframes: Sequence[int]) -> FloatArray:
    """Per bar, the mean growth of the bars with its timeframe and start (NaN growth not counted)."""
    if timeframes.count(timeframes[0]) == len(timeframes) and bool((starts == starts[0]).all()):
        mean = growth.mean()  # one boundary of one timeframe: the usual case, and every growth known
        if np.isnan(mean):
            known = growth[~np.isnan(growth)]
            mean = known.mean() if len(known) else np.nan
        return np.full(len(growth), mean)
    known = ~np.isnan(growth)
    keys = list(zip(timeframes, starts.tolist(), strict=True))
    group = {key: number for number, key in enumerate(dict.fromkeys(keys))}
    ids = np.fromiter((group[key] for key in keys), np.intp, len(keys))
    sums = np.bincount(ids[known], growth[known], minlength=len(group))
    counts = np.bincount(ids[known], minlength=len(group))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts)[ids]
