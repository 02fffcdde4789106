"""`tickstockpl backtest` at market scale (issue 14, item 3): hundreds of symbols, decades of daily bars
and a year of minute bars, streamed from PostgreSQL a symbol at a time.

    .venv/bin/python -m bench.bench_backtest_scale

Starts its own PostgreSQL, applies db/init.sql and COPYs generated bars into historical_bars (a random
walk per symbol, prices in cents: made here, never committed): DAILY_SYMBOLS symbols x DAILY_YEARS
years of daily bars, and MINUTE_SYMBOLS x one year of minute bars (252 sessions x 390). Measured in
this run:

- baseline `backtest_scale_read_bars_per_s`: reading the same bars, symbol by symbol, with the
  backtester's own query (PostgresHistory.load) and nothing else: what the store alone allows;
- `backtest_scale_bars_per_s`: the CLI end to end (`--symbols ALL`, the UI's eleven candlesticks,
  `--json`) as a child process, bars read per second, and its peak RSS (`backtest_scale_rss_mb`)
  at two sizes (a fifth of the symbols, then all), which should stay flat: bars are dropped once
  priced;
- `backtest_minute_bars_per_s` and `backtest_minute_rss_mb`: the year of minute bars the same way.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg2

from bench.common import print_table, record, start_postgres
from tickstockpl import contract
from tickstockpl.backtest.store import PostgresHistory
from tickstockpl.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DAILY_SYMBOLS = 500
DAILY_YEARS = 25
MINUTE_SYMBOLS = 20
DAY = 86_400
PATTERNS = ",".join(contract.UI_CANDLESTICK_PATTERNS)


def daily_starts(years: int) -> np.ndarray:
    """Weekday midnights (UTC) of `years` years ending 2024-12-31."""
    first = int(dt.datetime(2024 - years + 1, 1, 1, tzinfo=dt.UTC).timestamp())
    days = np.arange(first, first + years * 365 * DAY, DAY, dtype=np.int64)
    return days[((days // DAY) + 3) % 7 < 5]  # 1970-01-01 was a Thursday


def minute_starts() -> np.ndarray:
    """252 sessions of 390 minutes (14:30-21:00 UTC) from 2024-01-02."""
    sessions = daily_starts(1)[:252] + 14 * 3600 + 1800
    return (sessions[:, None] + np.arange(390, dtype=np.int64)[None, :] * 60).ravel()


def copy_bars(settings: Settings, symbols: list[str], starts: np.ndarray, timeframe: str) -> int:
    """A random walk per symbol, COPYed into historical_bars; how many rows."""
    rng = np.random.default_rng(len(symbols) * 7 + len(starts))
    stamps = [dt.datetime.fromtimestamp(int(t), dt.UTC).isoformat() for t in starts]
    conn = psycopg2.connect(settings.postgres_dsn)
    try:
        for symbol in symbols:
            close = np.round(rng.uniform(20, 300) * np.exp(np.cumsum(rng.normal(0, 0.012, len(starts)))), 2)
            open_ = np.round(close * np.exp(rng.normal(0, 0.006, len(starts))), 2)
            high = np.round(np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.006, len(starts)))), 2)
            low = np.round(np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.006, len(starts)))), 2)
            volume = rng.integers(1_000, 1_000_000, len(starts))
            text = io.StringIO()
            columns = (stamps, open_.tolist(), high.tolist(), low.tolist(), close.tolist(), volume.tolist())
            for row in zip(*columns, strict=True):
                text.write(
                    f"{symbol}\t{timeframe}\t{row[0]}\t{row[1]}\t{row[2]}\t{row[3]}\t{row[4]}\t{row[5]}\n"
                )
            text.seek(0)
            with conn.cursor() as cur:
                cur.copy_expert(
                    "COPY historical_bars (symbol, timeframe, bar_start, open, high, low, close, volume)"
                    " FROM STDIN",
                    text,
                )
            conn.commit()
        with conn.cursor() as cur:
            cur.execute("ANALYZE historical_bars")
        conn.commit()
    finally:
        conn.close()
    return len(symbols) * len(starts)


def read_baseline(settings: Settings, symbols: list[str], timeframe: str, start: str, end: str) -> float:
    """Bars per second reading every symbol with the backtester's query, and nothing else."""
    store = PostgresHistory(settings)
    bars = 0
    started = time.perf_counter()
    try:
        for symbol in symbols:
            bars += len(
                store.load(symbol, timeframe, dt.date.fromisoformat(start), dt.date.fromisoformat(end), 60)
            )
    finally:
        store.close()
    return bars / (time.perf_counter() - started)


def cli_backtest(
    settings: Settings, symbols: str, timeframe: str, start: str, end: str
) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `tickstockpl backtest` as a child process."""
    command = [
        sys.executable,
        "-m",
        "tickstockpl.cli",
        "backtest",
        "--symbols",
        symbols,
        "--patterns",
        PATTERNS,
    ]
    command += ["--from", start, "--to", end, "--timeframe", timeframe, "--json"]
    env = {**os.environ, **settings.to_env(), "TICKSTOCKPL_ENV_FILE": ""}
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"backtest failed: {output.decode()[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-backtest-scale-") as directory:
        Path(directory).chmod(0o755)  # as root, PostgreSQL runs as its own user and must get in
        postgres, settings = start_postgres(Path(directory), durable=False)
        try:
            figures = run_all(settings, Path(directory))
        finally:
            postgres.stop()
    record(figures)


def run_all(settings: Settings, directory: Path) -> dict[str, float]:
    symbols = [f"D{index:04d}" for index in range(DAILY_SYMBOLS)]
    days = daily_starts(DAILY_YEARS)
    daily_rows = copy_bars(settings, symbols, days, "1d")
    minutes = minute_starts()
    minute_symbols = [f"M{index:03d}" for index in range(MINUTE_SYMBOLS)]
    minute_rows = copy_bars(settings, minute_symbols, minutes, "1m")
    cores = os.cpu_count() or 1
    span = ("1999-01-01", "2024-12-31")
    read_rate = read_baseline(settings, symbols, "1d", *span)
    fifth = directory / "fifth.txt"
    fifth.write_text("\n".join(symbols[: DAILY_SYMBOLS // 5]) + "\n")
    small_s, small_rss = cli_backtest(settings, f"@{fifth}", "1d", *span)
    all_s, all_rss = cli_backtest(settings, "ALL", "1d", *span)
    minute_span = ("2024-01-01", "2024-12-31")
    minute_s, minute_rss = cli_backtest(settings, ",".join(minute_symbols), "1m", *minute_span)
    rate = daily_rows / all_s
    minute_rate = minute_rows / minute_s
    print_table(
        f"Backtest at scale from PostgreSQL ({cores} CPU cores; eleven candlesticks; the CLI as a child"
        " process, start-up included)",
        ["run", "bars", "seconds", "bars/s", "peak RSS MB", "vs reading alone"],
        [
            ["read only (baseline)", daily_rows, daily_rows / read_rate, read_rate, "", 1.0],
            [
                f"{DAILY_SYMBOLS // 5} symbols x {DAILY_YEARS} y daily",
                daily_rows // 5,
                small_s,
                daily_rows / 5 / small_s,
                small_rss,
                "",
            ],
            [
                f"{DAILY_SYMBOLS} symbols x {DAILY_YEARS} y daily",
                daily_rows,
                all_s,
                rate,
                all_rss,
                rate / read_rate,
            ],
            [f"{MINUTE_SYMBOLS} symbols x 1 y minute", minute_rows, minute_s, minute_rate, minute_rss, ""],
        ],
    )
    return {
        "backtest_scale_read_bars_per_s": read_rate,
        "backtest_scale_bars_per_s": rate,
        "backtest_scale_rss_mb": all_rss,
        "backtest_scale_rss_mb_fifth": small_rss,
        "backtest_minute_bars_per_s": minute_rate,
        "backtest_minute_rss_mb": minute_rss,
    }


if __name__ == "__main__":
    main()
