"""The integration document's four named patterns, defined precisely (see docs/patterns.md).

Each one is a condition on the bar being judged and the bars before it. All four are condition-type
patterns: they emit on the bar where the condition becomes true, not on every bar where it still holds,
so each checks the condition on the previous bar too (same rule, one bar earlier) and fires only when
that was false. Every quantity is a pure function of the window, so streaming and history agree.

Notation: bar t is the bar being judged; "the prior N bars" are t-N .. t-1; AR is the average
high-low range of the 14 bars before the bar in question (the scale for tolerances and excesses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from tickstockpl.patterns.windows import FloatArray, Windows, average_range

BoolArray = npt.NDArray[np.bool_]
Detection = tuple[BoolArray, npt.NDArray[np.int8], FloatArray]  # fires, direction (+1/-1), confidence
RANGE_BARS = 14  # bars in AR


class CustomPattern(Protocol):
    name: ClassVar[str]

    @property
    def need(self) -> int:
        """Bars a series must have before this pattern may fire (its warm-up)."""
        ...

    def detect(self, win: Windows, vol_score: FloatArray) -> Detection: ...


def _prior(block: FloatArray, bars: int, offset: int) -> FloatArray:
    """The `bars` columns before the bar `offset` bars back from the last column."""
    end = block.shape[1] - 1 - offset
    return block[:, end - bars : end]


def _at(block: FloatArray, offset: int) -> FloatArray:
    return block[:, -1 - offset]


@dataclass(frozen=True)
class VolumeSpike:
    """Volume_Spike: V_t >= multiple x mean(V over the prior `lookback` bars), that mean > 0.

    Direction: bullish if C_t >= C_t-1, else bearish. Confidence: 0.5 at the threshold, rising linearly
    to 1.0 at twice the threshold (6x average volume by default).
    """

    name: ClassVar[str] = "Volume_Spike"
    lookback: int = 20
    multiple: float = 3.0

    @property
    def need(self) -> int:
        return self.lookback + 2

    def _condition(self, win: Windows, offset: int) -> tuple[BoolArray, FloatArray]:
        avg = _prior(win.volume, self.lookback, offset).mean(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = _at(win.volume, offset) / avg
            return (avg > 0) & (ratio >= self.multiple), ratio

    def detect(self, win: Windows, vol_score: FloatArray) -> Detection:
        now, ratio = self._condition(win, 0)
        before, _ = self._condition(win, 1)
        direction = np.where(win.close[:, -1] >= win.close[:, -2], 1, -1).astype(np.int8)
        with np.errstate(invalid="ignore"):
            confidence = np.clip(0.5 + 0.5 * (ratio - self.multiple) / self.multiple, 0.5, 1.0)
        return now & ~before, direction, confidence


@dataclass(frozen=True)
class PriceBreakout:
    """Price_Breakout: the close leaves the prior `lookback` bars' range (a Donchian channel break).

    Bullish when C_t > max(H of the prior N bars), bearish when C_t < min(L of the prior N bars).
    Confidence: 0.4 + 0.3 x min(1, excess / AR) + 0.3 x volume score, where excess is how far the close
    is beyond the channel and the volume score is 0 at average volume and 1 at three times it.
    """

    name: ClassVar[str] = "Price_Breakout"
    lookback: int = 20

    @property
    def need(self) -> int:
        return max(self.lookback, RANGE_BARS) + 2

    def _levels(self, win: Windows, offset: int) -> tuple[FloatArray, FloatArray]:
        return _prior(win.high, self.lookback, offset).max(axis=1), _prior(
            win.low, self.lookback, offset
        ).min(axis=1)

    def detect(self, win: Windows, vol_score: FloatArray) -> Detection:
        top, bottom = self._levels(win, 0)
        top_before, bottom_before = self._levels(win, 1)
        close, close_before = _at(win.close, 0), _at(win.close, 1)
        up = (close > top) & ~(close_before > top_before)
        down = (close < bottom) & ~(close_before < bottom_before)
        excess = np.where(up, close - top, bottom - close)
        with np.errstate(invalid="ignore", divide="ignore"):
            size = np.nan_to_num(np.minimum(1.0, excess / average_range(win, RANGE_BARS)), nan=1.0)
        confidence = np.clip(0.4 + 0.3 * size + 0.3 * vol_score, 0.0, 1.0)
        return up | down, np.where(down, -1, 1).astype(np.int8), confidence


@dataclass(frozen=True)
class SupportTest:
    """Support_Test: price comes back to an established support level and holds it.

    Level S = min(L of the prior N bars); zone = S +/- tolerance x AR. The level is established when at
    least `min_touches` of the prior N bars have a low inside the zone's upper bound (L <= S + tol).
    The bar tests it when its low is inside the zone and it closes above the zone (C_t > S + tol).
    Always bullish. Confidence: 0.4 + 0.1 x min(touches - 1, 3) + 0.3 x lower-wick share of the bar's
    range ((min(O, C) - L) / (H - L)): more touches and a sharper rejection mean a firmer level.
    """

    name: ClassVar[str] = "Support_Test"
    lookback: int = 30
    tolerance: float = 0.25
    min_touches: int = 2

    @property
    def need(self) -> int:
        return max(self.lookback, RANGE_BARS + 1) + 2

    def _condition(self, win: Windows, offset: int) -> tuple[BoolArray, FloatArray]:
        lows = _prior(win.low, self.lookback, offset)
        level = lows.min(axis=1)
        tol = self.tolerance * average_range(win, RANGE_BARS, offset + 1)
        touches = (lows <= (level + tol)[:, None]).sum(axis=1)
        low, close = _at(win.low, offset), _at(win.close, offset)
        held = (
            (touches >= self.min_touches)
            & (low >= level - tol)
            & (low <= level + tol)
            & (close > level + tol)
        )
        return held, touches.astype(np.float64)

    def detect(self, win: Windows, vol_score: FloatArray) -> Detection:
        now, touches = self._condition(win, 0)
        before, _ = self._condition(win, 1)
        o, h, low, c = win.open[:, -1], win.high[:, -1], win.low[:, -1], win.close[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            wick = np.nan_to_num((np.minimum(o, c) - low) / (h - low), nan=0.0, posinf=0.0)
        confidence = np.clip(0.4 + 0.1 * np.minimum(touches - 1, 3) + 0.3 * wick, 0.0, 1.0)
        return now & ~before, np.ones(win.rows, np.int8), confidence


@dataclass(frozen=True)
class ResistanceBreak:
    """Resistance_Break: the close clears an established resistance level by more than the tolerance.

    Level R = max(H of the prior N bars); established when at least `min_touches` of the prior N bars
    have a high within the tolerance (H >= R - tolerance x AR). Fires when C_t > R + tol. Always bullish.
    Confidence: 0.4 + 0.1 x min(touches - 1, 2) + 0.2 x min(1, (C_t - R) / AR) + 0.2 x volume score.
    """

    name: ClassVar[str] = "Resistance_Break"
    lookback: int = 30
    tolerance: float = 0.25
    min_touches: int = 2

    @property
    def need(self) -> int:
        return max(self.lookback, RANGE_BARS + 1) + 2

    def _condition(self, win: Windows, offset: int) -> tuple[BoolArray, FloatArray, FloatArray]:
        highs = _prior(win.high, self.lookback, offset)
        level = highs.max(axis=1)
        tol = self.tolerance * average_range(win, RANGE_BARS, offset + 1)
        touches = (highs >= (level - tol)[:, None]).sum(axis=1)
        broke = (touches >= self.min_touches) & (_at(win.close, offset) > level + tol)
        return broke, touches.astype(np.float64), level

    def detect(self, win: Windows, vol_score: FloatArray) -> Detection:
        now, touches, level = self._condition(win, 0)
        before, _, _ = self._condition(win, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            size = np.minimum(1.0, (win.close[:, -1] - level) / average_range(win, RANGE_BARS))
        size = np.nan_to_num(size, nan=1.0)
        confidence = np.clip(0.4 + 0.1 * np.minimum(touches - 1, 2) + 0.2 * size + 0.2 * vol_score, 0.0, 1.0)
        return now & ~before, np.ones(win.rows, np.int8), confidence


DEFAULT_CUSTOM: tuple[CustomPattern, ...] = (VolumeSpike(), PriceBreakout(), SupportTest(), ResistanceBreak())
