"""The engine against numbers worked out by hand, its edge rules, and the pandas reference on random data."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.backtest_reference import reference_trades
from tickstockpl.backtest import metrics
from tickstockpl.backtest.engine import (
    END_OF_DATA,
    MAX_HOLDING,
    STOP_LOSS,
    TAKE_PROFIT,
    History,
    simulate,
)
from tickstockpl.backtest.jobs import Parameters
from tickstockpl.backtest.signals import Signal

DAY = 86_400
# Round numbers so every figure below can be checked with pencil and paper.
HAND = Parameters(
    initial_capital=10_000,
    commission_rate=0.001,
    slippage_rate=0.01,
    max_position_size=0.5,  # 5,000 per trade
    stop_loss_pct=0.05,
    take_profit_pct=0.10,
    max_holding_bars=3,
)
#         open   high   low    close
BARS = [
    (100.0, 101.0, 99.0, 100.0),  # 0
    (100.0, 102.0, 98.0, 101.0),  # 1  long signal
    (100.0, 104.0, 99.0, 103.0),  # 2  enter long at 100 -> fill 101; stop 95.95, target 111.1
    (104.0, 112.0, 103.0, 110.0),  # 3  high 112 >= 111.1: take profit; short signal on this bar
    (110.0, 111.0, 107.0, 108.0),  # 4  enter short at 110 -> fill 108.9; stop 114.345, target 98.01
    (107.0, 109.0, 105.0, 106.0),  # 5  (a long signal on bar 4 is skipped: position open; Doji here)
    (105.0, 106.0, 104.0, 105.0),  # 6  third bar held: exit at the close 105 -> fill 106.05
    (105.0, 106.0, 100.0, 101.0),  # 7  long signal
    (100.0, 102.0, 99.0, 100.0),  # 8  enter long at 100 -> fill 101; stop 95.95
    (90.0, 92.0, 89.0, 91.0),  # 9  opens at 90, below the stop: out at the open -> fill 89.1
]
HAND_SIGNALS = [
    Signal(1, "Hammer", 1, 0.7),
    Signal(3, "EveningStar", -1, 0.6),
    Signal(4, "Engulfing", 1, 0.9),
    Signal(5, "Doji", 0, 0.8),
    Signal(7, "Hammer", 1, 0.6),
    Signal(9, "Hammer", 1, 0.6),  # the last bar: no next open to enter at
]


def history(bars: list[tuple[float, float, float, float]], first: int = 0, symbol: str = "TEST") -> History:
    data = np.array(bars, dtype=float)
    times = np.arange(len(bars), dtype=np.int64) * DAY
    return History(symbol, times, data[:, 0], data[:, 1], data[:, 2], data[:, 3], np.ones(len(bars)), first)


def test_hand_computed_trades() -> None:
    run = simulate(history(BARS), HAND_SIGNALS, HAND)
    got = [(t.pattern, t.direction, t.entry_index, t.exit_index, t.exit_reason) for t in run.trades]
    assert got == [
        ("Hammer", 1, 2, 3, TAKE_PROFIT),
        ("EveningStar", -1, 4, 6, MAX_HOLDING),
        ("Hammer", 1, 8, 9, STOP_LOSS),
    ]
    first, second, third = run.trades
    # Long: 5000/101 = 49.50495 shares; (109.989 - 101) x 5000/101 = 445.0; commission
    # 0.001 x 5000/101 x (101 + 109.989) = 10.445; P&L 434.555.
    assert (first.entry_price, first.exit_price) == pytest.approx((101.0, 109.989))
    assert first.commission == pytest.approx(10.445)
    assert first.pnl == pytest.approx(434.555)
    # Short: fill 110 x 0.99 = 108.9, out at 105 x 1.01 = 106.05; 5000/108.9 x 2.85 = 130.85399;
    # commission 0.001 x 5000/108.9 x 214.95 = 9.86915; P&L 120.98485.
    assert (second.entry_price, second.exit_price) == pytest.approx((108.9, 106.05))
    assert second.pnl == pytest.approx(130.853994 - 9.869146)
    # Gap through the stop: out at the open 90 x 0.99 = 89.1, not at 95.95.
    # 5000/101 x (89.1 - 101) = -589.10891; commission 0.001 x 5000/101 x 190.1 = 9.41089.
    assert third.exit_price == pytest.approx(89.1)
    assert third.pnl == pytest.approx(-589.108911 - 9.410891)
    assert (run.signals, run.neutral, run.skipped) == (6, 1, 2)


def test_hand_computed_metrics() -> None:
    run = simulate(history(BARS), HAND_SIGNALS, HAND)
    result = metrics.summarize(run.trades, np.arange(10, dtype=np.int64) * DAY, 10_000, DAY)
    assert result["total_trades"] == 3 and result["winning_trades"] == 2
    assert result["win_rate"] == pytest.approx(2 / 3)
    # 434.555 + 120.98485 - 598.51980 = -42.97995 on 10,000.
    assert result["roi"] == pytest.approx(-0.004297995)
    # Peak 10,555.53985 after the short; the stop takes it to 9,957.02005: 598.5198 / 10,555.53985.
    assert result["max_drawdown"] == pytest.approx(0.0567019604)
    # Per-bar returns of the equity curve: three steps, zero elsewhere (ten bars).
    returns = [0, 0, 0, 434.555 / 10_000, 0, 0, 120.984848 / 10_434.555, 0, 0, -598.519802 / 10_555.539848]
    expected_sharpe = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(252)
    assert result["sharpe_ratio"] == pytest.approx(expected_sharpe, rel=1e-6)
    assert result["final_equity"] == pytest.approx(9_957.020047)


def test_stop_wins_when_one_bar_reaches_both_levels() -> None:
    bars = [(100, 100, 100, 100), (100, 120, 80, 100), (100, 100, 100, 100)]
    params = Parameters(slippage_rate=0, commission_rate=0, max_holding_bars=5)
    (trade,) = simulate(history(bars), [Signal(0, "Hammer", 1, 0.5)], params).trades
    assert trade.exit_reason == STOP_LOSS and trade.exit_price == pytest.approx(95.0)


def test_short_take_profit_gap_fills_at_the_better_open() -> None:
    bars = [(100, 100, 100, 100), (100, 101, 99, 100), (80, 81, 79, 80)]
    params = Parameters(slippage_rate=0, commission_rate=0)
    (trade,) = simulate(history(bars), [Signal(0, "ShootingStar", -1, 0.5)], params).trades
    assert trade.exit_reason == TAKE_PROFIT and trade.exit_price == pytest.approx(80.0)
    assert trade.pnl == pytest.approx(10_000 / 100 * 20)


def test_most_confident_directional_signal_of_a_bar_wins() -> None:
    bars = [(100, 100, 100, 100)] * 4
    signals = [Signal(0, "Doji", 0, 0.99), Signal(0, "Harami", 1, 0.6), Signal(0, "Engulfing", -1, 0.8)]
    (trade,) = simulate(history(bars), signals, Parameters()).trades
    assert (trade.pattern, trade.direction) == ("Engulfing", -1)


def test_warmup_signals_are_not_traded_and_open_trade_closes_at_the_last_bar() -> None:
    bars = [(100, 100, 100, 100)] * 6
    signals = [Signal(1, "Hammer", 1, 0.5), Signal(3, "Hammer", 1, 0.5)]
    run = simulate(history(bars, first=2), signals, Parameters(max_holding_bars=10))
    assert [(t.signal_index, t.exit_index, t.exit_reason) for t in run.trades] == [(3, 5, END_OF_DATA)]
    assert run.signals == 1


def test_no_trades_gives_zero_metrics() -> None:
    result = metrics.summarize([], np.arange(5, dtype=np.int64) * DAY, 1000, DAY)
    assert (result["total_trades"], result["win_rate"], result["roi"]) == (0, 0.0, 0.0)
    assert (result["max_drawdown"], result["sharpe_ratio"]) == (0.0, 0.0)


@st.composite
def random_case(draw: st.DrawFn) -> tuple[History, list[Signal], Parameters]:
    n = draw(st.integers(3, 60))
    moves = draw(st.lists(st.floats(-0.08, 0.08), min_size=n, max_size=n))
    close = 100 * np.cumprod(1 + np.array(moves))
    open_ = np.concatenate([[100.0], close[:-1]]) * (1 + draw(st.floats(-0.03, 0.03)))
    spread = np.array(draw(st.lists(st.floats(0, 0.06), min_size=n, max_size=n)))
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread)
    bars = list(zip(open_, high, low, close, strict=True))
    count = draw(st.integers(0, 2 * n))
    signals = sorted(
        Signal(
            draw(st.integers(0, n - 1)),
            draw(st.sampled_from(["Hammer", "Doji", "Engulfing"])),
            draw(st.sampled_from([-1, 0, 1])),
            draw(st.sampled_from([0.5, 0.6, 0.75])),
        )
        for _ in range(count)
    )
    params = Parameters(
        commission_rate=draw(st.sampled_from([0.0, 0.001, 0.01])),
        slippage_rate=draw(st.sampled_from([0.0, 0.0005, 0.01])),
        stop_loss_pct=draw(st.sampled_from([0.01, 0.05, 0.2])),
        take_profit_pct=draw(st.sampled_from([0.02, 0.1, 0.5])),
        max_holding_bars=draw(st.integers(1, 8)),
    )
    return history(bars, first=draw(st.integers(0, n - 1))), signals, params


@settings(max_examples=300, deadline=None)
@given(random_case())
def test_engine_equals_the_vectorized_reference(case: tuple[History, list[Signal], Parameters]) -> None:
    hist, signals, params = case
    trades = simulate(hist, signals, params).trades
    expected = reference_trades(hist, signals, params)
    assert [(t.pattern, t.direction, t.entry_index, t.exit_index) for t in trades] == list(
        zip(
            expected.get("pattern", []),
            expected.get("direction", []),
            expected.get("entry_index", []),
            expected.get("exit_index", []),
            strict=True,
        )
    )
    assert [t.pnl for t in trades] == pytest.approx(list(expected.get("pnl", [])), rel=1e-12, abs=1e-9)
