"""Tick aggregation into 1-minute bars: OHLCV per minute, a quiet minute, late and unreadable ticks."""

from __future__ import annotations

import time

from tickstockpl.bars import Bar
from tickstockpl.sources.ticks import LATE_TICK, TickAggregator

# A minute boundary an hour ago: inside the window the tick checks apply (at most 366 days before the
# wall clock), whatever the date the tests run on.
T0 = (int(time.time()) // 60 - 60) * 60


class Wall:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tick(symbol: str, price: float, at: float, volume: float = 100, **extra: float) -> dict[str, object]:
    return {"ticker": symbol, "price": price, "volume": volume, "timestamp": at, **extra}


def test_ticks_become_minute_bars_and_a_quiet_minute_gives_none() -> None:
    wall = Wall()
    agg = TickAggregator(grace_s=2.0, wall=wall)
    for t in (
        tick("AAPL", 10.0, T0 + 1),
        tick("AAPL", 10.5, T0 + 20, 50),
        tick("AAPL", 9.8, T0 + 40),
        tick("AAPL", 10.1, T0 + 59, 25),
    ):
        assert agg.add(t)
    assert agg.flush() == []  # the minute is still open
    # Minute T0+60 has no ticks at all; the next tick arrives in minute T0+120, in milliseconds.
    assert agg.add(tick("AAPL", 11.0, (T0 + 125) * 1000))
    assert agg.flush() == [Bar("AAPL", 60, T0, 10.0, 10.5, 9.8, 10.1, 275.0)]
    # No more ticks: the clock (last tick time advanced by wall time) closes the bar after the grace.
    wall.now += 56.0  # feed clock T0+181: before T0+180+2
    assert agg.flush() == []
    wall.now += 2.0
    assert agg.flush() == [Bar("AAPL", 60, T0 + 120, 11.0, 11.0, 11.0, 11.0, 100.0)]
    assert agg.flush() == []


def test_a_quiet_symbol_is_closed_by_the_clock_while_others_trade() -> None:
    agg = TickAggregator(grace_s=0.0, wall=Wall())
    agg.add(tick("MSFT", 300.0, T0 + 5))
    agg.add(tick("AAPL", 10.0, T0 + 10))
    agg.add(tick("AAPL", 10.2, T0 + 61))  # the feed's clock passes T0+60: MSFT's minute closes too
    assert [(b.symbol, b.start) for b in agg.flush()] == [("AAPL", T0), ("MSFT", T0)]


def test_tick_aggregate_fields_are_preferred_and_bad_ticks_counted() -> None:
    agg = TickAggregator(grace_s=0.0, wall=Wall())
    agg.add(tick("X", 5.0, T0 + 1, 10, tick_open=4.9, tick_high=5.3, tick_low=4.8, tick_volume=40))
    agg.add(tick("X", 5.1, T0 + 2, 10, tick_high=5.2, tick_low=5.0, tick_volume=60))
    assert not agg.add({"ticker": "X", "price": "n/a", "timestamp": T0 + 3})
    assert not agg.add({"price": 5.0, "timestamp": T0 + 3})
    agg.add(tick("X", 5.0, T0 + 70))
    assert agg.flush() == [Bar("X", 60, T0, 4.9, 5.3, 4.8, 5.1, 100.0)]
    assert not agg.add(tick("X", 5.0, T0 + 30))  # its minute is closed already
    assert agg.rejected == {"tick_bad_price": 1, "tick_bad_ticker": 1, LATE_TICK: 1}
