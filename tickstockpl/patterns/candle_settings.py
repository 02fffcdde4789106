"""What TA-Lib's candlestick rules compare with: its default candle settings, the identity of each
running total, and the rows' last bars as columns (Candles), with the averages the rules read.

Shared by the rules (rules.py), the running totals (running_totals.py) and the candle scan (candles.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int32]

BODY, HIGHLOW, SHADOWS = 0, 1, 2  # TA_RangeType_RealBody, _HighLow, _Shadows


class Setting(NamedTuple):
    range: int
    period: int
    factor: float


# TA_CandleDefaultSettings (src/ta_common/ta_global.c).
SETTINGS: dict[str, Setting] = {
    "BodyLong": Setting(BODY, 10, 1.0),
    "BodyVeryLong": Setting(BODY, 10, 3.0),
    "BodyShort": Setting(BODY, 10, 1.0),
    "BodyDoji": Setting(HIGHLOW, 10, 0.1),
    "ShadowLong": Setting(BODY, 0, 1.0),
    "ShadowVeryLong": Setting(BODY, 0, 2.0),
    "ShadowShort": Setting(SHADOWS, 10, 1.0),
    "ShadowVeryShort": Setting(HIGHLOW, 10, 0.1),
    "Near": Setting(HIGHLOW, 5, 0.2),
    "Far": Setting(HIGHLOW, 5, 0.6),
    "Equal": Setting(HIGHLOW, 5, 0.05),
}


class Total(NamedTuple):
    """One of TA-Lib's running totals: the sum of `range` over the `period` bars before the bar
    `back` bars before the one judged, as carried by a function whose first judged bar is `start`."""

    range: int
    period: int
    back: int
    start: int


class Candles:
    """The rows' last bars as columns (k = bars back from the bar judged), computed once and shared
    by every rule, plus the running totals for the rows."""

    def __init__(
        self,
        open_: FloatArray,
        high: FloatArray,
        low: FloatArray,
        close: FloatArray,
        totals: Mapping[Total, FloatArray],
    ) -> None:
        self._blocks = (open_, high, low, close)
        self.totals = totals
        self._cache: dict[tuple[str, int], FloatArray] = {}
        self._avg: dict[tuple[str, int, int], FloatArray] = {}

    def _column(self, field: int, k: int) -> FloatArray:
        return np.ascontiguousarray(self._blocks[field][:, -1 - k])

    def get(self, name: str, k: int) -> FloatArray:
        key = (name, k)
        value = self._cache.get(key)
        if value is None:
            value = self._compute(name, k)
            self._cache[key] = value
        return value

    def _compute(self, name: str, k: int) -> FloatArray:
        if name in ("o", "h", "l", "c"):
            return self._column("ohlc".index(name), k)
        o, c = self.get("o", k), self.get("c", k)
        if name == "body":  # TA_REALBODY: fabs(close - open)
            return np.abs(c - o)
        if name == "top":  # close >= open ? close : open
            return np.where(c >= o, c, o)
        if name == "bottom":  # close >= open ? open : close
            return np.where(c >= o, o, c)
        if name == "upper":  # TA_UPPERSHADOW
            return self.get("h", k) - self.get("top", k)
        if name == "lower":  # TA_LOWERSHADOW
            return self.get("bottom", k) - self.get("l", k)
        if name == "hl":  # TA_HIGHLOWRANGE
            return self.get("h", k) - self.get("l", k)
        raise KeyError(name)

    def white(self, k: int) -> BoolArray:
        """TA_CANDLECOLOR == 1 (close >= open)."""
        return self.get("c", k) >= self.get("o", k)

    def range(self, kind: int, k: int) -> FloatArray:
        """TA_CANDLERANGE."""
        if kind == BODY:
            return self.get("body", k)
        if kind == HIGHLOW:
            return self.get("hl", k)
        return self.get("upper", k) + self.get("lower", k)

    def avg(self, setting: str, k: int, start: int) -> FloatArray:
        """TA_CANDLEAVERAGE(setting, total, i - k) for a function whose first judged bar is `start`:
        factor * (total / period, or the bar's own range if period is 0) / (2 for shadows, else 1)."""
        key = (setting, k, start)
        value = self._avg.get(key)
        if value is None:
            s = SETTINGS[setting]
            if s.period:
                base = self.totals[Total(s.range, s.period, k, start)] / float(s.period)
            else:
                base = self.range(s.range, k)
            value = s.factor * base / (2.0 if s.range == SHADOWS else 1.0)
            self._avg[key] = value
        return value


class Rule(NamedTuple):
    function: str  # the TA-Lib function it reproduces
    lookback: int  # TA-Lib's lookback: the first bar it judges, and one less than its warm-up
    uses: tuple[tuple[str, int], ...]  # (setting, bars back) of every average it reads
    judge: Callable[[Candles, Callable[[str, int], FloatArray]], IntArray]

    def totals(self) -> list[Total]:
        out = []
        for setting, back in self.uses:
            s = SETTINGS[setting]
            if s.period:
                out.append(Total(s.range, s.period, back, self.lookback))
        return out

    def __call__(self, candles: Candles) -> IntArray:
        return self.judge(candles, lambda setting, k: candles.avg(setting, k, self.lookback))


Avg = Callable[[str, int], FloatArray]
