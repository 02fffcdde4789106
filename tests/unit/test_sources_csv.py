"""Bar files replayed as one feed: layouts by header (ours, Massive's flat files), gzip, directories and
globs, time order across files whatever each file's order, rows that cannot be bars counted."""

from __future__ import annotations

import gzip
import threading
from collections import Counter
from pathlib import Path

import pytest

from tickstockpl.bars import Bar
from tickstockpl.sources import time_order
from tickstockpl.sources.bar_files import expand
from tickstockpl.sources.csv_replay import CsvReplaySource, load_csv, parse_timestamp
from tickstockpl.sources.pacing import Pacer

DATA = Path(__file__).resolve().parents[2] / "data"
DAILY = DATA / "daily_us_equities_2000_2013.csv"
MINUTE = DATA / "minute_aapl_2026.csv"
HEADER = "timestamp,symbol,open,high,low,close,volume\n"


def feed(*paths: str | Path) -> tuple[list[list[Bar]], CsvReplaySource]:
    source = CsvReplaySource(list(paths), speed=0)
    return list(source.batches(threading.Event())), source


def in_time_order(batches: list[list[Bar]]) -> bool:
    closes = [batch[0].close_time for batch in batches]
    return closes == sorted(set(closes)) and all(len({b.close_time for b in batch}) == 1 for batch in batches)


def as_massive(bars: list[Bar], symbol: str) -> str:
    """Bars in Massive's flat-file layout (its column order; window_start in ns)."""
    rows = [
        f"{symbol},{b.volume:.0f},{b.open!r},{b.close!r},{b.high!r},{b.low!r},{b.start * 1_000_000_000},7"
        for b in bars
    ]
    return "ticker,volume,open,close,high,low,window_start,transactions\n" + "\n".join(rows) + "\n"


def test_timestamps_dates_are_utc_midnight_and_offsets_are_honoured() -> None:
    assert parse_timestamp("2000-03-01") == 951_868_800
    assert parse_timestamp("2026-07-29 09:30:00-04:00") == parse_timestamp("2026-07-29T13:30:00+00:00")
    assert parse_timestamp("yesterday") is None


def test_timeframes_are_inferred_per_file() -> None:
    assert {b.timeframe for b in load_csv(DAILY)} == {86_400}
    assert {b.timeframe for b in load_csv(DATA / "hourly_aapl_2024_2026.csv")} == {3600}
    assert {b.timeframe for b in load_csv(MINUTE)} == {60}


def test_a_file_listed_by_symbol_replays_in_time_order() -> None:
    batches, _ = feed(DAILY)
    flat = [bar for batch in batches for bar in batch]
    assert len(flat) == 12_154 and in_time_order(batches)
    assert [bar.symbol for bar in batches[0]] == ["AAPL", "IBM", "MSFT"]  # FB and GOOG list later
    assert {bar.symbol for bar in batches[-1]} == {"AAPL", "FB", "GOOG", "IBM", "MSFT"}
    assert Counter(bar.symbol for bar in flat) == {
        "AAPL": 3270,
        "IBM": 3270,
        "MSFT": 3270,
        "GOOG": 2148,
        "FB": 196,
    }


def test_small_runs_and_blocks_give_the_same_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many spilled runs per file, read in blocks smaller than a boundary: the merge and the carry of a
    boundary across blocks must lose, split or reorder nothing."""
    whole, _ = feed(DAILY, MINUTE)
    monkeypatch.setattr(time_order, "CHUNK_ROWS", 997)
    monkeypatch.setattr(time_order, "IN_FLIGHT_ROWS", 8)
    monkeypatch.setattr(time_order, "MIN_BLOCK_ROWS", 2)
    pieces, source = feed(DAILY, MINUTE)
    assert len(source.feed.files[0].runs) == 13
    assert [sorted(batch) for batch in pieces] == [sorted(batch) for batch in whole]


def test_gzip_massive_plain_directory_and_glob_merge_in_time_order(tmp_path: Path) -> None:
    minute = load_csv(MINUTE)
    (tmp_path / "flat").mkdir()
    # Massive's flat file for two tickers, listed ticker by ticker as Massive does, gzipped.
    massive = as_massive(minute[:1000], "AAPL") + as_massive(minute[500:900], "MSFT").split("\n", 1)[1]
    (tmp_path / "flat" / "2026-07-29.csv.gz").write_bytes(gzip.compress(massive.encode()))
    # The rest of AAPL in our layout, gzipped, with a name that does not say so.
    plain = HEADER + "".join(
        f"{_iso(b.start)},{b.symbol},{b.open!r},{b.high!r},{b.low!r},{b.close!r},{b.volume!r}\n"
        for b in minute[1000:]
    )
    (tmp_path / "rest.data").write_bytes(gzip.compress(plain.encode()))
    (tmp_path / "flat" / "notes.txt").write_text("not bars")  # a directory gives its .csv and .csv.gz only

    batches, source = feed(tmp_path / "flat", str(tmp_path / "*.data"))
    assert [p.name for p in source.files] == ["2026-07-29.csv.gz", "rest.data"]
    assert in_time_order(batches) and source.rejected == {} and source.feed.late == 0
    flat = [bar for batch in batches for bar in batch]
    assert sorted(b for b in flat if b.symbol == "AAPL") == minute  # every value, start and timeframe
    assert sorted(b for b in flat if b.symbol == "MSFT") == [
        b._replace(symbol="MSFT") for b in minute[500:900]
    ]
    assert {len(batch) for batch in batches[500:900]} == {2}  # both tickers in one batch per minute


def test_expand_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        expand([tmp_path / "nope.csv"])
    with pytest.raises(FileNotFoundError, match="no .csv or .csv.gz file in"):
        expand([tmp_path])
    with pytest.raises(FileNotFoundError, match="no .csv or .csv.gz file in"):
        expand([str(tmp_path / "*.csv")])
    (tmp_path / "a.csv").write_text(HEADER)
    assert expand([tmp_path, tmp_path / "a.csv", str(tmp_path / "*.csv")]) == [tmp_path / "a.csv"]


def test_an_unknown_header_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("date,price\n2020-01-02,3\n")
    with pytest.raises(
        ValueError, match=r"has not the columns timestamp,symbol,open.* or ticker,volume,open"
    ):
        CsvReplaySource([path])


def test_rows_that_cannot_be_bars_are_counted_by_reason(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "Timestamp, Symbol ,open,high,low,close,volume\n"  # names as people write them
        "2026-07-29 09:31:00-04:00,ZZZ,1,2,0.5,1.5,10\n"
        "2026-07-29 09:32:00-04:00,ZZZ,1,2,0.5,,10\n"  # missing_field
        "not a time,ZZZ,1,2,0.5,1.5,10\n"  # bad_timestamp
        "2126-07-29 09:33:00-04:00,ZZZ,1,2,0.5,1.5,10\n"  # bad_timestamp: a century ahead
        "2026-07-29 09:34:00-04:00,,1,2,0.5,1.5,10\n"  # missing_field: no symbol
        "2026-07-29 09:35:00-04:00,ZZZ,1,2,abc,1.5,10\n"  # missing_field: not a number
        "2026-07-29 09:36:00-04:00,ZZZ,1,2,0.5,1.5\n"  # missing_field: a field short
        "2026-07-29 09:37:00-04:00,ABCDEFGHIJKLMNOPQRSTU,1,2,0.5,1.5,4\n"  # bad_symbol: 21 characters
        "2026-07-29 09:38:00-04:00,Z\x00Z,1,2,0.5,1.5,4\n"  # missing_field: a NUL is no symbol
        "2026-07-29 09:39:00-04:00, ZZZ ,1,2,0.5,1.5,4\n"
    )
    source = CsvReplaySource([MINUTE, path], speed=0)
    bars = source.bars
    assert source.rejected == {"missing_field": 5, "bad_timestamp": 2, "bad_symbol": 1}
    assert sum(f.rows_read for f in source.feed.files) == 2382 + 10
    zzz = [b for b in bars if b.symbol == "ZZZ"]
    assert [b.start % 3600 // 60 for b in zzz] == [31, 39] and zzz[0].timeframe == 60
    assert [b.close_time for b in bars] == sorted(b.close_time for b in bars)


def test_a_file_with_no_usable_row_is_reported_before_the_replay(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER + "2026-07-29,ZZZ,x,x,x,x,x\n")
    source = CsvReplaySource([MINUTE, empty])
    assert source.feed.empty == [empty] and source.rejected == {"missing_field": 1}


def test_files_overlapping_out_of_order_count_late_bars(tmp_path: Path) -> None:
    """A file whose first row is not its earliest, overlapping another: every bar still comes out once,
    the ones older than what was already sent are counted as late."""
    bars = load_csv(MINUTE)[:300]
    other = tmp_path / "b.csv"
    other.write_text(as_massive(bars[:200], "BBB"))
    odd = tmp_path / "a.csv"
    odd.write_text(as_massive(bars[250:], "AAA") + as_massive(bars[:250], "CCC").split("\n", 1)[1])
    batches, source = feed(other, odd)
    flat = [bar for batch in batches for bar in batch]
    assert Counter(b.symbol for b in flat) == {"BBB": 200, "CCC": 250, "AAA": 50}
    assert source.feed.late > 0


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


def _iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


def test_broken_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    good = gzip.compress((HEADER + "2020-01-02,A,1,2,0.5,1,1\n" * 50).encode())
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(good[: len(good) // 2])
    not_gzip = tmp_path / "junk.csv.gz"
    not_gzip.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    open_quote = tmp_path / "quote.csv"
    open_quote.write_text(HEADER + '"2020-01-02,A,1,2,0.5,1,1\n2020-01-03,A,1,2,0.5,1,1\n')
    for path in (truncated, not_gzip, open_quote):
        with pytest.raises(ValueError, match=f"{path}: unreadable"):
            CsvReplaySource([path])
