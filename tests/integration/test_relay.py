"""The relay against real Redis and PostgreSQL: the happy path, recovery, poison, SIGTERM.

Most tests drive the production loop in-process with `run(settings, burst=True)`; the ones about
signals start `python -m tickstockpl.services.relay` as a process. Crash, Redis and PostgreSQL fault tests are
in test_relay_faults.py.
"""

from __future__ import annotations

import json
import signal
import threading
import uuid
from collections.abc import Callable, Iterator

import psycopg2
import pytest
import redis

from tests.conftest import APP_ROLE, CONSUMER_DB, CONSUMER_DDL, PostgresHandle, execute
from tests.integration.test_relay_support import (
    RelayProcess,
    Subscriber,
    audit_rows,
    dead_letters,
    flow_ids,
    make_events,
    queues_empty,
    run_relay,
    stats,
    stream_flow_ids,
)
from tests.support import poll
from tickstockpl import contract, outbox
from tickstockpl.audit import AuditLog
from tickstockpl.errors import AuditConfigError, PostgresUnavailable
from tickstockpl.exitcodes import RET_OK
from tickstockpl.lifecycle import RET_KILLED
from tickstockpl.relay import lists
from tickstockpl.services import relay
from tickstockpl.settings import Settings


@pytest.fixture
def subscriber(redis_client: redis.Redis) -> Iterator[Subscriber]:
    sub = Subscriber(redis_client)
    yield sub
    sub.close()


def test_relay_writes_rows_then_publishes_once_on_consumer_ddl(
    consumer_settings: Settings, redis_client: redis.Redis, subscriber: Subscriber
) -> None:
    events = make_events(37)
    outbox.enqueue(redis_client, events)
    assert relay.run(consumer_settings.replace(relay_batch_size=10), burst=True) == RET_OK
    subscriber.wait_for_flows(flow_ids(events))
    assert subscriber.counts() == {flow_id: 1 for flow_id in flow_ids(events)}
    assert audit_rows(consumer_settings) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert stream_flow_ids(redis_client) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert queues_empty(redis_client)
    # Order on the wire is the order of detection (the outbox is FIFO).
    assert [m["data"]["flow_id"] for m in subscriber.messages] == [e["data"]["flow_id"] for e in events]
    rows = execute(
        consumer_settings.postgres_dsn,
        "SELECT flow_id::text, event_type, source_system, channel, symbol, pattern_name, "
        "confidence::float8, details FROM integration_events",
    )
    by_flow = {event["data"]["flow_id"]: event for event in events}
    for flow_id, event_type, source, channel, symbol, pattern, confidence, details in rows:
        data = by_flow[flow_id]["data"]
        assert (event_type, source, channel) == ("pattern_detected", "TickStockPL", contract.CHANNEL_PATTERNS)
        assert (symbol, pattern, confidence) == (data["symbol"], data["pattern"], data["confidence"])
        assert details["tier"] == "intraday" and "deferred" not in details
    counters = stats(redis_client)
    assert counters["patterns_published"] == "37"
    assert counters["published_zero_subscribers"] == "0"
    assert counters["published:Volume_Spike"] == "10"  # indexes 0, 4, ..., 36
    assert counters["latency_bucket:+Inf"] == "37"
    buckets = [int(counters[f"latency_bucket:{le}"]) for le in contract.STAT_HISTOGRAM_BUCKETS_S]
    assert buckets == sorted(buckets) and buckets[-1] <= 37  # cumulative
    assert float(counters["latency_sum_s"]) >= 0
    assert counters["batch_bucket:+Inf"] == "4"  # 37 records in batches of 10
    assert float(counters["last_publish_time"]) >= events[-1]["timestamp"]


def test_rows_are_committed_before_the_publish(
    consumer_settings: Settings, redis_client: redis.Redis
) -> None:
    """Appendix B item 7: a subscriber that looks the row up on receipt always finds it."""
    found: list[int] = []
    pubsub = redis_client.pubsub()
    pubsub.subscribe(contract.CHANNEL_PATTERNS)
    poll(lambda: pubsub.get_message(timeout=0.1) is not None, 5, "subscribed")
    conn = psycopg2.connect(consumer_settings.postgres_dsn)
    conn.autocommit = True
    events = make_events(30)
    outbox.enqueue(redis_client, events)
    done = threading.Event()

    def listen() -> None:
        while len(found) < len(events) and not done.is_set():
            message = pubsub.get_message(timeout=0.05)
            if message and message["type"] == "message":
                flow_id = json.loads(message["data"])["data"]["flow_id"]
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM integration_events WHERE flow_id = %s", (flow_id,))
                    found.append(cur.fetchone()[0])  # type: ignore[index]

    thread = threading.Thread(target=listen)
    thread.start()
    try:
        relay.run(consumer_settings.replace(relay_batch_size=4), burst=True)
        poll(lambda: len(found) == len(events), 10, "all messages looked up")
    finally:
        done.set()
        thread.join()
        pubsub.close()
        conn.close()
    assert found == [1] * len(events)


@pytest.fixture
def stepped_relay(consumer_settings: Settings) -> Iterator[relay.Relay]:
    """A relay driven one `step` at a time, in this process."""
    instance = relay.Relay(consumer_settings)
    yield instance
    instance.close()


def _step_until(instance: relay.Relay, condition: Callable[[], bool], what: str) -> None:
    def stepped() -> bool:
        instance.step(burst=True)
        return condition()

    poll(stepped, 10, what)


def test_the_ack_waits_until_the_audit_rows_are_on_disk(
    stepped_relay: relay.Relay,
    consumer_settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows committed and events published at once; the records leave the processing list only
    once a WAL flush covers the rows' commit (here held back, as a disk that is slow to sync)."""
    events = make_events(12)
    expected = flow_ids(events)
    outbox.enqueue(redis_client, events)
    flush_wal = stepped_relay.acks.flush_log.flush_wal
    disk_caught_up = threading.Event()

    def slow_flush() -> None:
        disk_caught_up.wait(30)
        flush_wal()

    monkeypatch.setattr(stepped_relay.acks.flush_log, "flush_wal", slow_flush)
    _step_until(stepped_relay, lambda: expected <= set(subscriber.counts()), "all published")
    assert audit_rows(consumer_settings) == {flow_id: 1 for flow_id in expected}
    for _ in range(5):
        stepped_relay.step(burst=True)
    assert len(lists.processing(redis_client)) == len(events)  # published, not yet acked
    assert "patterns_published" not in stats(redis_client)  # counted with the ack

    disk_caught_up.set()
    _step_until(stepped_relay, lambda: queues_empty(redis_client), "acked after the flush")
    assert stats(redis_client)["patterns_published"] == str(len(events))
    assert sum(subscriber.counts().values()) == len(events)  # no second publish


def test_rows_whose_flush_fails_go_to_the_backlog_and_are_not_written_twice(
    stepped_relay: relay.Relay,
    consumer_settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL fails while published rows wait for the disk: whether they got there is unknown,
    so they go to the backlog with the batch acked; the backlog write then finds them, or writes
    the ones a crash lost, one row per flow either way."""
    events = make_events(8)
    expected = flow_ids(events)
    outbox.enqueue(redis_client, events)
    flush_wal = stepped_relay.acks.flush_log.flush_wal
    failures = iter([PostgresUnavailable("server closed the connection unexpectedly")])

    def flaky_flush() -> None:
        for failure in failures:
            raise failure
        flush_wal()

    monkeypatch.setattr(stepped_relay.acks.flush_log, "flush_wal", flaky_flush)
    _step_until(stepped_relay, lambda: queues_empty(redis_client), "acked into the backlog")
    counters = stats(redis_client)
    assert counters["audit_deferred"] == str(len(events))
    assert counters["audit_failures"] == "1"
    assert expected <= set(subscriber.counts())
    _step_until(stepped_relay, lambda: redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 0, "backlog written")
    assert audit_rows(consumer_settings) == {flow_id: 1 for flow_id in expected}
    assert "audit_backlog_written" in stats(redis_client)


def test_a_refused_wal_flush_falls_back_to_commits_that_wait_for_the_disk(
    stepped_relay: relay.Relay,
    consumer_settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database that refuses the flush (EXECUTE revoked) still gets every row, once, and the
    relay keeps going with durable commits, which need no flush."""
    first, second = make_events(6), make_events(6, prefix="S")

    def refused() -> None:
        raise AuditConfigError("permission denied for function pg_logical_emit_message")

    monkeypatch.setattr(stepped_relay.acks.flush_log, "flush_wal", refused)
    outbox.enqueue(redis_client, first)
    _step_until(stepped_relay, lambda: queues_empty(redis_client), "first batch acked")
    assert stepped_relay.acks.durable_commits
    outbox.enqueue(redis_client, second)
    _step_until(
        stepped_relay,
        lambda: queues_empty(redis_client) and redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 0,
        "second batch acked and the backlog written",
    )
    expected = flow_ids(first) | flow_ids(second)
    assert expected <= set(subscriber.counts())
    assert audit_rows(consumer_settings) == {flow_id: 1 for flow_id in expected}
    assert stats(redis_client)["audit_deferred"] == str(len(first))  # only what waited for the flush


def test_consecutive_batches_are_finished_in_one_call(redis_client: redis.Redis) -> None:
    """Batches acked together (one WAL flush covered them) leave the processing list in order,
    with their counters summed and their dead letters kept, as if finished one by one."""
    outbox.enqueue(redis_client, make_events(7))
    older, newer = lists.take(redis_client, 3), lists.take(redis_client, 2)
    parts = [lists.Finish(contract.KEY_PROCESSING, older), lists.Finish(contract.KEY_PROCESSING, newer)]
    parts[0].count("patterns_published", 3)
    parts[0].floats["latency_sum_s"] = 0.5
    parts[0].values["last_publish_time"] = "1.0"
    parts[1].count("patterns_published", 2)
    parts[1].floats["latency_sum_s"] = 0.25
    parts[1].values["last_publish_time"] = "2.0"
    parts[1].dead_letters.append(b'{"reason": "test"}')
    lists.finish(redis_client, lists.Finish.merged(parts))
    assert lists.processing(redis_client) == []
    assert redis_client.llen(contract.KEY_OUTBOX) == 2  # the untaken ones stay
    counters = stats(redis_client)
    assert counters["patterns_published"] == "5"
    assert float(counters["latency_sum_s"]) == 0.75
    assert counters["last_publish_time"] == "2.0"
    assert redis_client.lrange(contract.KEY_DEAD_LETTERS, 0, -1) == [b'{"reason": "test"}']
    with pytest.raises(ValueError):
        lists.Finish.merged([parts[0], lists.Finish(contract.KEY_AUDIT_BACKLOG, [])])


def test_zero_subscribers_is_counted_not_failed(settings: Settings, redis_client: redis.Redis) -> None:
    events = make_events(5)
    outbox.enqueue(redis_client, events)
    assert relay.run(settings, burst=True) == RET_OK
    counters = stats(redis_client)
    assert counters["patterns_published"] == "5"
    assert counters["published_zero_subscribers"] == "5"
    assert stream_flow_ids(redis_client) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(events)}


def test_recovery_republishes_but_never_writes_a_second_row(
    consumer_settings: Settings, redis_client: redis.Redis, subscriber: Subscriber
) -> None:
    """Records a crashed relay left in the processing list, half of them already audited."""
    events = make_events(20)
    payloads = [contract.encode(event).encode() for event in events]
    redis_client.lpush(contract.KEY_PROCESSING, *payloads)
    audit = AuditLog(consumer_settings)
    try:
        audit.log_published(events[:10])
    finally:
        audit.close()
    outbox.enqueue(redis_client, make_events(3, prefix="N"))
    assert relay.run(consumer_settings.replace(relay_batch_size=7), burst=True) == RET_OK
    subscriber.wait_for_flows(flow_ids(events))
    assert all(subscriber.counts()[flow_id] == 1 for flow_id in flow_ids(events))
    rows = audit_rows(consumer_settings)
    assert len(rows) == 23 and set(rows.values()) == {1}
    assert queues_empty(redis_client)
    assert stats(redis_client)["recovered"] == "20"


def test_a_record_enqueued_twice_gets_one_row(
    consumer_settings: Settings, redis_client: redis.Redis, subscriber: Subscriber
) -> None:
    """The detector retried an LPUSH whose reply it lost: same payload twice, same batch or not."""
    event = make_events(1)[0]
    payload = contract.encode(event).encode()
    redis_client.lpush(contract.KEY_OUTBOX, payload, payload)
    relay.run(consumer_settings, burst=True)
    redis_client.lpush(contract.KEY_OUTBOX, payload)
    relay.run(consumer_settings, burst=True)
    subscriber.wait_for_flows(flow_ids([event]))
    poll(lambda: subscriber.counts()[event["data"]["flow_id"]] == 3, 5, "three publishes")
    assert audit_rows(consumer_settings) == {event["data"]["flow_id"]: 1}


# --- poison records --------------------------------------------------------------------------------


@pytest.fixture
def drifted_database(postgres_server: PostgresHandle) -> Iterator[str]:
    """The consumer's DDL in a LATIN1 database, with drift that makes PostgreSQL refuse some rows.

    Each change stands in for a class of data error the contract validator cannot see, because the
    validator is right about the consumer's schema as documented:
    - LATIN1: a symbol with a character LATIN1 lacks (€) fails conversion: 22P05;
    - symbol VARCHAR(6): a 7-character symbol: 22001 (value too long);
    - confidence NUMERIC(2,2): confidence 1.0 no longer fits: 22003 (numeric overflow);
    - a trigger that reads details.timeframe as an integer: "1min" is 22P02 (invalid text);
    - a CHECK constraint on pattern_name: 23514.
    """
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.dsn("postgres")
    execute(admin, f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'")
    dsn = postgres_server.dsn(name)
    try:
        execute(dsn, CONSUMER_DDL.read_text())
        execute(dsn, f"GRANT USAGE, SELECT ON SEQUENCE integration_events_id_seq TO {APP_ROLE}")
        execute(dsn, "DROP VIEW pattern_flow_analysis")
        execute(dsn, "ALTER TABLE integration_events ALTER COLUMN symbol TYPE varchar(6)")
        execute(dsn, "ALTER TABLE integration_events ALTER COLUMN confidence TYPE numeric(2,2)")
        execute(dsn, "ALTER TABLE integration_events ADD CHECK (pattern_name <> 'Forbidden')")
        execute(
            dsn,
            """
            CREATE FUNCTION timeframe_minutes() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.user_count := NEW.details->>'timeframe'; RETURN NEW; END $$;
            CREATE TRIGGER timeframe_minutes BEFORE INSERT ON integration_events
                FOR EACH ROW WHEN (NEW.details ? 'timeframe') EXECUTE FUNCTION timeframe_minutes();
            """,
        )
        yield name
    finally:
        execute(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _event(symbol: str = "OK", pattern: str = "Hammer", confidence: float = 0.5, **extra: str) -> bytes:
    event = contract.build_pattern_event(symbol=symbol, pattern=pattern, confidence=confidence, extra=extra)
    return contract.encode(event).encode()


def test_poison_records_reach_dead_letters_and_neighbours_publish(
    settings: Settings, redis_client: redis.Redis, subscriber: Subscriber, drifted_database: str
) -> None:
    drifted = settings.replace(postgres_db=drifted_database, relay_batch_size=100)
    # (payload, stage, sqlstate or None, text in the reason); pushed raw, bypassing enqueue.
    poison = [
        (b"not json at all", "contract", None, "is not JSON"),
        (b"\xff\xfe\x00garbage", "contract", None, "is not JSON"),
        (b"[1, 2, 3]", "contract", None, "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "decode", None, "RecursionError"),
        (_event().replace(b'"Hammer"', b'"' + b"P" * 51 + b'"'), "contract", None, "data.pattern"),
        (_event(symbol="€URO"), "audit", "22P05", "LATIN1"),
        (_event(symbol="TOOLONG"), "audit", "22001", "too long"),
        (_event(confidence=1.0), "audit", "22003", "overflow"),
        (_event(timeframe="1min"), "audit", "22P02", "invalid input syntax"),
        (_event(pattern="Forbidden"), "audit", "23514", "check constraint"),
    ]
    valid = [_event(symbol=f"V{index}") for index in range(len(poison) + 1)]
    mixed = [valid[0]]
    for index, item in enumerate(poison):
        mixed += [item[0], valid[index + 1]]
    redis_client.lpush(contract.KEY_OUTBOX, *mixed)  # one batch: oldest (mixed[0]) at the right

    assert relay.run(drifted, burst=True) == RET_OK

    valid_flows = {json.loads(payload)["data"]["flow_id"] for payload in valid}
    subscriber.wait_for_flows(valid_flows)
    assert subscriber.counts() == {flow_id: 1 for flow_id in valid_flows}
    assert audit_rows(drifted) == {flow_id: 1 for flow_id in valid_flows}
    assert queues_empty(redis_client)
    letters = {letter.payload: letter for letter in dead_letters(redis_client)}
    assert len(letters) == len(poison)
    for payload, stage, sqlstate, text in poison:
        letter = letters[payload]  # the original bytes, exactly
        assert (letter.stage, letter.sqlstate) == (stage, sqlstate), letter
        assert text in letter.reason, letter.reason
        assert not letter.published
    counters = stats(redis_client)
    assert counters["dead_lettered"] == str(len(poison))
    assert counters["patterns_published"] == str(len(valid))
    assert counters["dead_lettered:Hammer"] == "4"  # the audit-stage ones whose pattern is known
    # Nothing is retried: a second run finds nothing to do and adds no dead letters.
    assert relay.run(drifted, burst=True) == RET_OK
    assert len(dead_letters(redis_client)) == len(poison)


# --- SIGTERM ---------------------------------------------------------------------------------------


@pytest.fixture
def audit_lock(settings: Settings) -> Iterator[psycopg2.extensions.connection]:
    """Hold the relay's advisory audit lock, so a batch is provably in flight until released."""
    conn = psycopg2.connect(settings.postgres_dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('tickstockpl.audit'))")
    yield conn
    conn.rollback()
    conn.close()


def _in_flight(redis_client: redis.Redis, settings: Settings, count: int) -> bool:
    """The relay has moved `count` records and is waiting on PostgreSQL for their rows."""
    waiting = execute(
        settings.replace(postgres_db="postgres").postgres_dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'",
    )[0][0]
    return redis_client.llen(contract.KEY_PROCESSING) == count and waiting >= 1


def test_sigterm_finishes_the_batch_in_flight_then_exits_0(
    settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    audit_lock: psycopg2.extensions.connection,
) -> None:
    process = RelayProcess(settings, POSTGRES_STATEMENT_TIMEOUT_MS="60000")
    try:
        events = make_events(12)
        outbox.enqueue(redis_client, events)
        poll(lambda: _in_flight(redis_client, settings, 12), 20, "a batch in flight")
        process.signal(signal.SIGTERM)
        audit_lock.rollback()  # PostgreSQL answers; the relay finishes the batch and stops
        code, output = process.wait()
    finally:
        process.kill()
    assert code == RET_OK, output
    assert "stopping on request" in output
    subscriber.wait_for_flows(flow_ids(events))
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert queues_empty(redis_client)


def test_second_sigterm_exits_at_once_and_leaves_the_batch_for_recovery(
    settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    audit_lock: psycopg2.extensions.connection,
) -> None:
    process = RelayProcess(settings, POSTGRES_STATEMENT_TIMEOUT_MS="60000")
    try:
        events = make_events(12)
        outbox.enqueue(redis_client, events)
        poll(lambda: _in_flight(redis_client, settings, 12), 20, "a batch in flight")
        process.signal(signal.SIGTERM)
        process.wait_for_output("SIGTERM received")  # two signals before the handler runs count as one
        process.signal(signal.SIGTERM)
        code, output = process.wait()
    finally:
        process.kill()
    assert code == RET_KILLED, output
    assert "second SIGTERM" in output
    assert redis_client.llen(contract.KEY_PROCESSING) == 12 and subscriber.counts() == {}
    audit_lock.rollback()
    result = run_relay(settings, "--burst")
    assert result.returncode == RET_OK, result.stdout
    assert "recovering 12 record(s)" in result.stdout
    subscriber.wait_for_flows(flow_ids(events))
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert queues_empty(redis_client)


def test_relay_module_runs_as_a_process(settings: Settings, redis_client: redis.Redis) -> None:
    outbox.enqueue(redis_client, make_events(3))
    result = run_relay(settings, "--burst")
    assert result.returncode == RET_OK, result.stdout + result.stderr
    assert "relay stopped: burst done" in result.stdout
    assert result.stderr == ""
    assert len(audit_rows(settings)) == 3


def test_bad_setting_is_a_config_error(settings: Settings) -> None:
    result = run_relay(settings, "--burst", TICKSTOCKPL_CRASH_AT="somewhere")
    assert result.returncode == 78
    assert "TICKSTOCKPL_CRASH_AT" in result.stdout


def test_a_wrong_redis_password_is_a_config_error(
    settings: Settings, redis_client: redis.Redis, redis_server: object
) -> None:
    """Exit 78 (supervisord does not restart it) with the cause, not an endless backoff."""
    outbox.enqueue(redis_client, make_events(3))
    redis_client.config_set("requirepass", "s3cret")  # this connection stays authenticated
    try:
        result = run_relay(settings.replace(redis_password="wrong"))
    finally:
        redis_client.config_set("requirepass", "")
    assert result.returncode == 78, result.stdout + result.stderr
    assert "relay cannot use Redis" in result.stdout
    assert redis_client.llen(contract.KEY_OUTBOX) == 3  # nothing taken, nothing lost


def test_a_unique_violation_means_the_row_exists_not_poison(
    consumer_settings: Settings, postgres_server: PostgresHandle, fresh_database: Callable[[str], str]
) -> None:
    """A consumer database that added a unique index: a second write of a flow is not a dead letter."""
    name = fresh_database(CONSUMER_DB)
    execute(
        postgres_server.dsn(name), "CREATE UNIQUE INDEX one_row ON integration_events (flow_id, checkpoint)"
    )
    settings = consumer_settings.replace(postgres_db=name)
    events = make_events(6)
    audit = AuditLog(settings)
    try:
        audit.log_published(events[:2])
        written, rejected = audit.log_published_isolating(events)  # no skip: the index refuses two
    finally:
        audit.close()
    assert rejected == []
    assert set(written) == flow_ids(events)
    assert audit_rows(settings) == {flow_id: 1 for flow_id in flow_ids(events)}


def test_take_blocks_then_moves_the_rest_in_one_call_even_after_a_script_flush(
    redis_client: redis.Redis,
) -> None:
    events = make_events(3)
    outbox.enqueue(redis_client, events)
    redis_client.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
    taken = lists.take(redis_client, 10, block_s=0.1)
    expected = [event["data"]["flow_id"] for event in events]  # oldest first
    assert [json.loads(payload)["data"]["flow_id"] for payload in taken] == expected
    assert redis_client.llen(contract.KEY_OUTBOX) == 0
    assert redis_client.llen(contract.KEY_PROCESSING) == 3
    assert lists.take(redis_client, 10, block_s=0.1) == []


def test_relay_publishes_after_its_scripts_are_flushed(
    settings: Settings, redis_client: redis.Redis, subscriber: Subscriber
) -> None:
    first, second = make_events(5), make_events(5)
    outbox.enqueue(redis_client, first)
    assert relay.run(settings, burst=True) == RET_OK
    redis_client.script_flush()
    outbox.enqueue(redis_client, second)
    assert relay.run(settings, burst=True) == RET_OK
    subscriber.wait_for_flows(flow_ids(first + second))
    assert subscriber.counts() == {flow_id: 1 for flow_id in flow_ids(first + second)}
    assert queues_empty(redis_client)
    assert stats(redis_client)["patterns_published"] == "10"
