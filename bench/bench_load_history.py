"""`tickstockpl load-history` end to end against a plain COPY of the same rows, in the same run.

    .venv/bin/python -m bench.bench_load_history

Starts its own PostgreSQL in a temp dir with production's durability (fsync and synchronous_commit
on, as bench_relay does) and applies db/init.sql. On a generated file of BARS bars (bench/bar_data.py:
SYMBOLS symbols, one bar a minute, our layout):
1. baseline `copy_rows_per_s`: `COPY ... FROM STDIN (FORMAT csv, HEADER)` of the file as it is, by
   app_readwrite, into an empty table shaped like historical_bars (its primary key included): what
   the database can ingest with no checks at all;
2. `load_history_rows_per_s`: `tickstockpl load-history FILE` as a fresh process (imports, parsing,
   the value checks, binary COPY into the staging table, the upserts, commits), into an empty
   historical_bars; its peak RSS, flat whatever the file's size;
3. for information, the same command again: every row found unchanged (the idempotent reload).
The generated file lives in a temporary directory and is removed at the end.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from bench.bar_data import SYMBOLS, generate, run_cli
from bench.common import print_table, record, start_postgres
from tickstockpl.settings import Settings
from tickstockpl.stores import connect_postgres, copy_from

MINUTES = 1_000  # x SYMBOLS = 2,000,000 bars
COPY_TABLE = "bench_copy_baseline"
COPY_SQL = (
    f"COPY {COPY_TABLE} (bar_start, symbol, open, high, low, close, volume) FROM STDIN (FORMAT csv, HEADER)"
)


# The plain-COPY baseline's empty table, made beside historical_bars when the server starts.
BASELINE_TABLE_SQL = (
    f"CREATE TABLE {COPY_TABLE} (LIKE historical_bars INCLUDING ALL)",
    f"ALTER TABLE {COPY_TABLE} ALTER timeframe SET DEFAULT '1m'",
    f"GRANT INSERT, SELECT ON {COPY_TABLE} TO app_readwrite",
)


def plain_copy(settings: Settings, path: Path) -> tuple[float, int]:
    """Seconds to COPY the file into the empty baseline table, and the rows it holds then."""
    conn = connect_postgres(settings.postgres_dsn, autocommit=False)
    try:
        with conn.cursor() as cur, path.open("rb") as data:
            started = time.perf_counter()
            copy_from(cur, COPY_SQL, data)
            conn.commit()
            seconds = time.perf_counter() - started
            cur.execute(f"SELECT count(*) FROM {COPY_TABLE}")
            row = cur.fetchone()
    finally:
        conn.close()
    return seconds, int(row[0]) if row else 0


def stored_rows(settings: Settings) -> int:
    conn = connect_postgres(settings.postgres_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM historical_bars")
            row = cur.fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-load-history-") as name:
        directory = Path(name)
        directory.chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
        print(f"{os.cpu_count()} cores; generating {MINUTES * SYMBOLS:,} bars ...", flush=True)
        started = time.perf_counter()
        files = generate(directory, MINUTES, all_three=False)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
        postgres, settings = start_postgres(directory, durable=True, setup=BASELINE_TABLE_SQL)
        try:
            copy_s, copied = plain_copy(settings, files.plain)
            load = run_cli(settings, "load-history", str(files.plain))
            loaded = stored_rows(settings)
            reload = run_cli(settings, "load-history", str(files.plain))
        finally:
            postgres.stop()
        size_mb = files.plain.stat().st_size / 1e6
    assert copied == loaded == files.bars, (copied, loaded, files.bars)
    changed = re.search(r"\(([\d,]+) new or changed\)", reload["stdout"])
    assert changed and changed.group(1) == "0", reload["stdout"]
    copy_rate, load_rate = files.bars / copy_s, files.bars / load["wall_s"]
    reload_rate = files.bars / reload["wall_s"]
    print_table(
        f"Loading {files.bars:,} bars ({size_mb:,.0f} MB of CSV, {SYMBOLS:,} symbols) into PostgreSQL",
        ["run", "rows/s", "x baseline", "seconds", "peak RSS MB"],
        [
            ["plain COPY into an empty table (baseline)", copy_rate, 1.0, copy_s, "-"],
            [
                "load-history CLI, empty historical_bars (headline)",
                load_rate,
                load_rate / copy_rate,
                load["wall_s"],
                load["peak_rss_mb"],
            ],
            [
                "load-history CLI again: every row unchanged",
                reload_rate,
                reload_rate / copy_rate,
                reload["wall_s"],
                reload["peak_rss_mb"],
            ],
        ],  # fmt: skip
    )
    record(
        {
            "load_history_rows_per_s": load_rate,
            "copy_rows_per_s": copy_rate,
            "load_history_vs_copy": load_rate / copy_rate,
            "load_history_reload_rows_per_s": reload_rate,
            "load_history_rss_mb": load["peak_rss_mb"],
        }
    )


if __name__ == "__main__":
    main()
