"""The candlestick confidence is the formula docs/patterns.md gives, recomputed here from TA-Lib's
output and the bars themselves, for every candlestick signal of the real daily file.

    0.5 + 0.1 x confirmed + 0.25 x volume score + 0.15 x reversal context

confirmed: |TA-Lib output| >= 200; volume score: 0 at the mean volume of the up to 20 bars before,
1 at three times it; reversal context: the 5-bar move before the bar (C[t-1] - C[t-6]) runs against
the signal's direction. Neutral patterns (the dojis) have no direction, so they never get it
(issue 17: a Doji after a decline used to get +0.15, as if TA-Lib's "+100, present" were bullish).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import talib

from tests.unit.test_patterns_talib import ALL, series
from tickstockpl.patterns import NEUTRAL_CANDLES, history_signals
from tickstockpl.patterns.candles import FUNCTION_FOR

SIGN = {"bullish": 1, "bearish": -1, "neutral": 0}


def documented_confidence(arrays: list[np.ndarray], row: int, raw: int, direction: str) -> float:
    volume, close = arrays[4], arrays[3]
    prior = volume[max(0, row - 20) : row]
    ratio = volume[row] / prior.mean() if len(prior) and prior.mean() > 0 else 1.0
    volume_score = min(1.0, max(0.0, (ratio - 1.0) / 2.0))
    against = row >= 6 and SIGN[direction] * (close[row - 1] - close[row - 6]) < 0
    return 0.5 + 0.1 * (abs(raw) >= 200) + 0.25 * volume_score + 0.15 * against


def test_every_candlestick_confidence_is_the_documented_formula() -> None:
    checked: Counter[str] = Counter()
    for _, arrays in series("daily_us_equities_2000_2013.csv").values():
        raw = {name: getattr(talib, FUNCTION_FOR[name])(*arrays[:4]) for name in ALL.candles}
        for signal in history_signals(*arrays, pset=ALL):
            row, close = signal.bar_index, arrays[3]
            expected = documented_confidence(arrays, row, int(raw[signal.pattern][row]), signal.direction)
            assert signal.confidence == pytest.approx(expected), signal
            declined = row >= 6 and close[row - 1] < close[row - 6]
            if signal.pattern in NEUTRAL_CANDLES and declined:
                checked["neutral after a decline"] += 1
            elif signal.direction == "bullish" and declined:
                checked["bullish after a decline"] += 1
    # Both cases the rule separates are on the file, many times over.
    assert checked["neutral after a decline"] > 100 and checked["bullish after a decline"] > 100, checked
