"""`tickstockpl load-history` on Massive's flat files, directories and globs, against real PostgreSQL,
and the rights it needs (a TEMP staging table) under the least-privilege roles."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from tests.conftest import INIT_DB, PostgresHandle, execute
from tests.integration.backtest_helpers import ROOT
from tests.support import run_cli
from tickstockpl.settings import Settings
from tickstockpl.sources.csv_replay import load_csv

MINUTE = ROOT / "data" / "minute_aapl_2026.csv"
ROWS_SQL = (
    "SELECT symbol, timeframe, extract(epoch FROM bar_start)::bigint, open, high, low, close, volume"
    " FROM historical_bars ORDER BY 1, 2, 3"
)
MASSIVE_HEADER = b"ticker,volume,open,close,high,low,window_start,transactions\n"


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args, timeout_s=120)


@pytest.fixture
def empty_bars(settings: Settings, postgres_server: PostgresHandle) -> Settings:
    execute(postgres_server.dsn(INIT_DB), "TRUNCATE historical_bars")
    return settings


def massive_day(path: Path, symbol: str, first: int, last: int) -> Path:
    """The minute file's bars [first, last) as a gzipped Massive flat file of `symbol`."""
    rows = "".join(
        f"{symbol},{b.volume!r},{b.open!r},{b.close!r},{b.high!r},{b.low!r},{b.start * 10**9},3\n"
        for b in load_csv(MINUTE)[first:last]
    )
    path.write_bytes(gzip.compress(MASSIVE_HEADER + rows.encode()))
    return path


def test_massive_flat_files_load_the_same_rows_as_our_layout(
    empty_bars: Settings, postgres_server: PostgresHandle, tmp_path: Path
) -> None:
    plain = cli(empty_bars, "load-history", str(MINUTE))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    from_plain = execute(postgres_server.dsn(INIT_DB), ROWS_SQL)
    assert len(from_plain) == 2382
    # The same bars as two days of Massive files in a directory: nothing new, nothing changed.
    days = tmp_path / "flat"
    days.mkdir()
    massive_day(days / "2026-07-29.csv.gz", "AAPL", 0, 1200)
    massive_day(days / "2026-07-30.csv.gz", "AAPL", 1200, 2382)
    again = cli(empty_bars, "load-history", str(days))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2026-07-29.csv.gz: 1,200 bars (1m, 1 symbols), 0 new or changed" in again.stdout
    assert "2026-07-30.csv.gz: 1,182 bars (1m, 1 symbols), 0 new or changed" in again.stdout
    assert execute(postgres_server.dsn(INIT_DB), ROWS_SQL) == from_plain
    # A glob of Massive files with another ticker: new rows, same values.
    massive_day(tmp_path / "x-1.csv.gz", "ZZZ", 0, 100)
    massive_day(tmp_path / "x-2.csv.gz", "ZZZ", 100, 250)
    globbed = cli(empty_bars, "load-history", str(tmp_path / "x-*.csv.gz"))
    assert "loaded 250 bars of 2 file(s) into historical_bars (250 new or changed)" in globbed.stdout
    zzz = [row for row in execute(postgres_server.dsn(INIT_DB), ROWS_SQL) if row[0] == "ZZZ"]
    assert [row[1:] for row in zzz] == [row[1:] for row in from_plain[:250]]


def test_many_batches_stay_idempotent(empty_bars: Settings, postgres_server: PostgresHandle) -> None:
    """Upserts every few rows (one transaction each) load exactly what one would."""
    from tickstockpl.backtest.bulk_load import HistoryLoader

    loader = HistoryLoader(empty_bars, flush_rows=100)
    try:
        first = loader.load(MINUTE)
        second = loader.load(MINUTE)
    finally:
        loader.close()
    assert (first.bars, first.changed, first.timeframe, first.symbols) == (2382, 2382, "1m", 1)
    assert (second.bars, second.changed) == (2382, 0)
    assert execute(postgres_server.dsn(INIT_DB), "SELECT count(*) FROM historical_bars") == [(2382,)]


def test_a_file_with_no_usable_row_exits_non_zero(empty_bars: Settings, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,symbol,open,high,low,close,volume\n2020-01-02,ZZZ,1,0.5,2,1,1\n")
    result = cli(empty_bars, "load-history", str(MINUTE), str(empty))
    assert result.returncode == 64, result.stdout
    assert "minute_aapl_2026.csv: 2,382 bars" in result.stdout  # the others are loaded
    assert f"load-history: no usable bar in {empty}" in result.stdout
    unknown = tmp_path / "other.csv"
    unknown.write_text("date,price\n2020-01-02,3\n")
    refused = cli(empty_bars, "load-history", str(unknown))
    assert refused.returncode == 64 and "has not the columns" in refused.stdout


def test_loading_needs_temp_and_write_rights_only(
    empty_bars: Settings, backtest_role_settings: Settings, postgres_server: PostgresHandle
) -> None:
    """The backtester's read-only role cannot load (a config error, exit 78); app_readwrite loads
    even where PUBLIC lost its TEMPORARY right, because db/init.sql grants it by name."""
    refused = cli(backtest_role_settings, "load-history", str(MINUTE))
    assert refused.returncode == 78 and "permission denied" in refused.stdout, refused.stdout
    admin = postgres_server.dsn(INIT_DB)
    execute(admin, f"REVOKE TEMPORARY ON DATABASE {INIT_DB} FROM PUBLIC")
    try:
        loaded = cli(empty_bars, "load-history", str(MINUTE))
        assert loaded.returncode == 0, loaded.stdout
    finally:
        execute(admin, f"GRANT TEMPORARY ON DATABASE {INIT_DB} TO PUBLIC")
