"""Is the running stack healthy? What `up` waits for and `status` reports: the quick in-process form
of doctor's required checks plus /metrics, whether the relay has published since a moment, and
`tickstockpl doctor` itself."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import redis

from tickstockpl import contract, health
from tickstockpl.errors import TickStockPLError
from tickstockpl.settings import Settings
from tickstockpl.stores import postgres_connection


def required_checks(settings: Settings, heartbeat: bool, metrics: bool) -> list[str]:
    """The quick in-process form of doctor's required checks, plus /metrics: failures (empty: healthy)."""
    failures: list[str] = []
    if metrics:
        url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status != 200:
                    failures.append(f"{url} answered {response.status}")
        except OSError as exc:
            failures.append(f"{url}: {exc}")
    client = health.checking_client(settings, timeout_s=2)
    try:
        health.ping_redis(client)
        if heartbeat:
            problem = health.read_heartbeat(client).problem()
            if problem:
                failures.append(f"heartbeat key {contract.KEY_HEARTBEAT}: {problem}")
    except TickStockPLError as exc:
        failures.append(f"Redis at {settings.redis_target}: {exc}")
    finally:
        client.close()
    try:
        conn = postgres_connection(settings)
        try:
            with conn.cursor() as cursor:
                status = health.schema_status(cursor)
                if not status.callable:
                    failures.append(
                        f"PostgreSQL {settings.postgres_target}: schema or grants missing (apply db/init.sql)"
                    )
                elif not status.can_skip_existing:
                    failures.append(
                        f"PostgreSQL {settings.postgres_target}: the relay's duplicate check is not "
                        "allowed (no tickstockpl_log_new, no SELECT; apply db/init.sql)"
                    )
        finally:
            conn.close()
    except TickStockPLError as exc:
        failures.append(f"PostgreSQL {settings.postgres_target}: {exc}")
    return failures


def published_since(settings: Settings, since: float) -> bool:
    """True once the relay has published a pattern at or after `since` (epoch seconds)."""
    client = health.checking_client(settings, timeout_s=2)
    try:
        raw = client.hget(contract.KEY_STATS, contract.STAT_LAST_PUBLISH_TIME)
        return raw is not None and float(raw) >= since
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def run_doctor(env: Mapping[str, str], root: Path, *flags: str, quiet: bool = False) -> int:
    """Run `tickstockpl doctor` with `flags`, its table on stdout (`quiet`: the exit code only)."""
    return subprocess.run(
        [sys.executable, "-m", "tickstockpl.cli", "doctor", *flags],
        env=dict(env),
        cwd=root,
        capture_output=quiet,
        check=False,
    ).returncode


def persistence_warning(settings: Settings) -> str | None:
    """The exact risk when the attached Redis would not keep the outbox across a restart (None: it
    would, or Redis does not answer now; doctor reports that)."""
    client = health.checking_client(settings, timeout_s=2)
    try:
        persistence = health.read_persistence(client)
        backlog = health.queue_depths(client).audit_backlog
    except TickStockPLError:
        return None
    finally:
        client.close()
    return persistence.risk(backlog) or None
