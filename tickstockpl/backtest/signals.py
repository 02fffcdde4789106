"""The one place the backtester meets the detector: signals over a whole history.

The engine takes plain `Signal`s, so it can be tested on hand-made ones; `detect` produces them with
the detector's own `history_signals` (the code that emits live events bar by bar), never a copy.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np

from tickstockpl.patterns import ALL_CANDLES, DEFAULT_CUSTOM, PatternSet, history_signals

LONG, SHORT, FLAT = 1, -1, 0
_DIRECTION = {"bullish": LONG, "bearish": SHORT, "neutral": FLAT}


class Signal(NamedTuple):
    """A pattern on the bar at `bar_index` (detected at its close); direction +1 long, -1 short, 0 none."""

    bar_index: int
    pattern: str
    direction: int
    confidence: float


@cache
def known_patterns() -> frozenset[str]:
    """Names a job may ask for: every candlestick the detector publishes, and its four named patterns."""
    return frozenset(ALL_CANDLES) | {pattern.name for pattern in DEFAULT_CUSTOM}


def pattern_set(patterns: tuple[str, ...]) -> PatternSet:
    """The detector's PatternSet for exactly these names (unknown names: KeyError)."""
    unknown = set(patterns) - known_patterns()
    if unknown:
        raise KeyError(", ".join(sorted(unknown)))
    candles = tuple(name for name in ALL_CANDLES if name in patterns)
    custom = tuple(pattern for pattern in DEFAULT_CUSTOM if pattern.name in patterns)
    return PatternSet(candles=candles, custom=custom)


def warmup_bars(patterns: tuple[str, ...]) -> int:
    """Bars before the first judged bar that make a signal equal to the live detector's."""
    return pattern_set(patterns).width


def detect(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    patterns: tuple[str, ...],
) -> list[Signal]:
    """Signals for one symbol's bars (oldest first), in the detector's order (bar, then pattern)."""
    pset = pattern_set(patterns)
    return [
        Signal(s.bar_index, s.pattern, _DIRECTION[s.direction], s.confidence)
        for s in history_signals(open_, high, low, close, volume, pset)
    ]
