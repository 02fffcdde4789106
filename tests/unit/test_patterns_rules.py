"""The numpy candlestick rules give TA-Lib's output on hypothesis-generated OHLC series (ties included),
and their running totals are TA-Lib's, bit for bit, whether computed over a history or bar by bar."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from talib import abstract

from tests.unit.test_patterns_talib import series
from tickstockpl.bars import Bar
from tickstockpl.patterns import DEFAULT_CANDLES, NEUTRAL_CANDLES, PatternSet, StreamingEngine
from tickstockpl.patterns.candle_settings import BODY, HIGHLOW, SHADOWS, Candles, Total
from tickstockpl.patterns.candles import CANDLE_FUNCTIONS, FUNCTION_FOR
from tickstockpl.patterns.engine import evaluate
from tickstockpl.patterns.rules import RULES
from tickstockpl.patterns.running_totals import advance_totals, series_totals
from tickstockpl.patterns.windows import history_windows

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CANDLES_ONLY = PatternSet(custom=())


@st.composite
def ohlc(draw: st.DrawFn, min_size: int = 15, max_size: int = 90) -> list[np.ndarray]:
    """A price series with what trips comparisons: prices on a tick grid (or not), dojis (open ==
    close), shadowless bars, gaps, opens at the prior close, and prices from pennies to thousands."""
    n = draw(st.integers(min_size, max_size))
    seed = draw(st.integers(0, 2**32 - 1))
    grid = draw(st.sampled_from([0.0, 0.01, 0.05, 0.25, 1.0]))
    level = draw(st.sampled_from([0.05, 3.0, 40.0, 250.0, 4_000.0]))
    rng = np.random.default_rng(seed)
    vol = level * draw(st.sampled_from([0.002, 0.01, 0.05]))
    close = level + np.cumsum(rng.normal(0, vol, n))
    close = np.maximum(close, level * 0.2)
    prev = np.concatenate(([close[0]], close[:-1]))
    open_ = np.where(rng.random(n) < 0.3, prev, close + rng.normal(0, vol, n))
    open_ = np.where(rng.random(n) < 0.15, close, open_)  # dojis
    open_ = np.maximum(open_, level * 0.1)
    shadow = np.abs(rng.normal(0, vol * 0.6, (2, n))) * (rng.random((2, n)) < 0.8)  # some none
    high = np.maximum(open_, close) + shadow[0]
    low = np.minimum(open_, close) - shadow[1]
    if grid:
        tick = grid * max(1.0, level / 100)
        open_, high, low, close = (np.round(a / tick) * tick for a in (open_, high, low, close))
        low = np.maximum(low, tick)
        open_, close = np.maximum(open_, low), np.maximum(close, low)
        high = np.maximum(high, np.maximum(open_, close))
    return [open_, high, low, close]


def rule_output(arrays: list[np.ndarray], function: str) -> np.ndarray:
    """The rule's output at every bar of a series, from the history totals (0 during warm-up)."""
    rule = RULES[function]
    o, h, low, c = arrays
    totals = series_totals(o, h, low, c, rule.totals())
    width = 5
    blocks = [sliding_window_view(np.concatenate((np.full(width - 1, np.nan), a)), width) for a in arrays]
    with np.errstate(invalid="ignore"):
        raw = rule(Candles(blocks[0], blocks[1], blocks[2], blocks[3], totals))
    raw[: rule.lookback] = 0
    return raw


def test_the_default_set_has_rules_with_talibs_lookbacks() -> None:
    assert {FUNCTION_FOR[name] for name in DEFAULT_CANDLES} <= set(RULES)
    assert all(spec.rule is not None for spec in CANDLES_ONLY.specs)
    for function, rule in RULES.items():
        assert function in CANDLE_FUNCTIONS
        assert rule.lookback == abstract.Function(function).lookback, function  # type: ignore[attr-defined]


@PROPERTY
@given(arrays=ohlc())
def test_every_rule_gives_talibs_output_on_every_bar(arrays: list[np.ndarray]) -> None:
    for function in RULES:
        expected = getattr(talib, function)(*arrays)
        assert np.array_equal(rule_output(arrays, function), expected), function


@PROPERTY
@given(arrays=ohlc(max_size=60), volume=st.integers(1, 10**7))
def test_streaming_one_bar_at_a_time_equals_talib(arrays: list[np.ndarray], volume: int) -> None:
    o, h, low, c = (a.tolist() for a in arrays)
    bars = [Bar("X", 60, 60 * i, o[i], h[i], low[i], c[i], float(volume)) for i in range(len(c))]
    engine = StreamingEngine(CANDLES_ONLY)
    got = {(s.start // 60, s.pattern, s.direction) for bar in bars for s in engine.process([bar])}
    assert engine.rejected == {}
    expected = set()
    for name in CANDLES_ONLY.candles:
        values = getattr(talib, FUNCTION_FOR[name])(*arrays)
        for i in np.flatnonzero(values):
            direction = "neutral" if name in NEUTRAL_CANDLES else ("bullish" if values[i] > 0 else "bearish")
            expected.add((int(i), name, direction))
    assert got == expected


def talib_total(ranges: list[float], total: Total) -> list[float]:
    """TA-Lib's loop, transcribed literally (scalar floats): the total used at each bar from `start`."""
    kind, period, back, start = total
    value = 0.0
    for i in range(start - period, start):  # the initial loop over the trailing bars
        value += ranges[i - back]
    out = []
    for i in range(start, len(ranges)):
        out.append(value)
        value += ranges[i - back] - ranges[i - back - period]  # after the bar is judged
    return out


def candle_ranges(arrays: list[np.ndarray], kind: int) -> list[float]:
    o, h, low, c = (a.tolist() for a in arrays)
    if kind == BODY:
        return [abs(c[i] - o[i]) for i in range(len(c))]
    if kind == HIGHLOW:
        return [h[i] - low[i] for i in range(len(c))]
    return [
        (h[i] - (c[i] if c[i] >= o[i] else o[i])) + ((o[i] if c[i] >= o[i] else c[i]) - low[i])
        for i in range(len(c))
    ]


TOTALS = [
    Total(kind, period, back, start)
    for kind in (BODY, HIGHLOW, SHADOWS)
    for period, back, start in ((10, 0, 10), (10, 1, 11), (5, 1, 11), (10, 2, 12), (5, 2, 12), (10, 2, 13))
]


@PROPERTY
@given(arrays=ohlc(min_size=14, max_size=80), scale=st.sampled_from([1.0, 1e-3, 7.77e5]))
def test_running_totals_are_talibs_bit_for_bit_in_history_and_streaming(
    arrays: list[np.ndarray], scale: float
) -> None:
    arrays = [a * scale for a in arrays]  # prices from fractions of a cent to millions: rounding shows
    history = series_totals(arrays[0], arrays[1], arrays[2], arrays[3], TOTALS)
    width = 16
    blocks = [np.full((1, width), np.nan) for _ in range(4)]
    carried = {total: np.full(1, np.nan) for total in TOTALS}
    for i in range(len(arrays[0])):
        for block, values in zip(blocks, arrays, strict=True):
            block[0, :-1] = block[0, 1:].copy()
            block[0, -1] = values[i]
        carried = advance_totals((blocks[0], blocks[1], blocks[2], blocks[3]), np.array([i]), carried)
        for total in TOTALS:
            assert np.array_equal(carried[total], history[total][i : i + 1], equal_nan=True), (total, i)
    for total in TOTALS:
        expected = talib_total(candle_ranges(arrays, total.range), total)
        assert history[total][total.start :].tolist() == expected, total  # == on floats: bit for bit
        assert np.isnan(history[total][: total.start]).all()


@pytest.mark.parametrize("name", ["daily_us_equities_2000_2013.csv", "minute_aapl_2026.csv"])
def test_rules_and_talib_batch_paths_agree_on_real_data(name: str) -> None:
    """The same windows through the numpy rules (with totals) and through TA-Lib's batch functions
    (without): the two paths of candles.detect_candles give the same hits."""

    for _, (_, (o, h, low, c, v)) in series(name).items():
        win = history_windows(o, h, low, c, v, CANDLES_ONLY.width)
        totals = series_totals(o, h, low, c, CANDLES_ONLY.totals)
        fast, batch = evaluate(win, CANDLES_ONLY, totals), evaluate(win, CANDLES_ONLY)
        assert len(fast.rows) > 10
        for got, expected in zip(fast, batch, strict=True):
            assert np.array_equal(np.asarray(got), np.asarray(expected))
