"""The relay under faults: kill -9 at each step, Redis restarted, PostgreSQL stopped, function gone.

The relay runs as a real process here (`python -m tickstockpl.services.relay`), except where an in-process
burst is enough. Stopping the session's servers affects the session: each test restarts them in a
`finally`, and waits until they answer again.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
import redis

from tests.conftest import CONSUMER_DB, PostgresHandle, execute
from tests.integration.test_relay_support import (
    RelayProcess,
    Subscriber,
    audit_rows,
    flow_ids,
    make_events,
    queues_empty,
    run_relay,
    stats,
    stream_flow_ids,
)
from tests.support import poll
from tickstockpl import contract, outbox
from tickstockpl.exitcodes import RET_OK
from tickstockpl.local_servers import free_port
from tickstockpl.services import relay
from tickstockpl.settings import Settings

CRASHES = 20  # kills per crash point
BATCH = 10


@pytest.fixture
def subscriber(redis_client: redis.Redis) -> Iterator[Subscriber]:
    sub = Subscriber(redis_client)
    yield sub
    sub.close()


@pytest.mark.parametrize("point", ["after_move", "after_audit", "after_publish", "before_ack"])
def test_kill_9_at_each_crash_point_loses_nothing_and_writes_one_row_per_flow(
    point: str,
    consumer_settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """CRASHES runs that SIGKILL themselves at `point`, each after recovering the last one's batch.

    Crash points fire on fresh batches only, so every run first recovers what the previous kill
    left in the processing list (the recovery path completes), then takes new records and dies.
    A run takes at most two fresh batches (one in flight while the next is audited) before dying:
    with at most one batch allowed to wait for its audit flush, the relay stops taking until then.
    """
    events = make_events(CRASHES * BATCH * 2 + 15)
    outbox.enqueue(redis_client, events)
    settings = consumer_settings.replace(relay_batch_size=BATCH, relay_max_unacked=BATCH)
    for run in range(CRASHES):
        result = run_relay(settings, "--burst", TICKSTOCKPL_CRASH_AT=point)
        assert result.returncode == -signal.SIGKILL, f"run {run}: {result.stdout}{result.stderr}"
        assert f"crash point {point}: SIGKILL" in result.stdout
        if run > 0:
            assert "recovering" in result.stdout  # the previous kill left records in flight
    final = run_relay(settings, "--burst")
    assert final.returncode == RET_OK, final.stdout + final.stderr

    expected = flow_ids(events)
    subscriber.wait_for_flows(expected)
    counts = subscriber.counts()
    published = len(expected & set(counts))
    duplicates = sum(counts.values()) - len(counts)
    lost = len(expected) - published
    with capsys.disabled():
        print(
            f"\n  crash point {point:<13} kills={CRASHES} attempted={len(events)} published={published} "
            f"duplicates={duplicates} lost={lost}"
        )
    assert lost == 0
    assert set(counts) == expected
    assert audit_rows(consumer_settings) == {flow_id: 1 for flow_id in expected}  # no unique constraint
    assert queues_empty(redis_client)
    if point in ("after_move", "after_audit"):
        assert duplicates == 0  # killed before anything of the batch went out
    else:
        assert duplicates >= CRASHES * BATCH  # each killed batch went out, then again on recovery


def test_redis_restart_mid_stream_loses_nothing(
    settings: Settings, redis_client: redis.Redis, redis_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """appendonly on: a restart keeps the outbox and processing list; the relay backs off and resumes.

    Redis is stopped (SIGTERM: it writes its AOF and exits) and started only once the relay has
    noticed, so the backoff path runs, not just redis-py's quiet reconnect.
    """
    before = make_events(20_000, prefix="B")
    for start in range(0, len(before), 2_000):
        outbox.enqueue(redis_client, before[start : start + 2_000])
    process = RelayProcess(settings.replace(relay_batch_size=20))
    try:
        poll(lambda: int(stats(redis_client).get("patterns_published", 0)) >= 500, 60, "relay under way")
        waiting = redis_client.llen(contract.KEY_OUTBOX)
        try:
            redis_server.stop()
            process.wait_for_output("Redis unavailable")
        finally:
            redis_server.start()
        after = make_events(500, prefix="A")
        outbox.enqueue(redis_client, after)
        poll(
            lambda: queues_empty(redis_client) and len(audit_rows(settings)) == len(before) + len(after),
            120,
            "every record relayed after the restart",
        )
        code, output = process.stop()
    finally:
        process.kill()
    assert waiting > 0, "the restart must happen mid-stream"
    assert code == RET_OK, output
    assert "Redis available again" in output
    in_stream = stream_flow_ids(redis_client)
    lost = flow_ids(before) - set(in_stream)
    with capsys.disabled():
        print(
            f"\n  redis restart: enqueued before={len(before)} (waiting at restart={waiting}) "
            f"after={len(after)} published={len(set(in_stream))} lost={len(lost)}"
        )
    assert lost == set()
    assert flow_ids(after) <= set(in_stream)
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(before) | flow_ids(after)}


class PostgresSwitch:
    """Stops and starts the session's PostgreSQL; the fixture starts it again if a test left it down."""

    def __init__(self, server: PostgresHandle) -> None:
        self._server = server
        self.down = False

    def stop(self) -> None:
        self._server.stop()
        self.down = True

    def start(self) -> None:
        if self.down:  # starting a running server would start a second postmaster
            self._server.start()
            self.down = False


@pytest.fixture
def postgres_switch(postgres_server: PostgresHandle) -> Iterator[PostgresSwitch]:
    switch = PostgresSwitch(postgres_server)
    try:
        yield switch
    finally:
        switch.start()


def _postgres_answers(settings: Settings) -> bool:
    try:
        psycopg2.connect(settings.postgres_dsn).close()
        return True
    except psycopg2.OperationalError:
        return False


def test_postgres_outage_publishing_continues_and_rows_follow(
    settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    postgres_switch: PostgresSwitch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    process = RelayProcess(settings.replace(relay_batch_size=25))
    try:
        first = make_events(30, prefix="U")
        outbox.enqueue(redis_client, first)
        subscriber.wait_for_flows(flow_ids(first))
        poll(lambda: len(audit_rows(settings)) == 30, 10, "rows while PostgreSQL is up")
        poll(lambda: queues_empty(redis_client), 10, "acked once their rows were on disk")

        postgres_switch.stop()
        during = make_events(300, prefix="D")
        for start in range(0, len(during), 50):
            outbox.enqueue(redis_client, during[start : start + 50])
        subscriber.wait_for_flows(flow_ids(during))  # published while PostgreSQL is down
        poll(lambda: redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 300, 10, "300 rows in the backlog")
        assert not _postgres_answers(settings)  # the outage was real for the whole publish
        backlog_at_peak = redis_client.llen(contract.KEY_AUDIT_BACKLOG)

        postgres_switch.start()
        poll(
            lambda: redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 0 and len(audit_rows(settings)) == 330,
            60,
            "the backlog written after PostgreSQL returned",
        )
        code, output = process.stop()
    finally:
        process.kill()
    assert code == RET_OK, output
    assert "PostgreSQL audit database" in output and "available again" in output
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(first) | flow_ids(during)}
    rows = execute(
        settings.postgres_dsn,
        "SELECT flow_id::text, details FROM integration_events WHERE details ? 'deferred'",
    )
    assert {flow_id for flow_id, _ in rows} == flow_ids(during)
    published_times = {event["data"]["flow_id"]: event["timestamp"] for event in during}
    for flow_id, details in rows:
        assert details["deferred"] is True
        assert details["published_at"] >= published_times[flow_id]  # the publish time, not the write
    assert all(count == 1 for count in subscriber.counts().values())
    counters = stats(redis_client)
    assert counters["audit_deferred"] == "300" and counters["audit_backlog_written"] == "300"
    with capsys.disabled():
        print(
            f"\n  postgres outage: published during outage={len(during)} backlog at peak={backlog_at_peak} "
            f"rows after={len(audit_rows(settings))} audit_failures={counters['audit_failures']}"
        )


def test_function_missing_is_loud_and_handled_like_an_outage(
    consumer_settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    postgres_server: PostgresHandle,
    fresh_database: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The consumer drops log_integration_event (its Sprint 32 script): publish, keep the rows, say so."""
    name = fresh_database(CONSUMER_DB)
    dsn = postgres_server.dsn(name)
    execute(dsn, "ALTER FUNCTION log_integration_event RENAME TO log_integration_event_away")
    settings = consumer_settings.replace(postgres_db=name)
    events = make_events(8)
    outbox.enqueue(redis_client, events)
    with caplog.at_level(logging.WARNING):
        assert relay.run(settings, burst=True) == RET_OK
    subscriber.wait_for_flows(flow_ids(events))
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert any("AUDIT DATABASE MISCONFIGURED" in text and "log_integration_event" in text for text in errors)
    assert redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 8

    execute(dsn, "ALTER FUNCTION log_integration_event_away RENAME TO log_integration_event")
    assert relay.run(settings, burst=True) == RET_OK
    assert redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 0
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert subscriber.counts() == {flow_id: 1 for flow_id in flow_ids(events)}


def test_stale_records_of_a_dead_relay_are_recovered_while_running(
    settings: Settings, redis_client: redis.Redis, subscriber: Subscriber
) -> None:
    process = RelayProcess(settings, TICKSTOCKPL_RELAY_STALE_AFTER="0.5")
    try:
        process.wait_for_output("relay starting")
        # Past its start-up recovery (which would take these as its own leftovers): waiting on BLMOVE.
        poll(lambda: any(c.get("cmd") == "blmove" for c in redis_client.client_list()), 10, "relay idle")
        events = make_events(6)
        # Another relay moved these, then died: they are not this relay's, and not in the outbox.
        redis_client.lpush(contract.KEY_PROCESSING, *[contract.encode(event).encode() for event in events])
        subscriber.wait_for_flows(flow_ids(events))
        poll(lambda: queues_empty(redis_client), 10, "processing list emptied")
        code, output = process.stop()
    finally:
        process.kill()
    assert code == RET_OK, output
    assert "stale in the processing list" in output
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert json.loads(redis_client.hget(contract.KEY_STATS, "recovered") or b"0") == 6


def test_slow_postgres_defers_rows_and_publishing_goes_on(
    settings: Settings, redis_client: redis.Redis, subscriber: Subscriber
) -> None:
    """A statement that outlives POSTGRES_STATEMENT_TIMEOUT_MS is 'unavailable': publish, defer, catch up.

    The test holds the relay's advisory audit lock, so each audit waits until the timeout cancels it.
    """
    slow = settings.replace(postgres_statement_timeout_ms=300)
    blocker = psycopg2.connect(settings.postgres_dsn)
    try:
        with blocker.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('tickstockpl.audit'))")
        events = make_events(40)
        outbox.enqueue(redis_client, events)
        assert relay.run(slow.replace(relay_batch_size=10), burst=True) == RET_OK
        subscriber.wait_for_flows(flow_ids(events))
        assert redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 40 and audit_rows(settings) == {}
        assert (
            "canceling statement due to statement timeout"
            in redis_client.lindex(contract.KEY_AUDIT_BACKLOG, 0).decode()
        )  # type: ignore[union-attr]
    finally:
        blocker.rollback()
        blocker.close()
    assert relay.run(slow, burst=True) == RET_OK
    assert redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 0
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert subscriber.counts() == {flow_id: 1 for flow_id in flow_ids(events)}


def test_redis_down_at_start_backs_off_and_stops_cleanly(settings: Settings) -> None:
    process = RelayProcess(settings.replace(redis_port=free_port()), TICKSTOCKPL_LOG_LEVEL="DEBUG")
    try:
        process.wait_for_output("Redis attempt 3 failed", timeout_s=60)
        code, output = process.stop()
    finally:
        process.kill()
    assert code == RET_OK, output
    assert output.count("Redis unavailable") == 1  # the state change is logged once, not per attempt
    assert "relay stopped: stopping on request" in output
    assert "Traceback" not in output
