"""Boundary → publish latency: the detector stamps each event with the time its batch of bars
arrived, the relay turns publish time minus that stamp into a histogram, the exporter serves it,
and an alert fires when its p99 passes the seed's 100 ms (docs/latency.md)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.test_relay_support import make_events, stats
from tickstockpl import contract, outbox
from tickstockpl.bars import Bar
from tickstockpl.exitcodes import RET_OK
from tickstockpl.services import detector, relay
from tickstockpl.services.exporter import build_registry
from tickstockpl.settings import Settings
from tickstockpl.sources.synthetic import SyntheticMarket

ROOT = Path(__file__).resolve().parents[2]
BOUNDARY = contract.STAT_BOUNDARY_BUCKET


class TimedSource:
    """Synthetic boundaries that note when each was handed over and when the detector came back."""

    def __init__(self, boundaries: int) -> None:
        self.market = SyntheticMarket([f"S{i:02d}" for i in range(30)], seed=5, start=0)
        self.boundaries = boundaries
        self.handed: list[tuple[int, float, float]] = []  # (bar start, handed over, detector done)
        self.rejected: Counter[str] = Counter()

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        for _ in range(self.boundaries):
            bars = self.market.step()
            handed = time.time()
            yield bars
            self.handed.append((bars[0].start, handed, time.time()))

    def close(self) -> None:
        return None


def test_the_detector_stamps_each_event_with_the_time_its_boundary_arrived(
    settings: Settings, redis_client: redis.Redis
) -> None:
    source = TimedSource(60)
    everything = settings.replace(min_confidence=0.0)
    assert detector.run(everything, threading.Event(), source=source, drain_timeout_s=5) == RET_OK
    events = [contract.decode_pattern_event(raw) for raw in redis_client.lrange(contract.KEY_OUTBOX, 0, -1)]
    assert len(events) > 100
    window = {start: (handed, done) for start, handed, done in source.handed}
    stamps: dict[int, set[float]] = {}
    for event in events:
        data = event["data"]
        stamp = data[contract.DATA_BAR_RECEIVED_AT]
        handed, done = window[data["bar_start"]]
        assert type(stamp) is float and handed <= stamp <= done
        assert stamp <= event["timestamp"]  # received, then built
        stamps.setdefault(data["bar_start"], set()).add(stamp)
    assert all(len(one) == 1 for one in stamps.values()), "one stamp per boundary"
    assert len(stamps) > 10


def test_the_relay_keeps_a_boundary_histogram_that_the_exporter_serves(
    consumer_settings: Settings, redis_client: redis.Redis
) -> None:
    now = time.time()
    old = make_events(6, bar_received_at=now - 20.0)  # 20 s before the publish: only in +Inf
    old_int = make_events(2, prefix="I", bar_received_at=int(now) - 20)  # an int stamp counts too
    ahead = make_events(3, prefix="F", bar_received_at=now + 100.0)  # a clock ahead: clamped at 0
    unstamped = make_events(4, prefix="U")  # publish-test's and replay's: not in this histogram
    outbox.enqueue(redis_client, old + old_int + ahead + unstamped)
    assert relay.run(consumer_settings, burst=True) == RET_OK
    counters = stats(redis_client)
    assert counters["patterns_published"] == "15"
    assert counters["latency_bucket:+Inf"] == "15"
    assert counters[f"{BOUNDARY}:+Inf"] == "11"
    assert counters[f"{BOUNDARY}:0.001"] == "3"
    assert counters[f"{BOUNDARY}:10.0"] == "3"
    assert float(counters[contract.STAT_BOUNDARY_SUM]) >= 8 * 20.0
    registry, collector = build_registry(consumer_settings)
    try:
        name = "tickstockpl_boundary_to_publish_latency_seconds"
        assert registry.get_sample_value(name + "_count") == 11.0
        assert registry.get_sample_value(name + "_bucket", {"le": "0.1"}) == 3.0
        assert registry.get_sample_value(name + "_bucket", {"le": "+Inf"}) == 11.0
    finally:
        collector.close()


ALERT_TEST = """
rule_files:
  - {rules}
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      # Fast: every event within 50 ms (60 a minute). Slow: from minute 10 on, 10 of 60 take 0.5 s.
      - series: 'tickstockpl_boundary_to_publish_latency_seconds_bucket{{le="0.05"}}'
        values: '0+15x40 600+12.5x40'
      - series: 'tickstockpl_boundary_to_publish_latency_seconds_bucket{{le="0.1"}}'
        values: '0+15x40 600+12.5x40'
      - series: 'tickstockpl_boundary_to_publish_latency_seconds_bucket{{le="1"}}'
        values: '0+15x40 600+15x40'
      - series: 'tickstockpl_boundary_to_publish_latency_seconds_bucket{{le="+Inf"}}'
        values: '0+15x40 600+15x40'
    alert_rule_test:
      - eval_time: 9m
        alertname: TickStockPLBoundaryLatencyHigh
        exp_alerts: []
      - eval_time: 19m
        alertname: TickStockPLBoundaryLatencyHigh
        exp_alerts:
          - exp_labels:
              severity: warning
            exp_annotations:
              # 50 of 60 a minute within 0.1 s, 10 in (0.1, 1]: p99 = 0.1 + 0.9 * (59.4 - 50) / 10
              summary: "p99 from a bar boundary to publish is 946ms (goal: 100 ms)"
"""


def test_the_alert_fires_when_the_boundary_p99_passes_100_ms(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(ALERT_TEST.format(rules=ROOT / "deploy" / "alerts.yml"))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
