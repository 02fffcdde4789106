"""`tickstockpl load-history` and `tickstockpl backtest` as real processes against real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import INIT_DB, PostgresHandle, execute
from tests.integration.backtest_helpers import DAILY, ROOT
from tests.support import run_cli
from tickstockpl.backtest.history import read_csv
from tickstockpl.local_servers import free_port
from tickstockpl.settings import Settings

HOURLY = ROOT / "data" / "hourly_aapl_2024_2026.csv"
COUNT_SQL = "SELECT timeframe, count(*), count(DISTINCT symbol) FROM historical_bars GROUP BY 1 ORDER BY 1"
RUN = ["--symbols", "AAPL,MSFT", "--patterns", "Hammer,Doji", "--from", "2005-01-01", "--to", "2010-12-31"]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args, timeout_s=120)


@pytest.fixture
def empty_bars(settings: Settings, postgres_server: PostgresHandle) -> Settings:
    execute(postgres_server.dsn(INIT_DB), "TRUNCATE historical_bars")
    return settings


def test_load_history_twice_is_idempotent(empty_bars: Settings, postgres_server: PostgresHandle) -> None:
    first = cli(empty_bars, "load-history", str(DAILY), str(HOURLY))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "loading [" in first.stdout and "100.0%" in first.stdout  # the progress bar (piped: by 10 %)
    assert (
        "daily_us_equities_2000_2013.csv: 12,154 bars (1d, 5 symbols), 12,154 new or changed" in first.stdout
    )
    assert "hourly_aapl_2024_2026.csv: 3,479 bars (1h, 1 symbols), 3,479 new or changed" in first.stdout
    assert "loaded 15,633 bars of 2 file(s) into historical_bars (15,633 new or changed)" in first.stdout
    assert execute(postgres_server.dsn(INIT_DB), COUNT_SQL) == [("1d", 12_154, 5), ("1h", 3_479, 1)]
    again = cli(empty_bars, "load-history", str(DAILY))
    assert again.returncode == 0
    assert "12,154 bars (1d, 5 symbols), 0 new or changed" in again.stdout
    assert execute(postgres_server.dsn(INIT_DB), COUNT_SQL) == [("1d", 12_154, 5), ("1h", 3_479, 1)]
    # A corrected bar is updated in place, not duplicated.
    execute(postgres_server.dsn(INIT_DB), "UPDATE historical_bars SET close = 1 WHERE symbol = 'IBM'")
    fixed = cli(empty_bars, "load-history", str(DAILY))
    assert "12,154 bars (1d, 5 symbols), 3,270 new or changed" in fixed.stdout
    rows = execute(postgres_server.dsn(INIT_DB), "SELECT count(*) FROM historical_bars WHERE close = 1")
    assert rows == [(0,)]
    # The values are the file's, to the last bit (binary COPY: no text round trip).
    stored = execute(
        postgres_server.dsn(INIT_DB),
        "SELECT extract(epoch FROM bar_start)::bigint, open, high, low, close, volume FROM historical_bars"
        " WHERE symbol = 'AAPL' AND timeframe = '1h' ORDER BY bar_start",
    )
    hourly = read_csv(HOURLY)[0][0]
    expected = list(zip(*(column.tolist() for column in hourly[2:]), strict=True))
    assert stored == expected


def test_load_history_skips_malformed_rows(empty_bars: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "timestamp,symbol,open,high,low,close,volume\n"
        "2020-01-02,xyz,10,11,9,10.5,100\n"
        "2020-01-03,XYZ,10,9,11,10.5,100\n"  # high below low
        "2020-01-06,XYZ,abc,11,9,10.5,100\n"  # not a number
        "2020-01-07,XYZ,10,11,9,10.5,100\n"
        "2020-01-07,XYZ,10,11,9,10.6,100\n"  # the same bar again: the last one read wins
        "2020-01-08,ABCDEFGHIJKLMNOPQRSTU,10,11,9,10.5,100\n"  # 21 characters
    )
    result = cli(empty_bars, "load-history", str(bad))
    assert result.returncode == 0, result.stdout
    assert "bad.csv: 2 bars (1d, 1 symbols), 2 new or changed; skipped 4 row(s): " in result.stdout
    assert "bad_symbol 1, duplicate 1, high_below_low 1, missing_field 1" in result.stdout


def test_load_history_failures_are_one_line(settings: Settings, tmp_path: Path) -> None:
    missing = cli(settings, "load-history", str(tmp_path / "nope.csv"))
    assert missing.returncode == 64 and "cannot read" in missing.stdout
    down = cli(settings.replace(postgres_port=free_port()), "load-history", str(DAILY))
    assert down.returncode == 69 and "unreachable" in down.stdout
    assert "Traceback" not in missing.stderr + down.stderr


def test_backtest_command_reads_postgres_and_matches_the_file(empty_bars: Settings) -> None:
    assert cli(empty_bars, "load-history", str(DAILY)).returncode == 0
    table = cli(empty_bars, "backtest", *RUN)
    assert table.returncode == 0, table.stdout + table.stderr
    assert "backtest [" in table.stdout and "100.0%" in table.stdout
    for text in (
        "win rate",
        "max drawdown",
        "Sharpe ratio",
        "pattern  trades",
        "symbol  trades",
        "Hammer",
        "MSFT",
    ):
        assert text in table.stdout
    from_db = cli(empty_bars, "backtest", *RUN, "--json")
    from_file = cli(empty_bars, "backtest", *RUN, "--json", "--csv", str(DAILY))
    db_results = json.loads(from_db.stdout.strip().splitlines()[-1])
    assert db_results == json.loads(from_file.stdout.strip().splitlines()[-1])
    assert db_results["total_trades"] > 0 and db_results["by_pattern"]["Doji"]["total_trades"] == 0


def test_backtest_command_errors(empty_bars: Settings) -> None:
    unknown = cli(empty_bars, "backtest", *RUN[:2], "--patterns", "Nope", *RUN[4:])
    assert unknown.returncode == 64 and "unknown pattern(s) 'Nope'" in unknown.stdout
    nothing = cli(empty_bars, "backtest", *RUN)  # nothing loaded
    assert nothing.returncode == 1 and "no 1d bars for AAPL, MSFT" in nothing.stdout
