"""Higher timeframes from the feed: equal to a pandas resample per XNYS session on the real files,
closed at the session's close (early closes, holidays), never from partial periods or rejected bars."""

from __future__ import annotations

import warnings
from itertools import groupby
from pathlib import Path

import exchange_calendars
import pandas as pd
import pytest

from tickstockpl.bars import Bar, parse_timeframe
from tickstockpl.patterns.sessions import DAY, SessionCalendar
from tickstockpl.patterns.timeframes import Aggregator
from tickstockpl.settings import Settings, SettingsError
from tickstockpl.sources.csv_replay import load_csv, merge_in_time
from tickstockpl.sources.synthetic import SyntheticMarket

DATA = Path(__file__).resolve().parents[2] / "data"
MINUTE, HOURLY = DATA / "minute_aapl_2026.csv", DATA / "hourly_aapl_2024_2026.csv"
CALENDAR = SessionCalendar()
ET = "America/New_York"


def aggregate(bars: list[Bar], lengths: list[int]) -> tuple[dict[int, list[Bar]], Aggregator]:
    """Feed the bars boundary by boundary, as the sources deliver them."""
    aggregator = Aggregator(lengths, CALENDAR)
    out: dict[int, list[Bar]] = {length: [] for length in lengths}
    for _, boundary in groupby(merge_in_time([bars]), key=lambda b: b.close_time):
        for length, closed in aggregator.push(list(boundary)).items():
            out[length].extend(closed)
    return out, aggregator


def pandas_reference(path: Path, length: int) -> pd.DataFrame:
    """Each XNYS session's bars resampled from the session's open (the day: the whole session), with
    the calendar from exchange_calendars itself; only periods that ended before the file does."""
    frame = pd.read_csv(path)
    frame["time"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    with warnings.catch_warnings():  # exchange_calendars 4.13 reads a pandas 3.1-deprecated attribute
        warnings.simplefilter("ignore", DeprecationWarning)
        schedule = exchange_calendars.get_calendar("XNYS", start="2024-01-01", end="2026-12-31").schedule
    sessions = schedule[["open", "close"]].reset_index(drop=True).sort_values("open")
    sessions = sessions.astype("datetime64[ns, UTC]").rename(columns={"open": "s_open", "close": "s_close"})
    frame = pd.merge_asof(frame.sort_values("time"), sessions, left_on="time", right_on="s_open")
    assert (frame["time"] < frame["s_close"]).all(), "every bar of the files is in a session"
    last_end = frame["time"].max() + pd.Timedelta(seconds=parse_gap(frame))
    rows = []
    for open_, session in frame.groupby("s_open"):
        close = session["s_close"].iloc[0]
        if length >= DAY:
            bins = session.set_index("time").groupby("s_open")
        else:
            bins = session.set_index("time").resample(f"{length}s", origin=open_)
        agg = bins.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        agg = agg.dropna()
        agg["end"] = [min(start + pd.Timedelta(seconds=length), close) for start in agg.index]
        if length >= DAY:
            agg["end"] = close
        rows.append(agg[agg["end"] <= last_end])
    reference = pd.concat(rows)
    reference.index = [int(t.timestamp()) for t in reference.index]
    return reference


def parse_gap(frame: pd.DataFrame) -> int:
    """The files' bar length: the smallest gap between two bars."""
    return int(frame["time"].diff().dt.total_seconds().min())


@pytest.mark.parametrize(
    ("path", "length"), [(MINUTE, 300), (MINUTE, 900), (MINUTE, 3600), (MINUTE, DAY), (HOURLY, DAY)]
)
def test_aggregation_equals_a_pandas_resample_per_session(path: Path, length: int) -> None:
    out, aggregator = aggregate(load_csv(path), [length])
    reference = pandas_reference(path, length)
    mine = pd.DataFrame(
        [(b.open, b.high, b.low, b.close, b.volume) for b in out[length]],
        index=[b.start for b in out[length]],
        columns=["open", "high", "low", "close", "volume"],
    )
    assert len(mine) == len(reference) > 5
    assert (mine.index == reference.index).all()
    assert (mine.to_numpy() == reference[mine.columns].to_numpy()).all()  # exact: same floats, same order
    assert {b.timeframe for b in out[length]} == {length}
    assert aggregator.open_periods == 1  # the file's forming period, never emitted
    assert aggregator.partial == 0


def test_the_minute_file_makes_the_hourly_file_s_complete_hours() -> None:
    """Open, high, low, close equal the hourly file's for its 42 overlapping complete hours; one
    volume differs in the source data (2026-08-04 12:30: 6,480,740 in the minutes, 5,070,397)."""
    out, _ = aggregate(load_csv(MINUTE), [3600])
    hourly = {bar.start: bar for bar in load_csv(HOURLY)}
    pairs = [(bar, hourly[bar.start]) for bar in out[3600]]
    assert len(pairs) == 42
    assert all(mine[3:7] == theirs[3:7] for mine, theirs in pairs)
    assert sum(mine.volume != theirs.volume for mine, theirs in pairs) == 1


def session_bars(symbols: list[str], first_open: int, until: int) -> list[list[Bar]]:
    market = SyntheticMarket(symbols, seed=3, start=first_open, sessions=CALENDAR)
    boundaries = []
    while market.next_start < until:
        boundaries.append(market.step())
    return boundaries


def at(text: str) -> int:
    return int(pd.Timestamp(text, tz=ET).timestamp())


def test_the_day_is_the_session_holidays_and_early_closes_included() -> None:
    """Thanksgiving 2026 (11-26) is a holiday and the day after closes at 13:00."""
    aggregator = Aggregator([3600, DAY], CALENDAR)
    closed_when: dict[tuple[int, int], int] = {}
    for boundary in session_bars(["A"], at("2026-11-25 09:30"), at("2026-11-30 16:00")):
        for length, bars in aggregator.push(boundary).items():
            for bar in bars:
                closed_when[(length, bar.start)] = boundary[0].close_time
    days = {start: when for (length, start), when in closed_when.items() if length == DAY}
    assert days == {
        at("2026-11-25 09:30"): at("2026-11-25 16:00"),
        at("2026-11-27 09:30"): at("2026-11-27 13:00"),
        at("2026-11-30 09:30"): at("2026-11-30 16:00"),
    }
    hours = sorted(start for (length, start) in closed_when if length == 3600 and start < at("2026-11-28"))
    assert hours[-4:] == [at(f"2026-11-27 {h}") for h in ("09:30", "10:30", "11:30", "12:30")]
    assert closed_when[(3600, at("2026-11-27 12:30"))] == at("2026-11-27 13:00")  # a 30-minute hour
    assert CALENDAR.bar_times(3600, at("2026-11-27 12:30")) == (
        at("2026-11-27 13:00"),
        at("2026-11-30 10:30"),
    )
    assert CALENDAR.bar_times(DAY, at("2026-11-25 09:30")) == (at("2026-11-25 16:00"), at("2026-11-27 13:00"))


def test_the_feed_s_boundary_closes_a_symbol_that_did_not_trade_in_the_last_minute() -> None:
    boundaries = session_bars(["A", "B"], at("2026-11-30 09:30"), at("2026-12-01 09:31"))
    last = at("2026-11-30 15:59")
    thinned = [[bar for bar in b if not (bar.symbol == "B" and bar.start == last)] for b in boundaries]
    aggregator = Aggregator([DAY], CALENDAR)
    for boundary in thinned:
        days = aggregator.push(boundary)[DAY]
        if boundary[0].start == last:
            break
    assert [bar.symbol for bar in days] == ["A", "B"]  # B's day closes at 16:00 with A's last bar
    everything = [bar for b in boundaries for bar in b if bar.symbol == "B" and bar.start < last]
    assert days[1].close == everything[-1].close and days[1].volume == sum(b.volume for b in everything)


def test_periods_the_data_does_not_cover_from_start_to_end_are_never_emitted() -> None:
    boundaries = session_bars(["A"], at("2026-11-30 10:02"), at("2026-11-30 10:31"))  # starts mid-period
    out, aggregator = aggregate([bar for b in boundaries for bar in b], [300, 3600])
    assert [bar.start for bar in out[300]] == [
        at(f"2026-11-30 10:{m}") for m in ("05", "10", "15", "20", "25")
    ]
    assert out[3600] == []  # 09:30-10:30 began before the feed
    assert aggregator.partial == 2  # 10:00-10:05 and 09:30-10:30
    assert aggregator.open_periods == 2  # 10:30-10:35 and 10:30-11:30: the feed ended inside them


def test_bars_outside_sessions_and_bars_the_engine_rejects_are_not_aggregated() -> None:
    good = [bar for b in session_bars(["A"], at("2026-11-30 09:30"), at("2026-11-30 09:40")) for bar in b]
    noise = [
        good[2]._replace(close=good[2].high * 2),  # outside its range: rejected by the engine
        good[3],  # a duplicate
        good[1]._replace(start=good[1].start - 60),  # out of order
        Bar("A", 60, at("2026-11-28 10:00"), 1.0, 1.0, 1.0, 1.0, 1.0),  # a Saturday: no session (and late)
        Bar("", 60, good[4].start, 1.0, 1.0, 1.0, 1.0, 1.0),  # no symbol
    ]
    clean, _ = aggregate(good, [300])
    aggregator = Aggregator([300], CALENDAR)
    dirty: list[Bar] = []
    for bar in good[:4] + noise + good[4:]:
        dirty.extend(aggregator.push([bar])[300])
    assert dirty == clean[300] and len(dirty) == 2
    weekend, _ = aggregate(
        [Bar("A", 60, at("2026-11-28 10:00") + 60 * i, 1, 1, 1, 1, 1) for i in range(30)], [300]
    )
    assert weekend[300] == []


def test_timeframe_labels_and_settings() -> None:
    assert [parse_timeframe(t) for t in ("1m", "5m", "15m", "1h", "4h", "1d", "24h")] == [
        60,
        300,
        900,
        3600,
        14400,
        DAY,
        DAY,
    ]
    for bad in ("2d", "30s", "0m", "5x", "", "1441m"):
        with pytest.raises(ValueError):
            parse_timeframe(bad)
    settings = Settings.from_env({"TICKSTOCKPL_TIMEFRAMES": "1h, 5m,1d,5m"}, env_file=None)
    assert settings.timeframes == ("5m", "1h", "1d")
    assert Settings.from_env({"TICKSTOCKPL_TIMEFRAMES": "none"}, env_file=None).timeframes == ()
    assert Settings().timeframes == ("5m", "15m", "1h", "1d")
    assert Settings().combo_timeframes == ("15m", "1h", "1d")
    with pytest.raises(SettingsError, match="TICKSTOCKPL_COMBO_TIMEFRAMES"):
        Settings.from_env({"TICKSTOCKPL_COMBO_TIMEFRAMES": "1w"}, env_file=None)
    assert Settings.from_env(Settings().to_env(), env_file=None) == Settings()


def test_an_unknown_calendar_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'NOPE'"):
        SessionCalendar("NOPE")
