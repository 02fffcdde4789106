"""On the real daily data: the engine equals the pandas reference, and its signals are the live detector's."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from bench.backtest_reference import reference_backtest
from tickstockpl import contract
from tickstockpl.backtest import MemoryHistory, Parameters, detect, parse_job, run_job
from tickstockpl.backtest.signals import pattern_set, warmup_bars
from tickstockpl.bars import DAY_SECONDS, Bar
from tickstockpl.patterns import StreamingEngine

DAILY = Path(__file__).resolve().parents[2] / "data" / "daily_us_equities_2000_2013.csv"
SYMBOLS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")
PATTERNS = contract.UI_CANDLESTICK_PATTERNS


@pytest.fixture(scope="module")
def source() -> MemoryHistory:
    return MemoryHistory.from_files([DAILY])


@pytest.mark.parametrize(
    "params",
    [
        Parameters(),
        Parameters(commission_rate=0.0, slippage_rate=0.0, stop_loss_pct=0.02, take_profit_pct=0.03),
        Parameters(max_position_size=0.2, stop_loss_pct=0.5, take_profit_pct=2.0, max_holding_bars=60),
        Parameters(max_position_size=1.0),  # the whole equity per entry: five symbols compete for it
    ],
    ids=["defaults", "tight", "wide", "all_in"],
)
def test_engine_equals_vectorized_reference_on_real_data(source: MemoryHistory, params: Parameters) -> None:
    start, end = dt.date(2003, 1, 1), dt.date(2013, 3, 1)
    job = parse_job(
        json.dumps(
            {
                "job_id": "backtest_1_00000000",
                "symbols": list(SYMBOLS),
                "patterns": list(PATTERNS),
                "start_date": str(start),
                "end_date": str(end),
                "parameters": params.__dict__,
            }
        )
    )
    outcome = run_job(job, source)
    histories = {s: source.load(s, "1d", start, end, warmup_bars(PATTERNS)) for s in SYMBOLS}
    signals = {s: detect(h.open, h.high, h.low, h.close, h.volume, PATTERNS) for s, h in histories.items()}
    expected, trades = reference_backtest(histories, signals, params)
    got = outcome.results
    assert got["total_trades"] == expected["total_trades"] > 100
    assert got["winning_trades"] == expected["winning_trades"]
    assert got["skipped_signals"] == expected["skipped_signals"]
    assert got["unfunded_signals"] == expected["unfunded_signals"]
    for key in (
        "win_rate",
        "roi",
        "max_drawdown",
        "sharpe_ratio",
        "total_pnl",
        "total_commission",
        "final_equity",
    ):
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key
    for name, group in got["by_pattern"].items():
        assert group["pnl"] == pytest.approx(expected["pnl_by_pattern"].get(name, 0.0), abs=1e-6), name
    for name, group in got["by_symbol"].items():
        assert group["pnl"] == pytest.approx(expected["pnl_by_symbol"].get(name, 0.0), abs=1e-6), name
    assert [(t.symbol, t.exit_time) for t in outcome.trades] == list(
        zip(trades.symbol, trades.exit_time, strict=True)
    )
    assert [t.committed for t in outcome.trades] == pytest.approx(list(trades.committed), rel=1e-9)


def test_all_in_on_five_symbols_never_spends_money_it_does_not_have(source: MemoryHistory) -> None:
    """The reported flaw: 1.0 of capital per trade on five symbols used to hold 5x the capital at once."""
    job = parse_job(
        json.dumps(
            {
                "job_id": "backtest_1_00000001",
                "symbols": list(SYMBOLS),
                "patterns": list(PATTERNS),
                "start_date": "2003-01-01",
                "end_date": "2013-03-01",
                "parameters": {"max_position_size": 1.0},
            }
        )
    )
    outcome = run_job(job, source)
    trades = outcome.trades
    assert outcome.results["unfunded_signals"] > 100  # the other symbols' signals while one is held
    assert outcome.results["final_equity"] > 0
    for t in trades:  # at every entry, the positions still open at that open plus this one fit in equity
        equity = 100_000 + sum(u.pnl for u in trades if u.exit_time < t.entry_time)
        held = sum(u.committed for u in trades if u.entry_time <= t.entry_time <= u.exit_time)
        assert 0 < held <= equity * (1 + 1e-9)
        assert t.committed == pytest.approx(equity)


def test_signals_are_the_ones_the_streaming_detector_emits(source: MemoryHistory) -> None:
    history = source.load("IBM", "1d", dt.date(2000, 1, 1), dt.date(2004, 12, 31), 0)
    found = detect(history.open, history.high, history.low, history.close, history.volume, PATTERNS)
    live = StreamingEngine(pattern_set(PATTERNS))
    streamed = []
    for i, start in enumerate(history.times.tolist()):
        bar = Bar("IBM", DAY_SECONDS, start, *(float(a[i]) for a in history[2:7]))
        streamed.extend(live.process([bar]))
    direction = {"bullish": 1, "bearish": -1, "neutral": 0}
    assert len(found) > 200
    assert [(int(history.times[s.bar_index]), s.pattern, s.direction) for s in found] == [
        (s.start, s.pattern, direction[s.direction]) for s in streamed
    ]
    assert [s.confidence for s in found] == pytest.approx([s.confidence for s in streamed])


def test_warmup_makes_range_signals_equal_to_full_history_ones(source: MemoryHistory) -> None:
    full = source.load("MSFT", "1d", dt.date(2000, 1, 1), dt.date(2013, 3, 1), 0)
    part = source.load("MSFT", "1d", dt.date(2006, 1, 1), dt.date(2013, 3, 1), warmup_bars(PATTERNS))
    offset = int(np.searchsorted(full.times, part.times[0]))
    everything = detect(full.open, full.high, full.low, full.close, full.volume, PATTERNS)
    in_range = [s for s in everything if s.bar_index >= offset + part.first]
    windowed = [
        s
        for s in detect(part.open, part.high, part.low, part.close, part.volume, PATTERNS)
        if s.bar_index >= part.first
    ]
    assert len(in_range) > 100
    assert [(s.bar_index - offset, s.pattern, s.direction) for s in in_range] == [
        (s.bar_index, s.pattern, s.direction) for s in windowed
    ]
