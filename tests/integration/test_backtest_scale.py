"""`tickstockpl backtest` past the job channel's limits (issue 14, item 3): more than 50 symbols from
the command line (`ALL`, `@FILE`), over the whole history, from PostgreSQL, with a progress line;
the job channel still refuses what TickStockAppV2 refuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import INIT_DB, PostgresHandle, execute
from tests.integration.backtest_helpers import DAILY
from tests.support import run_cli
from tickstockpl import contract
from tickstockpl.backtest.jobs import CLI_LIMITS, JobError, parse_job
from tickstockpl.settings import Settings

COPIES = 60  # symbols: more than the job channel's 50
PATTERNS = ["--patterns", "Hammer,Engulfing,ShootingStar"]
SPAN = ["--from", "2008-01-01", "--to", "2012-12-31"]


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, *args, timeout_s=300)


@pytest.fixture
def renamed_copies(settings: Settings, postgres_server: PostgresHandle, tmp_path: Path) -> Settings:
    """The real AAPL and MSFT daily bars from 2007 on, under COPIES new names, in historical_bars."""
    execute(postgres_server.dsn(INIT_DB), "TRUNCATE historical_bars")
    header, *rows = DAILY.read_text().splitlines()
    kept = [row.split(",") for row in rows if row[:4] >= "2007" and row.split(",")[1] in ("AAPL", "MSFT")]
    lines = [header]
    for copy in range(COPIES):
        source = "AAPL" if copy % 2 else "MSFT"
        lines += [",".join([t, f"R{copy:03d}", *rest]) for t, symbol, *rest in kept if symbol == source]
    path = tmp_path / "copies.csv"
    path.write_text("\n".join(lines) + "\n")
    loaded = cli(settings, "load-history", str(path))
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    return settings


def results(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stdout + done.stderr
    parsed: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def test_all_symbols_and_a_symbols_file_run_past_the_job_channel_limit(
    renamed_copies: Settings, tmp_path: Path
) -> None:
    every = cli(renamed_copies, "backtest", "--symbols", "ALL", *PATTERNS, *SPAN, "--json")
    found = results(every)
    assert found["symbols_tested"] == COPIES and found["symbols_without_data"] == []
    by_symbol = found["by_symbol"]
    assert isinstance(by_symbol, dict) and sorted(by_symbol) == [f"R{n:03d}" for n in range(COPIES)]
    assert isinstance(found["total_trades"], int) and found["total_trades"] > 0
    assert "bars/s" in every.stdout and "backtest [" in every.stdout  # the progress line
    listed = tmp_path / "symbols.txt"
    listed.write_text("\n".join(f"R{n:03d}" for n in range(COPIES)) + "\n")
    from_file = results(
        cli(renamed_copies, "backtest", "--symbols", f"@{listed}", *PATTERNS, *SPAN, "--json")
    )
    assert from_file == found  # the same job, however the symbols were named
    table = cli(renamed_copies, "backtest", "--symbols", "all", *PATTERNS, *SPAN)
    assert table.returncode == 0 and "R000, R001" in table.stdout and "and 50 more" in table.stdout


def test_all_over_the_real_data_is_the_listed_symbols(
    settings: Settings, postgres_server: PostgresHandle
) -> None:
    execute(postgres_server.dsn(INIT_DB), "TRUNCATE historical_bars")
    assert cli(settings, "load-history", str(DAILY)).returncode == 0
    every = results(cli(settings, "backtest", "--symbols", "ALL", *PATTERNS, *SPAN, "--json"))
    listed = results(
        cli(settings, "backtest", "--symbols", "AAPL,FB,GOOG,IBM,MSFT", *PATTERNS, *SPAN, "--json")
    )
    assert every == listed and every["symbols_tested"] == 5
    nothing = cli(
        settings, "backtest", "--symbols", "ALL", *PATTERNS, "--from", "1990-01-01", "--to", "1991-01-01"
    )
    assert nothing.returncode == 1 and "no 1d bars between 1990-01-01 and 1991-01-01" in nothing.stdout
    missing = cli(settings, "backtest", "--symbols", "@/nonexistent/symbols.txt", *PATTERNS, *SPAN)
    assert missing.returncode == 64 and "cannot read the symbols file" in missing.stdout


def test_the_job_channel_keeps_tickstockappv2_s_limits_and_the_cli_has_its_own() -> None:
    job = {
        "job_id": "scale",
        "symbols": [f"S{n:05d}" for n in range(contract.BACKTEST_MAX_SYMBOLS + 1)],
        "patterns": ["Hammer"],
        "start_date": "1990-01-01",
        "end_date": "2020-12-31",
    }
    with pytest.raises(JobError, match="too many symbols: 51 \\(at most 50\\)"):
        parse_job(json.dumps(job))
    assert len(parse_job(json.dumps(job), CLI_LIMITS).symbols) == 51
    job["symbols"] = [f"S{n:05d}" for n in range(contract.BACKTEST_CLI_MAX_SYMBOLS)]
    assert len(parse_job(json.dumps(job), CLI_LIMITS).symbols) == contract.BACKTEST_CLI_MAX_SYMBOLS
    job["symbols"] = [f"S{n:05d}" for n in range(contract.BACKTEST_CLI_MAX_SYMBOLS + 1)]
    with pytest.raises(JobError, match="too many symbols: 20,001 \\(at most 20,000\\)"):
        parse_job(json.dumps(job), CLI_LIMITS)
