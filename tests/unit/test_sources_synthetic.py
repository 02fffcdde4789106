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
from tickstockpl.sources.pacing import Pacer
from tickstockpl.sources.synthetic import DEFAULT_LOOKBACK_S, SyntheticMarket, SyntheticSource


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


def produced(source: SyntheticSource) -> list[tuple[float, list[int]]]:
    """(time.time() when the batch was yielded, its bars' close times) for every batch."""
    return [(time.time(), [bar.close_time for bar in batch]) for batch in source.batches(threading.Event())]


def test_no_bar_is_stamped_after_the_wall_clock_even_when_accelerated() -> None:
    """Issue 17: at 60x from now, the bars ran ahead of the clock (03:16 at 03:04)."""
    before = time.time()
    source = SyntheticSource(["A", "B"], seed=1, bar_seconds=1, speed=60, lookback_s=2, limit=5)
    assert before - 3 <= source.market.next_start <= before - 1  # the session starts in the past
    batches = produced(source)
    assert len(batches) == 5
    for at, closes in batches:
        assert max(closes) <= at, (closes, at)
    assert batches[-1][1][0] > before  # it went on past the catch-up, now at real time


def test_the_continuous_clock_starts_a_week_back_and_catches_up_at_60x() -> None:
    before = time.time()
    source = SyntheticSource(["A"], speed=60, limit=2)  # TICKSTOCKPL_SYNTHETIC_CLOCK=continuous, 60x
    assert before - DEFAULT_LOOKBACK_S - 60 <= source.market.next_start <= before - DEFAULT_LOOKBACK_S
    for at, closes in produced(source):
        assert max(closes) <= at
    # At real time or slower the lag would never shrink: the session starts now.
    assert SyntheticSource(["A"], speed=1).market.next_start >= int(before) // 60 * 60
    flat_out = SyntheticSource(["A"], bar_seconds=1, speed=0, lookback_s=50, limit=50)
    assert all(max(closes) <= at for at, closes in produced(flat_out))


def test_pacer_runs_at_speed_until_it_meets_the_wall_clock_then_at_real_time() -> None:
    monotonic, wall = [0.0], [1000.0]
    waits: list[float] = []

    class FakeStop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            monotonic[0] += timeout or 0.0
            wall[0] += timeout or 0.0
            return False

    pacer = Pacer(10.0, clock=lambda: monotonic[0], wall_clock=lambda: wall[0])
    stop = FakeStop()
    for data_time in (880.0, 940.0, 1000.0, 1060.0, 1120.0):
        assert pacer.wait_until(data_time, stop)
        assert data_time <= wall[0]
    assert waits == [6.0, 6.0, 6.0, 42.0, 60.0]  # 60 s of data in 6 s, until the clock is reached
    assert Pacer(0.0, wall_clock=lambda: wall[0]).wait_until(1200.0, stop) and waits[-1] == 80.0


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
