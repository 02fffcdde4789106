"""Attached to a Redis without persistence (issue 13, finding 10): `up`, doctor, the heartbeat and
the exporter say exactly what a restart would lose, and deferred audit rows get a warning, a health
reason and a metric. Real redis-servers: one without AOF started here, the session's with it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.integration.test_least_privilege import _doctor
from tickstockpl import contract, health
from tickstockpl.local_servers import LocalRedis
from tickstockpl.services import heartbeat as heartbeat_service
from tickstockpl.services.exporter_metrics import persistence_metrics
from tickstockpl.services.heartbeat import Heartbeat
from tickstockpl.settings import Settings
from tickstockpl.stack.checks import persistence_warning
from tickstockpl.stores import redis_client

DEFERRED = 3


@pytest.fixture(scope="module")
def volatile_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """appendonly no, save '': what a cache-only Redis (TickStockAppV2's may be one) looks like."""
    server = LocalRedis(tmp_path_factory.mktemp("volatile-redis"), appendonly=False).start()
    yield server
    server.stop(kill=True)


@pytest.fixture
def volatile(settings: Settings, volatile_redis: LocalRedis) -> Iterator[Settings]:
    client = redis.Redis(host=volatile_redis.host, port=volatile_redis.port)
    client.flushall()
    client.config_set("save", "")
    client.lpush(contract.KEY_AUDIT_BACKLOG, *[f"deferred-{n}" for n in range(DEFERRED)])
    client.close()
    yield settings.replace(redis_host=volatile_redis.host, redis_port=volatile_redis.port)


def _persistence(settings: Settings) -> health.RedisPersistence:
    client = redis_client(settings)
    try:
        return health.read_persistence(client)
    finally:
        client.close()


def test_doctor_and_up_name_the_exact_risk(volatile: Settings) -> None:
    report = _doctor(volatile)
    check = report["by_name"]["redis_persistence"]
    assert check["state"] == "fail" and not check["required"]
    assert check["detail"].startswith("Redis has no persistence (appendonly no, save '')")
    assert "the outbox (detected patterns not yet published)" in check["detail"]
    assert f"{DEFERRED} published pattern(s) whose audit row is deferred live ONLY there" in check["detail"]
    assert "appendonly yes" in check["hint"]
    warning = persistence_warning(volatile)
    assert warning is not None and warning == check["detail"]


def test_the_heartbeat_degrades_and_warns_and_the_exporter_counts_rows_at_risk(
    volatile: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=heartbeat_service.log.name)
    beat = Heartbeat(volatile)
    try:
        report = beat.evaluate()
    finally:
        beat.close(clean_stop=True)
    assert report.status == health.DEGRADED
    assert f"{DEFERRED} deferred audit rows only in a Redis without persistence" in report.reasons
    assert report.components["redis"]["persistence"] == health.NONE
    assert any("live ONLY there" in record.getMessage() for record in caplog.records)
    metrics = {family.name: family for family in persistence_metrics(_persistence(volatile), DEFERRED)}
    assert metrics["tickstockpl_audit_backlog_at_risk"].samples[0].value == DEFERRED
    modes = {s.labels["mode"]: s.value for s in metrics["tickstockpl_redis_persistence"].samples}
    assert modes == {"aof": 0.0, "rdb": 0.0, "none": 1.0, "unknown": 0.0}


def test_snapshots_only_is_named_too(volatile: Settings, volatile_redis: LocalRedis) -> None:
    client = redis.Redis(host=volatile_redis.host, port=volatile_redis.port)
    try:
        client.config_set("save", "3600 1")
        persistence = _persistence(volatile)
    finally:
        client.config_set("save", "")
        client.close()
    assert (persistence.mode, persistence.detail) == (health.RDB, "appendonly no, save '3600 1'")
    assert "loses every write since the last snapshot" in persistence.risk(DEFERRED)


def test_a_redis_that_forbids_config_and_info_is_unknown_not_an_error(
    volatile: Settings, volatile_redis: LocalRedis
) -> None:
    admin = redis.Redis(host=volatile_redis.host, port=volatile_redis.port)
    admin.execute_command("ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config", "-info")
    admin.close()
    persistence = _persistence(volatile.replace(redis_username="noconfig", redis_password="pw"))
    assert persistence.mode == health.UNKNOWN
    assert "forbids CONFIG GET and INFO" in persistence.detail


def test_an_aof_redis_passes(settings: Settings, redis_client: Any) -> None:
    report = _doctor(settings)
    check = report["by_name"]["redis_persistence"]
    assert check["state"] == "pass" and check["detail"] == "appendonly yes, appendfsync everysec"
    assert persistence_warning(settings) is None
