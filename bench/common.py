"""Shared helpers for benchmarks: print a table, merge figures into bench/results.json.

Every benchmark measures its baseline in the same run and prints both, since our machines are
shared and noisy: a ratio means something, a bare number from another day does not.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from tickstockpl.local_servers import LocalPostgres, LocalRedis
from tickstockpl.settings import AUDIT_ROLE, Settings
from tickstockpl.stores import connect_postgres, set_login_password, with_dbname

ROOT = Path(__file__).resolve().parents[1]
RESULTS_PATH = Path(os.environ.get("TICKSTOCKPL_BENCH_RESULTS", Path(__file__).with_name("results.json")))


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned plain-text table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print(
            "  ".join(
                cell.rjust(width) if i else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))


def record(figures: Mapping[str, float]) -> None:
    """Merge flat "name": number pairs into bench/results.json (other benchmarks' keys are kept)."""
    existing: dict[str, float] = {}
    if RESULTS_PATH.exists():
        existing = json.loads(RESULTS_PATH.read_text())
    existing.update({name: round(float(value), 3) for name, value in figures.items()})
    RESULTS_PATH.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def start_postgres(
    directory: Path,
    *,
    durable: bool,
    role: str = "app_readwrite",
    database: str = "tickstock",
    setup: Sequence[str] = (),
) -> tuple[LocalPostgres, Settings]:
    """A fresh PostgreSQL in `directory` with `database` made and db/init.sql applied, then `setup`
    (admin statements); settings that connect as `role`, given a new password. `durable`: fsync
    and synchronous_commit on, as in production (the test fixtures turn them off)."""
    postgres = LocalPostgres(directory / "postgres", durable=durable).start()
    password = secrets.token_urlsafe(18)
    admin = postgres.dsn("postgres")
    conn = connect_postgres(admin)
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        conn.close()
    conn = connect_postgres(with_dbname(admin, database))
    try:
        with conn.cursor() as cur:
            cur.execute((ROOT / "db" / "init.sql").read_text())
            set_login_password(cur, role, password)
            for statement in setup:
                cur.execute(statement)
    finally:
        conn.close()
    settings = Settings(
        postgres_host=postgres.host,
        postgres_port=postgres.port,
        postgres_db=database,
        postgres_user=role,
        postgres_password=password,
    )
    return postgres, settings


def start_durable_stores(
    directory: Path, database: str = "tickstock", role: str = AUDIT_ROLE
) -> tuple[LocalRedis, LocalPostgres, Settings]:
    """A fresh redis-server and PostgreSQL in `directory`, db/init.sql applied, as `make up` has them.

    PostgreSQL keeps production's defaults, fsync and synchronous_commit on; Redis has its AOF
    (appendfsync everysec). By default the settings connect as the producer's own audit role
    (tickstockpl_producer), as the services do under `make up`.
    """
    redis_server = LocalRedis(directory / "redis").start()
    postgres, settings = start_postgres(directory, durable=True, role=role, database=database)
    return (
        redis_server,
        postgres,
        settings.replace(redis_host=redis_server.host, redis_port=redis_server.port),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least `q` of the values at or below it (of 30, p99 is
    the largest). NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
