"""The whole supervised stack on the synthetic source, seen only from outside: the channel,
integration_events, the heartbeat key, /metrics, supervisorctl, and a real Prometheus server."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stackutil import ROOT, RunningStack, Subscriber, prometheus_get, prometheus_query
from tests.support import poll
from tickstockpl import contract
from tickstockpl.local_servers import free_port
from tickstockpl.stack.supervisord import PROCESSES

pytestmark = pytest.mark.e2e


def test_supervisorctl_shows_every_program_running(synthetic_stack: RunningStack) -> None:
    status = synthetic_stack.status()
    for name in PROCESSES:
        assert status[f"tickstockpl:{name}"][0] == "RUNNING", status
    for store in ("stores:redis", "stores:postgres"):  # absent when the stores are containers
        assert store not in status or status[store][0] == "RUNNING", status


def test_synthetic_patterns_are_published_valid_and_audited(synthetic_stack: RunningStack) -> None:
    with Subscriber(synthetic_stack.redis()) as subscriber:
        poll(lambda: len(subscriber.messages) >= 20, 90, "20 pattern events on the channel")
        messages = list(subscriber.messages)
    events = [contract.decode_pattern_event(raw) for raw in messages]  # raises on any contract breach
    flow_ids = {event["data"]["flow_id"] for event in events}
    assert len(flow_ids) == len(events)

    def audited() -> bool:
        return flow_ids <= {flow_id for flow_id, _ in synthetic_stack.published_rows()}

    poll(audited, 30, "a PATTERN_PUBLISHED row for every event seen")
    rows = dict(synthetic_stack.published_rows())
    assert all(rows[flow_id] == 1 for flow_id in flow_ids)
    patterns = sorted({event["data"]["pattern"] for event in events})
    print(f"{len(events)} events, {len(flow_ids)} audited; patterns {patterns}")


def test_heartbeat_key_is_a_fresh_float(synthetic_stack: RunningStack) -> None:
    client = synthetic_stack.redis()
    for _ in range(3):
        raw = client.get(contract.KEY_HEARTBEAT)
        assert raw is not None
        assert 0 <= time.time() - float(raw) < contract.HEARTBEAT_MAX_AGE_S
        assert client.ttl(contract.KEY_HEARTBEAT) > 0
        before = float(raw)

        def moved(before: float = before) -> bool:
            return float(client.get(contract.KEY_HEARTBEAT) or 0) > before

        poll(moved, 30, "the heartbeat to move")


def test_metrics_describe_the_running_stack(synthetic_stack: RunningStack) -> None:
    poll(lambda: synthetic_stack.metric_sum("tickstockpl_patterns_published_total") > 0, 60, "a publish")
    assert synthetic_stack.metric("tickstockpl_up", dependency="redis") == 1.0
    assert synthetic_stack.metric("tickstockpl_up", dependency="postgres") == 1.0
    heartbeat_age = synthetic_stack.metric("tickstockpl_heartbeat_age_seconds")
    assert heartbeat_age is not None and heartbeat_age < contract.HEARTBEAT_MAX_AGE_S
    assert (synthetic_stack.metric("tickstockpl_outbox_enqueued_total") or 0) > 0
    assert synthetic_stack.metric_sum("tickstockpl_bars_received_total") > 0
    assert synthetic_stack.metric_sum("tickstockpl_enqueue_to_publish_latency_seconds_count") > 0
    assert synthetic_stack.metric_sum("tickstockpl_relay_batch_duration_seconds_count") > 0
    assert synthetic_stack.metric("tickstockpl_dead_letters") == 0.0


@pytest.mark.timeout(300)
def test_a_real_prometheus_scrapes_the_exporter(synthetic_stack: RunningStack, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary, "the prometheus server is not installed: apt-get install prometheus (.ci/run does it)"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {ROOT / 'deploy' / 'alerts.yml'}\n"
        "scrape_configs:\n  - job_name: tickstockpl\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{synthetic_stack.settings.metrics_port}']\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def query(expr: str) -> list[dict[str, Any]]:
            return prometheus_query(base, expr)

        up = poll(lambda: query('up{job="tickstockpl"} == 1'), 120, "Prometheus to scrape the exporter")
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{synthetic_stack.settings.metrics_port}"
        dependencies = poll(lambda: query("tickstockpl_up == 1"), 30, "tickstockpl_up series")
        assert {series["metric"]["dependency"] for series in dependencies} == {"redis", "postgres"}
        published = poll(lambda: query("tickstockpl_patterns_published_total > 0"), 60, "published series")
        assert all(series["metric"]["pattern"] for series in published)
        for name in (
            "tickstockpl_heartbeat_age_seconds",
            "tickstockpl_outbox_depth",
            "tickstockpl_channel_subscribers",
            "tickstockpl_enqueue_to_publish_latency_seconds_bucket",
            "tickstockpl_relay_batch_duration_seconds_bucket",
        ):
            assert query(name), name
        rules = prometheus_get(base, "/api/v1/rules")["groups"]
        alerts = {rule["name"] for group in rules for rule in group["rules"]}
        assert {"TickStockPLHeartbeatStale", "TickStockPLOutboxBacklog", "TickStockPLDeadLetters"} <= alerts
        assert "TickStockPLNoSubscribers" in alerts
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.timeout(900)
def test_kill_9_of_each_program_loses_and_doubles_nothing(synthetic_stack: RunningStack) -> None:
    """kill -9 through supervisorctl, each program, the relay several times mid-stream."""
    victims = [name for name in PROCESSES for _ in range(5 if name == "relay" else 1)]
    kills = 0
    with Subscriber(synthetic_stack.redis()) as subscriber:
        for name in victims:
            program = f"tickstockpl:{name}"
            published_before = synthetic_stack.metric_sum("tickstockpl_patterns_published_total")
            if name == "relay":  # kill it with work in hand, not while idle

                def progressed(before: float = published_before) -> bool:
                    return synthetic_stack.metric_sum("tickstockpl_patterns_published_total") > before

                poll(progressed, 60, "the relay to publish")
            old_pid = synthetic_stack.status()[program][1]
            result = synthetic_stack.supervisorctl("signal", "KILL", program)
            assert result.returncode == 0, result.stdout + result.stderr
            kills += 1

            def restarted(program: str = program, old_pid: int = old_pid) -> bool:
                state, pid = synthetic_stack.status()[program]
                return state == "RUNNING" and pid not in (0, old_pid)

            poll(restarted, 60, f"supervisord to restart {program}")
        # Quiesce: stop the source, let the relay drain everything, then count.
        assert synthetic_stack.supervisorctl("stop", "tickstockpl:detector-0").returncode == 0

        def drained() -> bool:
            return all(
                synthetic_stack.metric(name) == 0.0
                for name in (
                    "tickstockpl_outbox_depth",
                    "tickstockpl_processing_depth",
                    "tickstockpl_audit_backlog_depth",
                )
            )

        poll(drained, 120, "the outbox, processing list and audit backlog to drain")
        poll(lambda: len(subscriber.messages) > 0, 10, "the subscriber to have seen events")
        seen = {contract.decode_pattern_event(raw)["data"]["flow_id"] for raw in subscriber.messages}
    rows = synthetic_stack.published_rows()
    enqueued = int(synthetic_stack.metric("tickstockpl_outbox_enqueued_total") or 0)
    published = int(synthetic_stack.metric_sum("tickstockpl_patterns_published_total"))
    audited = {flow_id for flow_id, _ in rows}
    duplicates = sum(count - 1 for _, count in rows)
    lost = enqueued - len(audited)
    print(
        f"kills={kills} attempted={enqueued} published={published} audited={len(audited)}"
        f" duplicates={duplicates} lost={lost}"
    )
    assert synthetic_stack.metric("tickstockpl_dead_letters") == 0.0
    assert duplicates == 0
    assert lost == 0
    assert seen <= audited  # every event a subscriber saw has its audit row
    assert synthetic_stack.supervisorctl("start", "tickstockpl:detector-0").returncode == 0
