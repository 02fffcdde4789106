"""Combos on the real minute file with the default settings, each checked against its definition
(docs/patterns.md, "combo"); tiers and expires_at on every event of every timeframe."""

from __future__ import annotations

from collections import Counter
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tickstockpl import contract
from tickstockpl.bars import DAY_SECONDS, parse_timeframe, timeframe_label
from tickstockpl.patterns import EventBuilder, Signal, history_signals, publishable, signal_to_event
from tickstockpl.patterns.combos import ComboFinder
from tickstockpl.patterns.sessions import SessionCalendar
from tickstockpl.patterns.timeframes import Aggregator, engine_for
from tickstockpl.settings import Settings
from tickstockpl.sources.csv_replay import load_csv, merge_in_time

DATA = Path(__file__).resolve().parents[2] / "data"
FILES = ("minute_aapl_2026.csv", "hourly_aapl_2024_2026.csv", "daily_us_equities_2000_2013.csv")
CALENDAR = SessionCalendar()
DEFAULTS = Settings()
NOW = 1_800_000_000.0


def signals_of(name: str, settings: Settings = DEFAULTS) -> list[Signal]:
    engine = engine_for(settings.timeframes, settings.combo_timeframes, CALENDAR)
    out: list[Signal] = []
    for _, boundary in groupby(merge_in_time([load_csv(DATA / name)]), key=lambda b: b.close_time):
        out.extend(engine.process(list(boundary)))
    return out


@pytest.fixture(scope="module")
def minute_signals() -> list[Signal]:
    return signals_of("minute_aapl_2026.csv")


def close_of(signal: Signal) -> int:
    return CALENDAR.bar_times(signal.timeframe, signal.start)[0]


def test_every_combo_is_a_pattern_confirmed_inside_the_higher_bar(minute_signals: list[Signal]) -> None:
    combos = [s for s in minute_signals if s.confirmed_by]
    plain = [s for s in minute_signals if not s.confirmed_by]
    assert len(combos) >= 2
    combo_lengths = {
        60 * {"m": 1, "h": 60, "d": 1440}[t[-1]] * int(t[:-1]) for t in DEFAULTS.combo_timeframes
    }
    for combo in combos:
        assert combo.direction != "neutral"
        assert {combo.timeframe, combo.confirmed_by} <= combo_lengths and combo.confirmed_by < combo.timeframe
        same = (combo.symbol, combo.pattern, combo.direction)
        (high,) = [
            s
            for s in plain
            if (s.symbol, s.pattern, s.direction, s.timeframe, s.start)
            == (*same, combo.timeframe, combo.start)
        ]
        inside = [
            s
            for s in plain
            if (s.symbol, s.pattern, s.direction) == same
            and s.timeframe == combo.confirmed_by
            and combo.start < close_of(s) <= close_of(combo)
        ]
        assert inside, combo
        best = max(s.confidence for s in inside)
        assert combo.confidence == pytest.approx(1 - (1 - high.confidence) * (1 - best))
        assert combo[:5] == high[:5] and combo[6:9] == high[6:9]
    once = Counter((c.symbol, c.pattern, c.direction, close_of(c)) for c in combos)
    assert max(once.values()) == 1  # published once, however many timeframes close together


def test_no_combo_without_a_lower_signal_inside_the_bar() -> None:
    finder = ComboFinder({900, 3600}, CALENDAR)
    hour = int(pd.Timestamp("2026-11-30 10:30", tz="America/New_York").timestamp())
    low = Signal("A", 900, hour - 900, "Engulfing", "bullish", 0.6, 10.0, 9.0, 1.0)  # ends at 10:30: before
    high = Signal("A", 3600, hour, "Engulfing", "bullish", 0.5, 10.0, 9.0, 1.0)
    assert finder.find([low]) == []
    assert finder.find([high]) == []
    inside = low._replace(start=hour + 2700)  # 11:15-11:30, inside 10:30-11:30
    (combo,) = finder.find([inside, high._replace(start=hour)])  # the hour closes with its last 15 min
    assert combo.confirmed_by == 900 and combo.confidence == pytest.approx(0.8)
    other = [
        inside._replace(direction="bearish", start=hour + 3600 + 2700),
        inside._replace(pattern="Hammer"),
    ]
    assert finder.find([*other, high._replace(start=hour + 3600)]) == []
    neutral = Signal("A", 900, hour + 9900, "Doji", "neutral", 0.9, 10.0, 9.0, 1.0)
    assert finder.find([neutral, neutral._replace(timeframe=3600, start=hour + 7200)]) == []


def test_combos_keep_the_published_stream_thin(minute_signals: list[Signal]) -> None:
    """docs/patterns.md, "Timeframes": events per symbol per session on the minute file, by tier."""
    before = [s for s in scanned("minute_aapl_2026.csv", ()) if round(s.confidence, 2) >= 0.7]  # 1 m only
    after = publishable(minute_signals, DEFAULTS.min_confidence)
    tiers = Counter(
        "combo" if s.confirmed_by else "daily" if s.timeframe >= DAY_SECONDS else "intraday" for s in after
    )
    assert tiers["combo"] >= 1 and len(after) < 1.5 * len(before)
    assert sum(1 for s in after if s.timeframe == 60) == len(before)  # the feed's own stream is unchanged


@pytest.mark.parametrize("name", FILES)
def test_every_event_has_its_tier_and_expires_after_its_timestamp(
    name: str, minute_signals: list[Signal]
) -> None:
    found = minute_signals if name.startswith("minute") else scanned(name)
    builder = EventBuilder(CALENDAR)
    events = builder.build(found, now=NOW)
    assert len(events) == len(found) > 100
    tiers = Counter()
    for signal, event in zip(found, events, strict=True):
        data = contract.validate_pattern_event(event)["data"]
        close, expires = CALENDAR.bar_times(signal.timeframe, signal.start)
        assert data["expires_at"] == float(expires) > data["timestamp"] == float(close)
        assert (
            data["tier"]
            == data["source"]
            == (
                "combo" if signal.confirmed_by else "daily" if signal.timeframe >= DAY_SECONDS else "intraday"
            )
        )
        assert data["timeframe"] == timeframe_label(signal.timeframe)
        assert ("confirmed_by" in data) == bool(signal.confirmed_by)
        tiers[data["tier"]] += 1
    checked = [
        i for i, s in enumerate(found) if i < 300 or s.confirmed_by or s.timeframe != found[0].timeframe
    ]
    reference = [
        signal_to_event(found[i], now=NOW, times=builder.times(found[i].timeframe, found[i].start))
        for i in checked
    ]
    assert [strip(events[i]) for i in checked] == [
        strip(e) for e in reference
    ]  # the fast path = the reference
    if name.startswith("minute"):
        assert set(tiers) == {"intraday", "daily", "combo"}


def scanned(name: str, timeframes: tuple[str, ...] = DEFAULTS.timeframes) -> list[Signal]:
    """The file's signals and its daily bars' (hourly file), by the history scan: quicker than streaming."""
    bars = load_csv(DATA / name)
    aggregator = Aggregator([parse_timeframe(t) for t in timeframes], CALENDAR)
    for _, boundary in groupby(merge_in_time([bars]), key=lambda b: b.close_time):
        bars.extend(bar for closed in aggregator.push(list(boundary)).values() for bar in closed)
    out = []
    for _, series in groupby(
        sorted(bars, key=lambda b: (b.symbol, b.timeframe)), key=lambda b: (b.symbol, b.timeframe)
    ):
        run = list(series)
        arrays = [np.array([getattr(b, f) for b in run]) for f in ("open", "high", "low", "close", "volume")]
        for hit in history_signals(*arrays):
            bar, prev = run[hit.bar_index], run[max(hit.bar_index - 1, 0)]
            out.append(
                Signal(
                    bar.symbol,
                    bar.timeframe,
                    bar.start,
                    hit.pattern,
                    hit.direction,
                    hit.confidence,
                    bar.close,
                    prev.close,
                    bar.volume,
                )
            )
    return out


def strip(event: dict) -> dict:
    return {**event, "data": {k: v for k, v in event["data"].items() if k != "flow_id"}}


def et(text: str) -> int:
    return int(pd.Timestamp(text, tz="America/New_York").timestamp())


def test_expires_at_is_the_close_of_the_next_bar_of_the_timeframe() -> None:
    cases = {
        (60, "2026-08-05 10:00"): ("2026-08-05 10:01", "2026-08-05 10:02"),
        (60, "2026-08-05 15:59"): ("2026-08-05 16:00", "2026-08-06 09:31"),  # the next session's first
        (300, "2026-07-31 15:55"): ("2026-07-31 16:00", "2026-08-03 09:35"),  # a Friday: Monday
        (3600, "2026-08-05 15:30"): ("2026-08-05 16:00", "2026-08-06 10:30"),  # the 30-minute last hour
        (DAY_SECONDS, "2026-08-05 09:30"): ("2026-08-05 16:00", "2026-08-06 16:00"),
        (DAY_SECONDS, "2026-11-25 09:30"): ("2026-11-25 16:00", "2026-11-27 13:00"),  # Thanksgiving
        (60, "2026-08-08 12:00"): ("2026-08-08 12:01", "2026-08-08 12:02"),  # a Saturday: no session
    }
    for (length, start), (close, expires) in cases.items():
        assert CALENDAR.bar_times(length, et(start)) == (et(close), et(expires)), start
    friday = int(pd.Timestamp("2013-03-01", tz="UTC").timestamp())  # the daily file's date stamps
    assert CALENDAR.bar_times(DAY_SECONDS, friday) == (friday + DAY_SECONDS, friday + 4 * DAY_SECONDS)
    plain = Signal("A", 60, 600, "Doji", "neutral", 0.5, 10.0, 9.5, 100.0)
    (event,) = EventBuilder().build([plain], now=NOW)  # no calendar: one bar length later
    assert (event["data"]["timestamp"], event["data"]["expires_at"]) == (660.0, 720.0)
