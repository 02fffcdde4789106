"""bench_boundary's floor: the least any producer could do with the same bursts, on the same servers.

(a) Detection alone: `StreamingEngine.process`, the confidence minimum and `EventBuilder.build` on
    the same bars as the detector process (the same synthetic market: seed, symbols, bar length), in
    this process: boundary → events ready.
(b) The contract's minimum for those events: their PATTERN_PUBLISHED rows in ONE set-based
    `log_integration_event` call (`AuditLog.log_published`: one query string, the rows unpacked by
    `jsonb_to_recordset`), committed and flushed to disk (synchronous_commit on), then every event
    PUBLISHed in one pipeline. No outbox, no processing list, no decode, no recovery, no replay
    stream, no ack; payloads encoded with orjson. It ends where the pipeline's figure ends: at the
    subscriber's receipt of the burst's last event.

The floor of a boundary is (a) + (b). Boundaries run one at a time; (b) of one boundary ends before
(a) of the next begins.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import redis

from bench.boundary_subscriber import IDLE_S, Subscriber
from tickstockpl import contract
from tickstockpl.audit import AuditLog
from tickstockpl.patterns import EventBuilder, StreamingEngine, publishable
from tickstockpl.settings import Settings
from tickstockpl.sources.synthetic import SyntheticMarket


@dataclass
class Floor:
    """Per boundary, in seconds: (a) for every boundary; the parts of (b) for the measured ones."""

    counts: list[int] = field(default_factory=list)  # events per boundary, every boundary
    detect: list[float] = field(default_factory=list)  # (a), every boundary
    audit: list[float] = field(default_factory=list)  # (b): encode + the audit call, committed
    publish: list[float] = field(default_factory=list)  # (b): ... + the PUBLISH pipeline returned
    first: list[float] = field(default_factory=list)  # (b): ... + the first event received
    last: list[float] = field(default_factory=list)  # (b): ... + the last event received

    def total(self, measured: range) -> list[float]:
        """(a) + (b) per measured boundary: the floor."""
        return [self.detect[k] + last for k, last in zip(measured, self.last, strict=True)]


def measure(
    settings: Settings, subscriber: Subscriber, boundaries: int, measured: range, min_confidence: float
) -> Floor:
    """Run (a) on every boundary and (b) on the measured ones."""
    market = SyntheticMarket(
        settings.symbols, seed=settings.synthetic_seed, bar_seconds=settings.bar_seconds, start=0
    )
    engine, builder = StreamingEngine(), EventBuilder()
    audit = AuditLog(settings)
    audit.connect()
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    floor = Floor()
    sent: dict[float, tuple[float, float, float]] = {}  # bar start -> (start, audited, published)
    try:
        for k in range(boundaries):
            bars = market.step()
            started, received_at = time.perf_counter(), time.time()
            published = publishable(engine.process(bars), min_confidence)
            if k not in measured:  # the warm-up: only the counts, to check the pipeline's bursts
                floor.detect.append(time.perf_counter() - started)
                floor.counts.append(len(published))
                continue
            events = builder.build(published, received_at=received_at)
            floor.detect.append(time.perf_counter() - started)
            floor.counts.append(len(events))
            if events:
                sent[float(bars[0].start)] = contract_minimum(audit, client, events)
                time.sleep(IDLE_S)  # the subscriber reads the burst before the next detection
        received: dict[float, list[float]] = defaultdict(list)
        for at, _, _, bar_start in subscriber.collect():
            received[bar_start].append(at)
        for bar_start, (start, audited, published) in sent.items():
            floor.audit.append(audited - start)
            floor.publish.append(published - start)
            floor.first.append(min(received[bar_start]) - start)
            floor.last.append(max(received[bar_start]) - start)
    finally:
        audit.close()
        client.close()
    if len(floor.last) != len(measured):
        raise RuntimeError(f"the floor published {len(floor.last)} of {len(measured)} measured bursts")
    return floor


def contract_minimum(
    audit: AuditLog, client: redis.Redis, events: Sequence[dict[str, object]]
) -> tuple[float, float, float]:
    """Audit rows in one call, committed; then one PUBLISH pipeline. (start, audited, published)."""
    start = time.time()
    payloads = [orjson.dumps(event) for event in events]
    audit.log_published(events)  # type: ignore[arg-type]
    audited = time.time()
    pipe = client.pipeline(transaction=False)
    for payload in payloads:
        pipe.publish(contract.CHANNEL_PATTERNS, payload)
    pipe.execute()
    return start, audited, time.time()
