"""The exporter against real Redis and PostgreSQL: what it serves, and that a dead store is a metric."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tickstockpl import contract
from tickstockpl.local_servers import free_port, wait_for
from tickstockpl.services.exporter import build_registry
from tickstockpl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def sample(registry: Any, name: str, **labels: str) -> float | None:
    value: float | None = registry.get_sample_value(name, labels)
    return value


def test_serves_the_stack_state_from_redis(settings: Settings, redis_client: redis.Redis) -> None:
    redis_client.hset(
        contract.KEY_STATS,
        mapping={
            "patterns_detected": 7,
            "published:Doji": 3,
            "published:Hammer": 2,
            "patterns_published": 5,
            "dead_lettered": 1,
            "dead_lettered:Doji": 1,
            "published_zero_subscribers": 2,
            "audit_deferred": 4,
            "latency_bucket:0.001": 1,
            "latency_bucket:0.01": 4,
            "latency_bucket:+Inf": 5,
            "latency_sum_s": 0.5,
            "bars_received": 100,
            "bars_rejected:high_below_low": 2,
            "something_new": 9,
            "last_pattern_time": repr(time.time() - 5),
            "started_at": "1758300000.25",
            "last_bar_time": "1758300090.5",
        },
    )
    redis_client.lpush(contract.KEY_OUTBOX, "a", "b", "c")
    redis_client.lpush(contract.KEY_PROCESSING, "d")
    redis_client.lpush(contract.KEY_DEAD_LETTERS, "e", "f")
    redis_client.set(contract.KEY_HEARTBEAT, repr(time.time() - 12))
    subscriber = redis_client.pubsub()
    subscriber.subscribe(contract.CHANNEL_PATTERNS)
    wait_for(lambda: redis_client.pubsub_numsub(contract.CHANNEL_PATTERNS)[0][1] == 1, 5, "subscription")
    registry, collector = build_registry(settings)
    try:
        assert sample(registry, "tickstockpl_up", dependency="redis") == 1.0
        assert sample(registry, "tickstockpl_up", dependency="postgres") == 1.0
        assert sample(registry, "tickstockpl_patterns_detected_total", pattern="") == 7.0
        assert sample(registry, "tickstockpl_outbox_enqueued_total") == 7.0
        assert sample(registry, "tickstockpl_patterns_published_total", pattern="Doji") == 3.0
        assert sample(registry, "tickstockpl_patterns_published_total", pattern="Hammer") == 2.0
        assert sample(registry, "tickstockpl_patterns_published_total", pattern="") is None
        assert sample(registry, "tickstockpl_patterns_dead_lettered_total", pattern="Doji") == 1.0
        assert sample(registry, "tickstockpl_publishes_zero_subscribers_total") == 2.0
        latency = "tickstockpl_enqueue_to_publish_latency_seconds"
        assert sample(registry, latency + "_bucket", le="0.001") == 1.0
        assert sample(registry, latency + "_bucket", le="0.01") == 4.0
        assert sample(registry, latency + "_bucket", le="+Inf") == 5.0
        assert sample(registry, latency + "_count") == 5.0
        assert sample(registry, latency + "_sum") == 0.5
        assert sample(registry, "tickstockpl_stats_total", field="latency_sum_s") is None
        assert sample(registry, "tickstockpl_audit_deferred_total") == 4.0
        assert sample(registry, "tickstockpl_bars_received_total") == 100.0
        assert sample(registry, "tickstockpl_bars_rejected_total", reason="high_below_low") == 2.0
        assert sample(registry, "tickstockpl_stats_total", field="something_new") == 9.0
        # Timestamps are gauges of their own, not counters among the other stats (issue 17).
        assert sample(registry, "tickstockpl_stack_started_timestamp_seconds") == 1758300000.25
        assert sample(registry, "tickstockpl_last_bar_timestamp_seconds") == 1758300090.5
        assert sample(registry, "tickstockpl_stack_stopped_timestamp_seconds") is None  # not stopped
        for field in ("started_at", "last_bar_time", "last_pattern_time"):
            assert sample(registry, "tickstockpl_stats_total", field=field) is None
        assert sample(registry, "tickstockpl_outbox_depth") == 3.0
        assert sample(registry, "tickstockpl_processing_depth") == 1.0
        assert sample(registry, "tickstockpl_dead_letters") == 2.0
        assert sample(registry, "tickstockpl_channel_subscribers", channel=contract.CHANNEL_PATTERNS) == 1.0
        assert sample(registry, "tickstockpl_channel_subscribers", channel=contract.CHANNEL_HEALTH) == 0.0
        heartbeat_age = sample(registry, "tickstockpl_heartbeat_age_seconds")
        assert heartbeat_age is not None and 12.0 <= heartbeat_age < 3600
        pattern_age = sample(registry, "tickstockpl_last_pattern_age_seconds")
        assert pattern_age is not None and 5.0 <= pattern_age < 3600
    finally:
        subscriber.close()
        collector.close()


def test_a_missing_heartbeat_is_infinitely_old(settings: Settings) -> None:
    registry, collector = build_registry(settings)
    try:
        assert sample(registry, "tickstockpl_heartbeat_age_seconds") == float("inf")
        assert sample(registry, "tickstockpl_outbox_depth") == 0.0
        assert sample(registry, "tickstockpl_audit_deferred_total") == 0.0
        assert sample(registry, "tickstockpl_patterns_detected_total", pattern="") is None
    finally:
        collector.close()


def test_stores_down_are_metrics_not_errors(settings: Settings) -> None:
    dead = settings.replace(redis_port=free_port(), postgres_port=free_port(), postgres_connect_timeout_s=1)
    registry, collector = build_registry(dead)
    try:
        assert sample(registry, "tickstockpl_up", dependency="redis") == 0.0
        assert sample(registry, "tickstockpl_up", dependency="postgres") == 0.0
        assert sample(registry, "tickstockpl_outbox_depth") is None
    finally:
        collector.close()


def test_wrong_postgres_password_is_postgres_down(settings: Settings) -> None:
    registry, collector = build_registry(settings.replace(postgres_password="not-the-password"))
    try:
        assert sample(registry, "tickstockpl_up", dependency="redis") == 1.0
        assert sample(registry, "tickstockpl_up", dependency="postgres") == 0.0
    finally:
        collector.close()


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.mark.parametrize("redis_alive", [True, False], ids=["stores-up", "redis-down"])
def test_process_serves_metrics_and_stops_on_sigterm(settings: Settings, redis_alive: bool) -> None:
    port = free_port()
    used = settings if redis_alive else settings.replace(redis_port=free_port())
    env = {**os.environ, **used.to_env(), "TICKSTOCKPL_METRICS_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tickstockpl.services.exporter"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _get(url)[0] == 200, 20, "the exporter's /metrics")
        status, body = _get(url)
        assert status == 200
        assert f'tickstockpl_up{{dependency="redis"}} {1.0 if redis_alive else 0.0}' in body
        assert 'tickstockpl_up{dependency="postgres"} 1.0' in body
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stdout + stderr
    assert "serving http://127.0.0.1" in stdout
    assert stderr == ""  # the consumer's launcher never reads stderr


def test_each_detector_shard_has_its_own_gauges_and_a_gone_shard_none(
    settings: Settings, redis_client: redis.Redis
) -> None:
    now = time.time()
    redis_client.hset(
        contract.KEY_STATS,
        mapping={
            "series_tracked:0": 6,
            "series_tracked:1": 1,
            "series_tracked:2": 9,  # left by a run with three shards
            "tick_symbols_tracked:1": 4,
            "shard_last_bar_time:0": repr(now - 30),
            "shard_last_bar_time:1": repr(now - 400),
            "tick_feed_disconnects": 2,
        },
    )
    registry, collector = build_registry(settings.replace(detector_shards=2))
    try:
        assert sample(registry, "tickstockpl_detector_series_tracked", shard="0") == 6.0
        assert sample(registry, "tickstockpl_detector_series_tracked", shard="1") == 1.0
        assert sample(registry, "tickstockpl_detector_series_tracked", shard="2") is None
        assert sample(registry, "tickstockpl_detector_tick_symbols_tracked", shard="1") == 4.0
        ages = [sample(registry, "tickstockpl_detector_last_bar_age_seconds", shard=s) for s in "01"]
        assert ages[0] is not None and 30 <= ages[0] < 400 <= (ages[1] or 0.0)
        assert sample(registry, "tickstockpl_stats_total", field="series_tracked:2") is None
        assert sample(registry, "tickstockpl_tick_feed_disconnects_total") == 2.0
    finally:
        collector.close()
