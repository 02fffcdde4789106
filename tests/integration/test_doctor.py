"""`tickstockpl doctor` as a real process: all green on a healthy stack, and each failure mode's row.

The healthy stack is the real heartbeat loop, `publish-test` for the producer's side of each flow, and
a fake TickStockAppV2 that logs EVENT_RECEIVED/EVENT_PARSED the way contract §2.3 describes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.conftest import CONSUMER_DB, PRODUCER_ROLE, PostgresHandle, execute
from tests.integration.stack_helpers import FakeConsumer, HeartbeatProcess, HeartbeatThread, fast
from tests.support import poll, run_cli
from tickstockpl import contract
from tickstockpl.local_servers import free_port
from tickstockpl.settings import Settings

REQUIRED = (
    "redis",
    "postgres",
    "schema",
    "function",
    "sequence",
    "audit_call",
    "duplicate_check",
    *("heartbeat", "programs"),
)
ADVISORY = (
    "subscribers",
    "recent_patterns",
    "consumer_flows",
    "orphans",
    "backlog",
    "redis_persistence",
    "privileges",
)
# Without a supervisord of ours (these tests run the loops themselves) `programs` is skipped.
PASSING = tuple(name for name in REQUIRED if name != "programs")


def doctor(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(settings, "doctor", "--json", *args)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [c["name"] for c in report["checks"]] == [*REQUIRED, *ADVISORY]
    assert all(c["required"] == (c["name"] in REQUIRED) for c in report["checks"])
    return result.returncode, report


def row(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(check for check in report["checks"] if check["name"] == name)


def states(report: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["state"] for check in report["checks"]}


@pytest.fixture
def heartbeat(request: pytest.FixtureRequest) -> Iterator[Callable[[Settings], HeartbeatThread]]:
    started: list[HeartbeatThread] = []

    def start(settings: Settings) -> HeartbeatThread:
        beat = HeartbeatThread(fast(settings))
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def wait_for_heartbeat(client: redis.Redis) -> None:
    poll(lambda: client.exists(contract.KEY_HEARTBEAT), 15, "the heartbeat key")


@pytest.mark.parametrize("schema", ["init", "consumer"])
def test_all_green_against_a_healthy_stack(
    request: pytest.FixtureRequest,
    redis_client: redis.Redis,
    heartbeat: Any,
    schema: str,
    postgres_server: PostgresHandle,
) -> None:
    """db/init.sql with the producer's roles is all green; the consumer's own schema, where we run as
    app_readwrite, passes with one advisory warning: that role could erase the trail."""
    app: Settings = request.getfixturevalue("settings" if schema == "init" else "consumer_settings")
    settings = app
    if schema == "init":  # what `make up` runs: the write-only audit role, the reader for the flows
        settings = app.replace(
            postgres_user=PRODUCER_ROLE,
            postgres_password=postgres_server.producer_password,
            read_password=postgres_server.reader_password,
        )
    heartbeat(settings)
    wait_for_heartbeat(redis_client)
    consumer = FakeConsumer(app, redis_client)
    try:
        published = run_cli(settings, "publish-test", "--count", "3")
        assert published.returncode == 0, published.stdout
        poll(lambda: len(consumer.handled) == 3, 15, "the consumer to log three flows")
        code, report = doctor(settings, "--orphan-grace", "0")
        text = run_cli(settings, "doctor")
    finally:
        consumer.close()
    assert code == 0 and report["ok"] is True
    if schema == "consumer":
        assert_fails(
            report, "privileges", "app_readwrite may UPDATE, DELETE, TRUNCATE", "tickstockpl_producer"
        )
        assert report["warnings"] == ["privileges"]
        assert "inline" in row(report, "duplicate_check")["detail"]
        assert "1 advisory warning(s) (privileges)" in text.stdout
        return
    assert (
        "least privilege: tickstockpl_producer writes audit rows only" in row(report, "privileges")["detail"]
    )
    assert {name: state for name, state in states(report).items() if name != "programs"} == {
        name: "pass" for name in (*PASSING, *ADVISORY)
    }
    assert row(report, "programs")["state"] == "skip"
    flows = row(report, "consumer_flows")["data"]
    assert (flows["published"], flows["completed"], flows["orphans"]) == (3, 3, 0)
    assert 0 <= flows["p50_ms"] <= flows["p95_ms"] < 10_000
    assert "latency p50" in row(report, "consumer_flows")["detail"]
    assert row(report, "subscribers")["data"]["counts"] == {
        channel: 1 for channel in contract.PRODUCER_CHANNELS
    }
    assert row(report, "heartbeat")["data"]["status"] == "healthy"
    assert text.returncode == 0
    assert text.stdout.count("✓") == len(PASSING) + len(ADVISORY) and "✗" not in text.stdout
    assert "doctor: all required checks passed; 0 advisory warning(s)" in text.stdout


def assert_fails(report: dict[str, Any], name: str, detail: str, hint: str) -> None:
    check = row(report, name)
    assert check["state"] == "fail", check
    assert detail in check["detail"], check
    assert hint in check["hint"], check


def test_redis_down(settings: Settings) -> None:
    code, report = doctor(settings.replace(redis_port=free_port()))
    assert code == 1 and report["required_failed"] == ["redis"]
    assert_fails(report, "redis", "Connection refused", "start Redis")
    assert {states(report)[name] for name in ("heartbeat", "subscribers", "backlog")} == {"skip"}
    text = run_cli(settings.replace(redis_port=free_port()), "doctor")
    assert text.returncode == 1
    assert "✗ Redis reachable" in text.stdout and "fix: start Redis" in text.stdout
    assert "doctor: 1 required check(s) failed (redis)" in text.stdout


def test_wrong_postgres_password(settings: Settings, heartbeat: Any, redis_client: redis.Redis) -> None:
    heartbeat(settings)
    wait_for_heartbeat(redis_client)
    code, report = doctor(settings.replace(postgres_password="wrong"))
    assert code == 1 and report["required_failed"] == ["postgres"]
    assert_fails(report, "postgres", "password authentication failed", "POSTGRES_PASSWORD")
    assert {states(report)[name] for name in ("schema", "function", "sequence", "audit_call")} == {"skip"}


@pytest.mark.parametrize(
    ("password", "detail"), [("", "refused our credentials"), ("wrong", "invalid username-password")]
)
def test_wrong_redis_password(
    settings: Settings, redis_client: redis.Redis, redis_server: Any, password: str, detail: str
) -> None:
    redis_client.config_set("requirepass", "s3cret")  # this connection stays authenticated
    try:
        code, report = doctor(settings.replace(redis_password=password))
    finally:
        redis_client.config_set("requirepass", "")
    assert code == 1 and report["required_failed"] == ["redis"]
    assert_fails(report, "redis", detail, "set REDIS_PASSWORD")
    assert {states(report)[name] for name in ("heartbeat", "subscribers", "backlog")} == {"skip"}


def test_function_missing(
    settings: Settings, postgres_server: PostgresHandle, fresh_database: Callable[[str], str]
) -> None:
    name = fresh_database(CONSUMER_DB)
    execute(postgres_server.dsn(name), "DROP FUNCTION log_integration_event")
    code, report = doctor(settings.replace(postgres_db=name))
    assert code == 1 and report["required_failed"] == ["function", "audit_call"]
    assert_fails(report, "function", "does not exist", "db/init.sql")
    assert_fails(report, "audit_call", "log_integration_event", "fix the failing check above")


def test_sequence_grant_missing(
    settings: Settings, postgres_server: PostgresHandle, fresh_database: Callable[[str], str]
) -> None:
    name = fresh_database(CONSUMER_DB)  # the consumer's DDL: only our explicit grant makes it work
    execute(
        postgres_server.dsn(name),
        "REVOKE USAGE, SELECT ON SEQUENCE integration_events_id_seq FROM app_readwrite",
    )
    code, report = doctor(settings.replace(postgres_db=name))
    assert code == 1 and report["required_failed"] == ["sequence", "audit_call"]
    assert_fails(
        report,
        "sequence",
        "lacks USAGE on public.integration_events_id_seq",
        "GRANT USAGE, SELECT ON SEQUENCE public.integration_events_id_seq TO app_readwrite",
    )
    assert_fails(report, "audit_call", "permission denied for sequence", "")


def test_no_subscribers_is_only_a_warning(
    settings: Settings, heartbeat: Any, redis_client: redis.Redis
) -> None:
    heartbeat(settings)
    wait_for_heartbeat(redis_client)
    code, report = doctor(settings)
    assert code == 0 and report["ok"] is True and report["required_failed"] == []
    assert_fails(
        report, "subscribers", "nobody subscribes to tickstock.events.patterns", "start TickStockAppV2"
    )
    assert "subscribers" in report["warnings"]
    assert {states(report)[name] for name in PASSING} == {"pass"}


def test_stale_heartbeat_after_a_crash(settings: Settings, redis_client: redis.Redis) -> None:
    process = HeartbeatProcess(fast(settings, heartbeat_ttl_s=60))
    try:
        wait_for_heartbeat(redis_client)
        assert doctor(settings)[0] == 0
        process.kill()  # the key stays until its TTL, then goes stale and disappears
    finally:
        process.close()
    code, report = poll(
        lambda: result if (result := doctor(settings, "--max-age", "1"))[0] == 1 else None,
        30,
        "doctor to see the heartbeat go stale",
    )
    assert report["required_failed"] == ["heartbeat"]
    assert_fails(report, "heartbeat", "stale", "start the heartbeat")
    redis_client.delete(contract.KEY_HEARTBEAT)  # expired: the stack run is still recorded as running
    code, report = doctor(settings)
    assert code == 1
    assert_fails(report, "heartbeat", "absent", "start the heartbeat")


def test_heartbeat_in_milliseconds_fails(settings: Settings, redis_client: redis.Redis) -> None:
    redis_client.set(contract.KEY_HEARTBEAT, str(int(time.time() * 1000)))
    code, report = doctor(settings)
    assert code == 1
    assert_fails(report, "heartbeat", "milliseconds", "float epoch seconds")


def test_heartbeat_not_required_before_the_stack_runs(settings: Settings, redis_client: redis.Redis) -> None:
    code, report = doctor(settings)
    assert code == 0 and row(report, "heartbeat")["state"] == "skip"
    assert "never started" in row(report, "heartbeat")["detail"]
    code, report = doctor(settings, "--expect-running")
    assert code == 1
    assert_fails(report, "heartbeat", "absent", "start the heartbeat")


def test_clean_stop_is_not_a_stale_heartbeat(settings: Settings, redis_client: redis.Redis) -> None:
    process = HeartbeatProcess(fast(settings))
    try:
        wait_for_heartbeat(redis_client)
        assert process.terminate() == 0
    finally:
        process.close()
    code, report = doctor(settings)
    assert code == 0 and "stopped cleanly" in row(report, "heartbeat")["detail"]


def test_orphan_flows(settings: Settings, heartbeat: Any, redis_client: redis.Redis) -> None:
    heartbeat(settings)
    wait_for_heartbeat(redis_client)
    deaf = redis_client.pubsub()  # subscribed, but logs nothing: the consumer's inserts failing
    deaf.subscribe(contract.CHANNEL_PATTERNS)
    try:
        assert run_cli(settings, "publish-test", "--count", "2").returncode == 0
        code, report = doctor(settings, "--orphan-grace", "0")
    finally:
        deaf.close()
    assert code == 0 and report["required_failed"] == []
    assert_fails(report, "orphans", "2 published flows", "the consumer missed them")
    assert_fails(report, "consumer_flows", "none of 2 flows", "TickStockAppV2")
    assert row(report, "recent_patterns")["state"] == "pass"
    assert row(report, "subscribers")["state"] == "pass"
    code, report = doctor(settings, "--orphan-grace", "3600")  # too young to call orphans
    assert row(report, "orphans")["state"] == "pass"


def test_backlog_and_dead_letters_warn(settings: Settings, heartbeat: Any, redis_client: redis.Redis) -> None:
    heartbeat(settings)
    wait_for_heartbeat(redis_client)
    redis_client.rpush(contract.KEY_DEAD_LETTERS, json.dumps({"reason": "not JSON", "payload": "{"}))
    code, report = doctor(settings)
    assert code == 0
    assert_fails(report, "backlog", "dead letters 1", "tickstockpl deadletters")


def test_least_privilege_role_skips_the_flow_checks(
    producer_role_settings: Settings, heartbeat: Any, redis_client: redis.Redis
) -> None:
    heartbeat(producer_role_settings)
    wait_for_heartbeat(redis_client)
    code, report = doctor(producer_role_settings)
    assert code == 0
    assert {states(report)[name] for name in PASSING} == {"pass"}
    for name in ("recent_patterns", "consumer_flows", "orphans"):
        assert row(report, name)["state"] == "skip"
        assert "needs SELECT" in row(report, name)["detail"]
