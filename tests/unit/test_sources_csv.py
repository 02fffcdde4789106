"""CSV replay: parsing, timeframe inference, unparseable rows counted, symbols merged in time order."""

from __future__ import annotations

import threading
from pathlib import Path

from tickstockpl.sources.csv_replay import CsvReplaySource, load_csv, parse_timestamp
from tickstockpl.sources.pacing import Pacer

DATA = Path(__file__).resolve().parents[2] / "data"


def test_timestamps_dates_are_utc_midnight_and_offsets_are_honoured() -> None:
    assert parse_timestamp("2000-03-01") == 951_868_800
    assert parse_timestamp("2026-07-29 09:30:00-04:00") == parse_timestamp("2026-07-29T13:30:00+00:00")
    assert parse_timestamp("yesterday") is None


def test_timeframes_are_inferred_per_file() -> None:
    assert {b.timeframe for b in load_csv(DATA / "daily_us_equities_2000_2013.csv")} == {86_400}
    assert {b.timeframe for b in load_csv(DATA / "hourly_aapl_2024_2026.csv")} == {3600}
    assert {b.timeframe for b in load_csv(DATA / "minute_aapl_2026.csv")} == {60}


def test_replay_interleaves_symbols_in_time_order() -> None:
    source = CsvReplaySource([DATA / "daily_us_equities_2000_2013.csv"], speed=0)
    batches = list(source.batches(threading.Event()))
    flat = [bar for batch in batches for bar in batch]
    assert len(flat) == 12_154
    keys = [(bar.close_time, bar.symbol) for bar in flat]
    assert keys == sorted(keys)
    assert all(len({bar.close_time for bar in batch}) == 1 for batch in batches)
    first = batches[0]
    assert [bar.symbol for bar in first] == ["AAPL", "IBM", "MSFT"]  # FB and GOOG list later
    assert {bar.symbol for bar in batches[-1]} == {"AAPL", "FB", "GOOG", "IBM", "MSFT"}


def test_two_files_merge_and_bad_rows_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "timestamp,symbol,open,high,low,close,volume\n"
        "2026-07-29 09:31:00-04:00,ZZZ,1,2,0.5,1.5,10\n"
        "2026-07-29 09:32:00-04:00,ZZZ,1,2,0.5,,10\n"
        "not a time,ZZZ,1,2,0.5,1.5,10\n"
        "2026-07-29 09:33:00-04:00,ZZZ,1,2,0.5,1.5,10\n"
    )
    source = CsvReplaySource([DATA / "minute_aapl_2026.csv", path], speed=0)
    bars = source.bars
    assert source.rejected == {"missing_field": 2}
    zzz = [b for b in bars if b.symbol == "ZZZ"]
    assert len(zzz) == 2 and zzz[0].timeframe == 60  # inferred from this file's own timestamps
    assert [b.close_time for b in bars] == sorted(b.close_time for b in bars)


def test_pacer_waits_in_data_time_divided_by_speed() -> None:
    now = [100.0]
    waits: list[float] = []

    class FakeStop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            now[0] += timeout or 0.0
            return False

    pacer = Pacer(60.0, clock=lambda: now[0])
    stop = FakeStop()
    assert (
        pacer.wait_until(1000.0, stop) and pacer.wait_until(1060.0, stop) and pacer.wait_until(1180.0, stop)
    )
    assert waits == [1.0, 2.0]
