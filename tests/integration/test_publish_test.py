"""`tickstockpl publish-test` as a real process against real servers, on both schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

from tests.conftest import CONSUMER_DB, INIT_DB, PostgresHandle, execute
from tests.support import run_python
from tickstockpl import contract
from tickstockpl.local_servers import free_port
from tickstockpl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ROW_SQL = """
SELECT flow_id::text, event_type, source_system, checkpoint, channel, symbol, pattern_name,
       confidence::float8, details
FROM integration_events WHERE checkpoint = 'PATTERN_PUBLISHED' ORDER BY id
"""


def run_cli(settings: Settings, *args: str, script: bool = False) -> subprocess.CompletedProcess[str]:
    """publish-test, through the CLI or through the integration document's script path."""
    command = (
        [str(ROOT / "scripts" / "test_pattern_event.py")]
        if script
        else ["-m", "tickstockpl.cli", "publish-test"]
    )
    return run_python(settings, *command, *args)


class AuditCheckingSubscriber:
    """Subscribes to the pattern channel; on each message, looks up its audit row at once."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.received: list[tuple[dict[str, Any], int]] = []
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(contract.CHANNEL_PATTERNS)
        self._pubsub.get_message(timeout=5)  # the subscribe confirmation
        self._conn = psycopg2.connect(settings.postgres_dsn)
        self._conn.autocommit = True
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                event = json.loads(message["data"])
                with self._conn.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM integration_events WHERE flow_id = %s AND checkpoint = %s",
                        (event["data"]["flow_id"], contract.CHECKPOINT_PATTERN_PUBLISHED),
                    )
                    self.received.append((event, cur.fetchone()[0]))

    def wait_for(self, count: int, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pubsub.close()
        self._conn.close()


@pytest.mark.parametrize("schema", ["init", "consumer"])
@pytest.mark.parametrize("script", [False, True])
def test_publish_test_audits_then_publishes_once(
    request: pytest.FixtureRequest, redis_client: redis.Redis, schema: str, script: bool
) -> None:
    settings: Settings = request.getfixturevalue("settings" if schema == "init" else "consumer_settings")
    subscriber = AuditCheckingSubscriber(settings, redis_client)
    try:
        result = run_cli(
            settings, "--symbol", "NVDA", "--pattern", "Support_Test", "--confidence", "0.876", script=script
        )
        subscriber.wait_for(1)
    finally:
        subscriber.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(subscriber.received) == 1
    event, rows_at_receipt = subscriber.received[0]
    assert rows_at_receipt == 1  # committed before the subscriber got the message
    contract.validate_pattern_event(event)
    data = event["data"]
    rows = execute(settings.postgres_dsn, ROW_SQL)
    assert len(rows) == 1
    flow_id, event_type, source, checkpoint, channel, symbol, pattern, confidence, details = rows[0]
    assert (flow_id, symbol, pattern, confidence) == (data["flow_id"], "NVDA", "Support_Test", 0.88)
    assert (event_type, source, checkpoint, channel) == (
        "pattern_detected",
        "TickStockPL",
        "PATTERN_PUBLISHED",
        "tickstock.events.patterns",
    )
    assert details["test"] is True and data["test"] is True
    assert f"flow_id={data['flow_id']}" in result.stdout and "subscribers=1" in result.stdout
    assert "Traceback" not in result.stderr


def test_count_and_random_choices(settings: Settings, redis_client: redis.Redis) -> None:
    result = run_cli(settings, "--count", "5", "--seed", "7")
    assert result.returncode == 0, result.stdout
    rows = execute(settings.postgres_dsn, ROW_SQL)
    assert len(rows) == 5 and len({row[0] for row in rows}) == 5
    assert {row[5] for row in rows} <= {"AAPL", "GOOGL", "MSFT", "TSLA", "NVDA"}
    assert {row[6] for row in rows} <= set(contract.REQUIREMENTS_PATTERNS)
    assert "nobody is listening" in result.stdout
    assert redis_client.xlen(contract.KEY_REPLAY_STREAM) == 5


def test_least_privilege_role_can_publish_test(
    producer_role_settings: Settings, postgres_server: PostgresHandle
) -> None:
    result = run_cli(producer_role_settings, "--count", "2")
    assert result.returncode == 0, result.stdout
    assert len(execute(postgres_server.dsn(INIT_DB), ROW_SQL)) == 2


def _assert_one_line_failure(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert text in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_redis_unreachable(settings: Settings, postgres_server: PostgresHandle) -> None:
    result = run_cli(settings.replace(redis_port=free_port()), "--count", "1")
    _assert_one_line_failure(result, 69, "Redis at")
    assert execute(postgres_server.dsn(INIT_DB), ROW_SQL) == []  # no audit row for an unpublishable event


def test_postgres_unreachable(settings: Settings) -> None:
    _assert_one_line_failure(run_cli(settings.replace(postgres_port=free_port())), 69, "PostgreSQL at")


def test_wrong_password(settings: Settings) -> None:
    _assert_one_line_failure(
        run_cli(settings.replace(postgres_password="wrong")), 78, "password authentication"
    )


def test_function_missing(
    settings: Settings, postgres_server: PostgresHandle, fresh_database: Callable[[str], str]
) -> None:
    name = fresh_database(CONSUMER_DB)
    execute(postgres_server.dsn(name), "DROP FUNCTION log_integration_event")
    _assert_one_line_failure(run_cli(settings.replace(postgres_db=name)), 78, "log_integration_event")


def test_bad_arguments_are_one_line(settings: Settings) -> None:
    _assert_one_line_failure(run_cli(settings, "--symbol", "X" * 21), 64, "data.symbol")


def test_an_unknown_pattern_is_refused_unless_custom(settings: Settings, redis_client: redis.Redis) -> None:
    """A typo must not reach the live channel and the audit table (issue 17)."""
    subscriber = AuditCheckingSubscriber(settings, redis_client)
    try:
        typo = run_cli(settings, "--pattern", "Hamer")
        _assert_one_line_failure(typo, 64, "unknown pattern 'Hamer'; did you mean Hammer?")
        assert "--custom" in typo.stdout
        assert (
            execute(settings.postgres_dsn, ROW_SQL) == []
            and redis_client.xlen(contract.KEY_REPLAY_STREAM) == 0
        )
        custom = run_cli(settings, "--pattern", "Hamer", "--custom", "--symbol", "AAPL")
        assert custom.returncode == 0, custom.stdout + custom.stderr
        known = run_cli(settings, "--pattern", "Hammer", "--symbol", "MSFT")
        assert known.returncode == 0, known.stdout + known.stderr
        subscriber.wait_for(2)
    finally:
        subscriber.close()
    assert [(event["data"]["pattern"], event["data"]["symbol"]) for event, _ in subscriber.received] == [
        ("Hamer", "AAPL"),
        ("Hammer", "MSFT"),
    ]
    assert [row[6] for row in execute(settings.postgres_dsn, ROW_SQL)] == ["Hamer", "Hammer"]


def test_the_script_runs_with_the_system_python(settings: Settings, redis_client: redis.Redis) -> None:
    """`python scripts/test_pattern_event.py` as the integration document says, with the interpreter
    .venv was built from (no redis, numpy or TA-Lib there): the script re-runs itself under .venv."""
    system_python = Path(sys.base_prefix, "bin", f"python{sys.version_info.major}.{sys.version_info.minor}")
    result = subprocess.run(
        [str(system_python), str(ROOT / "scripts" / "test_pattern_event.py"), "--pattern", "Doji"],
        env={**os.environ, **settings.to_env()},
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "published Doji" in result.stdout and "Traceback" not in result.stderr
    assert [row[6] for row in execute(settings.postgres_dsn, ROW_SQL)] == ["Doji"]
