"""The synthetic market: deterministic given a seed, valid bars, and every pattern fires now and then."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from tests.unit.test_bars import check_bar
from tickstockpl.bars import DAY_SECONDS
from tickstockpl.patterns import EventBuilder, PatternSet, history_signals, publishable
from tickstockpl.patterns.sessions import SessionCalendar
from tickstockpl.patterns.timeframes import TimeframeEngine, engine_for
from tickstockpl.settings import Settings
from tickstockpl.sources import session_clock
from tickstockpl.sources.synthetic import SyntheticMarket, SyntheticSource


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    one = [SyntheticMarket(["A", "B"], seed=3, start=600).step() for _ in range(1)]
    a, b, c = (SyntheticMarket(["A", "B"], seed=s, start=600) for s in (3, 3, 4))
    run_a = [a.step() for _ in range(200)]
    assert run_a == [b.step() for _ in range(200)]
    assert run_a != [c.step() for _ in range(200)]
    assert one[0] == run_a[0]
    assert [bar.start for bar in run_a[1]] == [660, 660]


def test_bars_are_valid_and_every_pattern_fires() -> None:
    market = SyntheticMarket([f"S{i}" for i in range(5)], seed=7, start=0)
    boundaries = [market.step() for _ in range(4000)]
    assert {check_bar(bar) for boundary in boundaries for bar in boundary} == {None}
    fired: Counter[str] = Counter()
    for symbol in market.symbols:
        bars = [bar for boundary in boundaries for bar in boundary if bar.symbol == symbol]
        arrays = [np.array([getattr(b, f) for b in bars]) for f in ("open", "high", "low", "close", "volume")]
        fired.update(signal.pattern for signal in history_signals(*arrays))
    assert set(fired) == set(PatternSet().names), set(PatternSet().names) - set(fired)


def test_source_flat_out_yields_limit_boundaries_and_stops_on_request() -> None:
    source = SyntheticSource(["A", "B", "C"], seed=1, bar_seconds=60, speed=0, start=0, limit=5)
    batches = list(source.batches(threading.Event()))
    assert [len(b) for b in batches] == [3] * 5
    assert [b[0].start for b in batches] == [0, 60, 120, 180, 240]
    stop = threading.Event()
    stop.set()
    assert list(SyntheticSource(["A"], speed=0, start=0, limit=5).batches(stop)) == []


CALENDAR = SessionCalendar()


def test_on_the_session_clock_bars_lie_on_session_minutes_and_history_comes_first() -> None:
    live = session_clock.live_start(CALENDAR, int(time.time()))
    assert live < time.time() - 200 * DAY_SECONDS  # about a year back: never ahead of the wall clock
    source = SyntheticSource(["A", "B"], speed=0, limit=500, sessions=CALENDAR, history=2, start=live)
    history = list(source.history(threading.Event()))
    live_bars = list(source.batches(threading.Event()))
    starts = np.array([b[0].start for b in history + live_bars], np.int64)
    assert (CALENDAR.session_index(starts) >= 0).all()  # no bar at night, on a weekend or a holiday
    assert len(history) == 2 * 390 + 360 and starts[len(history)] == live == source.live_from
    live_session = int(CALENDAR.session_index(np.array([live]))[0])
    assert starts[0] == CALENDAR.opens[live_session - 2]  # history: the two sessions before, from the open
    gaps = np.diff(starts)
    assert set(gaps[gaps != 60]) <= {
        int(o - c) + 60 for o, c in zip(CALENDAR.opens[1:], CALENDAR.closes[:-1], strict=False)
    }
    unread = SyntheticSource(["A", "B"], speed=0, limit=3, sessions=CALENDAR, history=2, start=live)
    assert [b[0].start for b in unread.batches(threading.Event())] == [live, live + 60, live + 120]


@pytest.mark.parametrize("session", ["2025-11-28"])  # an early close (the detector's test: the default day)
def test_the_default_synthetic_feed_publishes_intraday_and_daily_within_ten_minutes(session: str) -> None:
    """600 live bars are 10 minutes at the default speed (60x): both tiers are published by then."""
    settings = Settings()
    day = int(np.searchsorted(CALENDAR.opens, pd.Timestamp(session, tz="UTC").timestamp()))
    live = session_clock.live_start(CALENDAR, int(CALENDAR.closes[day]), sessions_back=0)
    source = SyntheticSource(
        settings.symbols, seed=settings.synthetic_seed, speed=0, limit=600, sessions=CALENDAR,
        history=settings.synthetic_history, start=live,
    )  # fmt: skip
    engine = engine_for(settings.timeframes, settings.combo_timeframes, CALENDAR)
    assert isinstance(engine, TimeframeEngine)
    engine.warm(source.history(threading.Event()))
    builder = EventBuilder(CALENDAR)
    first: dict[str, int] = {}
    for index, batch in enumerate(source.batches(threading.Event())):
        for event in builder.build(publishable(engine.process(batch), settings.min_confidence)):
            first.setdefault(event["data"]["tier"], index)
            assert event["data"]["timestamp"] <= batch[0].close_time < event["data"]["expires_at"]
    assert {"intraday", "daily"} <= set(first), first
    assert first["daily"] < 390  # the first or second session close
