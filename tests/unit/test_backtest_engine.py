"""The engine against numbers worked out by hand, its edge rules, and the pandas reference on random data."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.backtest_reference import reference_backtest
from tickstockpl.backtest import metrics
from tickstockpl.backtest.engine import (
    END_OF_DATA,
    MAX_HOLDING,
    STOP_LOSS,
    TAKE_PROFIT,
    History,
    Simulation,
    Trade,
    allocate,
    price,
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


def history(
    bars: list[tuple[float, float, float, float]], first: int = 0, symbol: str = "TEST", shift: int = 0
) -> History:
    data = np.array(bars, dtype=float)
    times = (np.arange(len(bars), dtype=np.int64) + shift) * DAY
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
    # Each entry commits 0.5 x equity, shares and entry commission together: shares = stake / (fill x 1.001).
    # Long: stake 0.5 x 10,000 = 5,000; 5000/101.101 = 49.455495 shares; (109.989 - 101) x 49.455495
    # = 444.555445; commission 0.001 x 49.455495 x (101 + 109.989) = 10.434565; P&L 434.120879.
    assert (first.entry_price, first.exit_price) == pytest.approx((101.0, 109.989))
    assert first.committed == pytest.approx(5_000.0)
    assert first.quantity * first.entry_price + 0.001 * first.quantity * first.entry_price == pytest.approx(
        5_000.0
    )
    assert first.commission == pytest.approx(10.434565)
    assert first.pnl == pytest.approx(434.120879)
    # Short: equity is now 10,434.120879, stake 5,217.060440; fill 110 x 0.99 = 108.9, out at 105 x 1.01
    # = 106.05; 5217.060440/109.0089 = 47.859032 shares x 2.85 = 136.398241; commission 0.001 x 47.859032
    # x 214.95 = 10.287299; P&L 126.110942.
    assert (second.entry_price, second.exit_price) == pytest.approx((108.9, 106.05))
    assert second.committed == pytest.approx(5_217.060440)
    assert second.pnl == pytest.approx(136.398241 - 10.287299)
    # Gap through the stop: out at the open 90 x 0.99 = 89.1, not at 95.95. Equity 10,560.231822, stake
    # 5,280.115911, 52.226149 shares; x (89.1 - 101) = -621.491176; commission 0.001 x 52.226149 x 190.1
    # = 9.928191.
    assert third.exit_price == pytest.approx(89.1)
    assert third.committed == pytest.approx(5_280.115911)
    assert third.pnl == pytest.approx(-621.491176 - 9.928191)
    assert (run.signals, run.neutral, run.skipped, run.unfunded) == (6, 1, 2, 0)


def test_hand_computed_metrics() -> None:
    run = simulate(history(BARS), HAND_SIGNALS, HAND)
    result = metrics.summarize(run.trades, np.arange(10, dtype=np.int64) * DAY, 10_000, DAY)
    assert result["total_trades"] == 3 and result["winning_trades"] == 2
    assert result["win_rate"] == pytest.approx(2 / 3)
    # 434.120879 + 126.110942 - 631.419367 = -71.187546 on 10,000.
    assert result["roi"] == pytest.approx(-0.0071187546)
    # Peak 10,560.231822 after the short; the stop takes it to 9,928.812455: 631.419367 / 10,560.231822.
    assert result["max_drawdown"] == pytest.approx(0.0597921880)
    # Per-bar returns of the equity curve: three steps, zero elsewhere (ten bars).
    returns = [
        0,
        0,
        0,
        434.120879 / 10_000,
        0,
        0,
        126.110942 / 10_434.120879,
        0,
        0,
        -631.419367 / 10_560.231822,
    ]
    expected_sharpe = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(252)
    assert result["sharpe_ratio"] == pytest.approx(expected_sharpe, rel=1e-6)
    assert result["final_equity"] == pytest.approx(9_928.812455)


# Two symbols, one pot of cash: capital 10,000, 0.6 of equity per entry, commission 0.1 %, no slippage,
# stop 5 %, target 10 %, at most 3 bars held. A is listed first in the job.
CASH = Parameters(
    initial_capital=10_000,
    commission_rate=0.001,
    slippage_rate=0.0,
    max_position_size=0.6,
    stop_loss_pct=0.05,
    take_profit_pct=0.10,
    max_holding_bars=3,
)
#          open   high   low    close
A_BARS = [
    (100.0, 101.0, 99.0, 100.0),  # 0  signal 0.6
    (
        100.0,
        101.0,
        99.0,
        100.0,
    ),  # 1  B's entry took 6,000; A needs 6,000 of the 4,000 free: unfunded. Signal 0.6
    (
        100.0,
        101.0,
        99.0,
        100.0,
    ),  # 2  B exits on this bar, so its cash is not free at the open: unfunded. Signal 0.6
    (100.0, 103.0, 99.0, 102.0),  # 3  enter at 100 with 0.6 x 10,586.813187; stop 95, target 110
    (101.0, 101.0, 94.0, 95.0),  # 4  low 94: stopped at 95. Signal 0.7
    (96.0, 98.0, 95.0, 97.0),  # 5  enter at 96 with 0.6 x 10,257.151881 (ties B on confidence; A is first)
    (97.0, 99.0, 96.0, 98.0),  # 6  last bar: out at the close 98 (end_of_data)
]
B_BARS = [
    (50.0, 51.0, 49.0, 50.0),  # 0  signal 0.8: more confident than A's, so B is served first
    (50.0, 52.0, 49.0, 51.0),  # 1  enter at 50 with 0.6 x 10,000 = 6,000; stop 47.5, target 55
    (52.0, 56.0, 51.0, 55.0),  # 2  high 56: take profit at 55
    (55.0, 56.0, 54.0, 55.0),  # 3  signal 0.9
    (
        55.0,
        56.0,
        54.0,
        55.0,
    ),  # 4  A holds 6,352.09 of 10,586.81: 4,234.73 free < 6,352.09, unfunded. Signal 0.7
    (55.0, 56.0, 54.0, 55.0),  # 5  A entered first at this open: 4,102.86 free < 6,154.29, unfunded
    (55.0, 56.0, 54.0, 55.0),  # 6
]
A_SIGNALS = [Signal(0, "Hammer", 1, 0.6), Signal(1, "Hammer", 1, 0.6), Signal(2, "Hammer", 1, 0.6)]
A_SIGNALS += [Signal(4, "Engulfing", 1, 0.7)]
B_SIGNALS = [Signal(0, "Hammer", 1, 0.8), Signal(3, "Hammer", 1, 0.9), Signal(4, "Engulfing", 1, 0.7)]


def test_hand_computed_two_symbols_competing_for_cash() -> None:
    books = [
        price(history(A_BARS, symbol="A"), A_SIGNALS, CASH),
        price(history(B_BARS, symbol="B"), B_SIGNALS, CASH),
    ]
    run = allocate(books, CASH)
    got = [(t.symbol, t.entry_index, t.exit_index, t.exit_reason) for t in run.trades]
    assert got == [("B", 1, 2, TAKE_PROFIT), ("A", 3, 4, STOP_LOSS), ("A", 5, 6, END_OF_DATA)]
    b, a1, a2 = run.trades
    # B: 6,000 / (50 x 1.001) = 119.880120 shares x 5 = 599.400599; commission 0.001 x 119.880120 x 105
    # = 12.587413; P&L 586.813187. Equity 10,586.813187.
    assert (b.committed, b.pnl) == pytest.approx((6_000.0, 586.813187))
    # A: stake 6,352.087912, 63.457422 shares x (95 - 100) = -317.287108; commission 0.001 x 63.457422
    # x 195 = 12.374197; P&L -329.661306. Equity 10,257.151881.
    assert (a1.committed, a1.pnl) == pytest.approx((6_352.087912, -329.661306))
    # A again: stake 6,154.291129, 64.043156 shares x 2 = 128.086312; commission 0.001 x 64.043156 x 194
    # = 12.424372; P&L 115.661940. Final equity 10,372.813821.
    assert (a2.committed, a2.pnl) == pytest.approx((6_154.291129, 115.661940))
    # Seven signals; three traded; the other four were all refused for cash.
    assert (run.signals, run.neutral, run.skipped, run.unfunded) == (7, 0, 4, 4)
    result = metrics.summarize(run.trades, np.arange(7, dtype=np.int64) * DAY, 10_000, DAY)
    assert result["final_equity"] == pytest.approx(10_372.813821)
    expected, trades = reference_backtest(
        {"A": history(A_BARS, symbol="A"), "B": history(B_BARS, symbol="B")},
        {"A": A_SIGNALS, "B": B_SIGNALS},
        CASH,
    )
    assert list(zip(trades.symbol, trades.entry_index, trades.committed, strict=True)) == [
        (t.symbol, t.entry_index, pytest.approx(t.committed)) for t in run.trades
    ]
    assert (expected["skipped_signals"], expected["unfunded_signals"]) == (4, 4)
    assert expected["final_equity"] == pytest.approx(10_372.813821)


def test_without_the_cash_a_symbol_that_is_flat_still_waits() -> None:
    # With the whole equity per entry, the second symbol never trades while the first is in.
    params = Parameters(initial_capital=1_000, commission_rate=0, slippage_rate=0, max_position_size=1.0)
    flat = [(100.0, 100.0, 100.0, 100.0)] * 5
    books = [price(history(flat, symbol=s), [Signal(0, "Hammer", 1, 0.5)], params) for s in ("X", "Y")]
    run = allocate(books, params)
    assert [(t.symbol, t.committed) for t in run.trades] == [("X", 1_000.0)]
    assert (run.skipped, run.unfunded) == (1, 1)


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


def random_bars(draw: st.DrawFn, n: int, move: float) -> list[tuple[float, float, float, float]]:
    moves = draw(st.lists(st.floats(-move, move), min_size=n, max_size=n))
    close = 100 * np.cumprod(1 + np.array(moves))
    open_ = np.concatenate([[100.0], close[:-1]]) * (1 + draw(st.floats(-0.03, 0.03)))
    spread = np.array(draw(st.lists(st.floats(0, 0.06), min_size=n, max_size=n)))
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread)
    return list(zip(open_, high, low, close, strict=True))


def random_signals(draw: st.DrawFn, n: int) -> list[Signal]:
    return sorted(
        Signal(
            draw(st.integers(0, n - 1)),
            draw(st.sampled_from(["Hammer", "Doji", "Engulfing"])),
            draw(st.sampled_from([-1, 0, 1])),
            draw(st.sampled_from([0.5, 0.6, 0.75])),
        )
        for _ in range(draw(st.integers(0, 2 * n)))
    )


Portfolio = tuple[list[History], list[list[Signal]], Parameters]


@st.composite
def random_portfolio(draw: st.DrawFn, move: float = 0.08, max_hold: int = 8) -> Portfolio:
    """One to four symbols on overlapping, shifted calendars; any parameters the job parser accepts."""
    histories, signals = [], []
    for number in range(draw(st.integers(1, 4))):
        n = draw(st.integers(3, 40))
        first, shift = draw(st.integers(0, n - 1)), draw(st.integers(0, 5))
        histories.append(history(random_bars(draw, n, move), first, f"S{number}", shift))
        signals.append(random_signals(draw, n))
    params = Parameters(
        initial_capital=draw(st.sampled_from([1_000.0, 100_000.0, 12_345.67])),
        commission_rate=draw(st.sampled_from([0.0, 0.001, 0.01])),
        slippage_rate=draw(st.sampled_from([0.0, 0.0005, 0.01])),
        max_position_size=draw(
            st.sampled_from([0.05, 0.1, 0.25, 1 / 3, 0.5, 0.7, 1.0]) | st.floats(0.01, 1.0)
        ),
        stop_loss_pct=draw(st.sampled_from([0.01, 0.05, 0.2, 0.5, 0.99])),
        take_profit_pct=draw(st.sampled_from([0.02, 0.1, 0.5, 3.0])),
        max_holding_bars=draw(st.integers(1, max_hold)),
    )
    return histories, signals, params


def run_portfolio(case: Portfolio) -> Simulation:
    histories, signals, params = case
    return allocate([price(h, s, params) for h, s in zip(histories, signals, strict=True)], params)


@settings(max_examples=300, deadline=None)
@given(random_portfolio())
def test_engine_equals_the_vectorized_reference(case: Portfolio) -> None:
    histories, signals, params = case
    run = run_portfolio(case)
    expected, trades = reference_backtest(
        {h.symbol: h for h in histories},
        {h.symbol: s for h, s in zip(histories, signals, strict=True)},
        params,
    )
    assert [(t.symbol, t.pattern, t.direction, t.entry_index, t.exit_index) for t in run.trades] == list(
        zip(
            trades.symbol,
            trades.pattern,
            trades.direction,
            trades.entry_index,
            trades.exit_index,
            strict=True,
        )
    )
    assert [t.committed for t in run.trades] == pytest.approx(list(trades.committed), rel=1e-9)
    assert [t.pnl for t in run.trades] == pytest.approx(list(trades.pnl), rel=1e-9, abs=1e-9)
    assert (run.skipped, run.unfunded) == (expected["skipped_signals"], expected["unfunded_signals"])


def exposure(trades: list[Trade], initial_capital: float) -> list[tuple[float, float]]:
    """(committed, equity) at every moment something changes: each bar's open, after its entries, and
    its close, after its exits. Equity is initial capital plus the P&L of trades closed by then."""
    states = []
    for moment in sorted({t.entry_time for t in trades} | {t.exit_time for t in trades}):
        closed_before = sum(t.pnl for t in trades if t.exit_time < moment)
        open_at_open = sum(t.committed for t in trades if t.entry_time <= moment <= t.exit_time)
        states.append((open_at_open, initial_capital + closed_before))
        closed_by = sum(t.pnl for t in trades if t.exit_time <= moment)
        open_at_close = sum(t.committed for t in trades if t.entry_time <= moment < t.exit_time)
        states.append((open_at_close, initial_capital + closed_by))
    return states


@settings(max_examples=300, deadline=None)
@given(random_portfolio(move=0.05, max_hold=8))
def test_equity_is_never_negative_and_never_overcommitted(case: Portfolio) -> None:
    # Bars move at most 5 % (gaps 3 %, ranges 6 %), so over 8 bars no price doubles: no trade can lose more
    # than it committed (the one way around the rule, a short whose price more than doubles, is out of
    # reach). Every parameter otherwise spans the job parser's whole range.
    params = case[2]
    run = run_portfolio(case)
    slack = 1e-9 * params.initial_capital
    for committed, equity in exposure(run.trades, params.initial_capital):
        assert equity >= 0
        assert committed <= equity + slack
    for t in run.trades:  # and each entry committed exactly its share of the equity at that open
        equity = params.initial_capital + sum(u.pnl for u in run.trades if u.exit_time < t.entry_time)
        assert t.committed == pytest.approx(params.max_position_size * equity, rel=1e-12)
