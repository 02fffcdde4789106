"""Candlesticks equal TA-Lib's own batch functions on every bar of the three real data files,
however the bars are windowed, chunked or interleaved."""

from __future__ import annotations

from collections import defaultdict
from itertools import groupby
from pathlib import Path

import numpy as np
import pytest
import talib

from tickstockpl import contract
from tickstockpl.bars import Bar
from tickstockpl.patterns import ALL_CANDLES, NEUTRAL_CANDLES, PatternSet, StreamingEngine, history_signals
from tickstockpl.patterns.candles import FUNCTION_FOR
from tickstockpl.sources.csv_replay import load_csv, merge_in_time

ALL = PatternSet(candles=ALL_CANDLES, custom=())
DATA = Path(__file__).resolve().parents[2] / "data"
FILES = ("daily_us_equities_2000_2013.csv", "hourly_aapl_2024_2026.csv", "minute_aapl_2026.csv")


def series(name: str) -> dict[str, tuple[list[Bar], list[np.ndarray]]]:
    """symbol -> (bars oldest first, [open, high, low, close, volume] arrays)."""
    by_symbol: dict[str, list[Bar]] = defaultdict(list)
    for bar in load_csv(DATA / name):
        by_symbol[bar.symbol].append(bar)
    out = {}
    for symbol, bars in by_symbol.items():
        arrays = [np.array([getattr(b, f) for b in bars]) for f in ("open", "high", "low", "close", "volume")]
        out[symbol] = (bars, arrays)
    return out


def talib_reference(arrays: list[np.ndarray]) -> set[tuple[int, str, str]]:
    """(bar index, pattern, direction) for every non-zero TA-Lib output over the whole series."""
    out = set()
    for name in ALL_CANDLES:
        values = getattr(talib, FUNCTION_FOR[name])(*arrays[:4])
        for index in np.flatnonzero(values):
            if name in NEUTRAL_CANDLES:
                assert values[index] > 0, "TA-Lib gives these no direction"
                direction = "neutral"
            else:
                direction = "bullish" if values[index] > 0 else "bearish"
            out.add((int(index), name, direction))
    return out


def test_the_ui_names_are_published_verbatim() -> None:
    assert set(contract.UI_CANDLESTICK_PATTERNS) <= set(ALL_CANDLES)
    assert set(contract.UI_CANDLESTICK_PATTERNS) <= set(PatternSet().names)
    assert len(ALL_CANDLES) == len(talib.get_function_groups()["Pattern Recognition"]) == 61


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize(("chunk", "extra_width"), [(20_000, 0), (997, 17)])
def test_history_signals_equal_talib_batch(name: str, chunk: int, extra_width: int) -> None:
    for _, (_, arrays) in series(name).items():
        got = {
            (s.bar_index, s.pattern, s.direction)
            for s in history_signals(*arrays, pset=ALL, chunk=chunk, width=ALL.width + extra_width)
        }
        assert got == talib_reference(arrays)


@pytest.mark.parametrize("name", FILES)
def test_streaming_equals_talib_batch_with_symbols_interleaved(name: str) -> None:
    data = series(name)
    engine = StreamingEngine(ALL, capacity=2)  # tiny capacity: the state must grow without loss
    signals = []
    feed = merge_in_time(bars for bars, _ in data.values())
    for _, boundary in groupby(feed, key=lambda b: b.close_time):
        signals.extend(engine.process(list(boundary)))
    assert engine.rejected == {}
    for symbol, (bars, arrays) in data.items():
        index_of = {bar.start: i for i, bar in enumerate(bars)}
        got = {(index_of[s.start], s.pattern, s.direction) for s in signals if s.symbol == symbol}
        assert got == talib_reference(arrays), symbol


def test_streaming_one_bar_per_call_equals_whole_boundaries() -> None:
    bars, _ = series("minute_aapl_2026.csv")["AAPL"]
    one = StreamingEngine(ALL)
    many = StreamingEngine(ALL, width=ALL.width + 9)
    singly = [s for bar in bars for s in one.process([bar])]
    assert singly == many.process(bars)


def test_reference_counts_from_the_data_readme() -> None:
    """A regression anchor: data/README.md lists TA-Lib 0.8.2's counts for these series."""
    expected = {"AAPL": (439, 56, 298, 281, 19, 12, 32), "FB": (16, 1, 13, 13, 1, 0, 3)}
    names = ("Doji", "Hammer", "Engulfing", "Harami", "MorningStar", "EveningStar", "ShootingStar")
    data = series("daily_us_equities_2000_2013.csv")
    for symbol, counts in expected.items():
        signals = history_signals(*data[symbol][1], pset=ALL)
        assert tuple(sum(s.pattern == n for s in signals) for n in names) == counts
