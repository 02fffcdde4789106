"""The exporter: one `/metrics` for the whole stack, read from Redis and PostgreSQL at scrape time.

The other processes keep their figures in Redis (the stats hash, the lists, the heartbeat key), so a
custom Collector reads them fresh on every scrape: nothing here can drift from the truth, and a
restart of any process (or of the exporter) loses nothing. A store that is down is reported as
`tickstockpl_up{dependency=...} 0`, never as a 500. The relay's histograms live in the stats hash
too (cumulative bucket counters), so there is one metrics path; field names come from the contract.

Run it as `python -m tickstockpl.services.exporter`; it binds
TICKSTOCKPL_METRICS_HOST:TICKSTOCKPL_METRICS_PORT
(127.0.0.1:9108 by default).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from tickstockpl import contract, health
from tickstockpl.errors import (
    AuditConfigError,
    AuditDataError,
    PostgresUnavailable,
    RedisConfigError,
    RedisUnavailable,
    TickStockPLError,
)
from tickstockpl.exitcodes import RET_CONFIG, RET_OK, RET_UNAVAILABLE
from tickstockpl.lifecycle import service_main
from tickstockpl.settings import Settings
from tickstockpl.stores import (
    PgConnection,
    close_quietly,
    postgres_connection,
    postgres_errors,
    redis_client,
    redis_errors,
)

log = logging.getLogger("tickstockpl.exporter")

PREFIX = "tickstockpl_"
PERSISTENCE_EVERY_S = 60.0
SCRAPE_TIMEOUT_S = 2.0  # each store gets this long per scrape; Prometheus' own timeout is 10 s


@dataclass(frozen=True)
class StatFamily:
    """A counter in the stats hash: an overall field and/or per-label fields `<prefix>:<label>`."""

    name: str  # metric name without the prefix and without _total
    help: str
    total_field: str | None = None  # e.g. patterns_published
    label_prefix: str | None = None  # e.g. published (fields published:<pattern>)
    label: str | None = "pattern"  # None: one unlabelled sample from total_field


# The counters the processes HINCRBY into contract.KEY_STATS (field names from the contract).
# Per-label fields win; when a process only keeps the overall figure, it is served with an empty
# label (which Prometheus drops).
STAT_FAMILIES: tuple[StatFamily, ...] = (
    StatFamily(
        "patterns_detected",
        "Patterns the detector found, by pattern.",
        contract.STAT_PATTERNS_DETECTED,
        contract.STAT_DETECTED_BY,
    ),
    StatFamily(
        "outbox_enqueued",
        "Records pushed onto the outbox, counted in the same transaction as the push (exact).",
        contract.STAT_PATTERNS_DETECTED,
        label=None,
    ),
    StatFamily(
        "patterns_published",
        "Patterns the relay published.",
        contract.STAT_PATTERNS_PUBLISHED,
        contract.STAT_PUBLISHED_BY,
    ),
    StatFamily(
        "patterns_dead_lettered",
        "Records moved to the dead-letter list.",
        contract.STAT_DEAD_LETTERED,
        contract.STAT_DEAD_LETTERED,
    ),
    StatFamily(
        "publishes_zero_subscribers",
        "Publishes that reached no subscriber (counted, neither success nor failure).",
        contract.STAT_PUBLISHED_ZERO_SUBSCRIBERS,
        label=None,
    ),
    StatFamily("audit_failures", "Audit writes that failed.", contract.STAT_AUDIT_FAILURES, label=None),
    StatFamily(
        "audit_deferred", "Audit rows deferred to the backlog.", contract.STAT_AUDIT_DEFERRED, label=None
    ),
    StatFamily(
        "audit_backlog_written",
        "Deferred audit rows written later.",
        contract.STAT_AUDIT_BACKLOG_WRITTEN,
        label=None,
    ),
    StatFamily(
        "relay_recovered", "Records recovered from the processing list.", contract.STAT_RECOVERED, label=None
    ),
    StatFamily(
        "bars_received", "Closed bars the detector received.", contract.STAT_BARS_RECEIVED, label=None
    ),
    StatFamily(
        "bars_rejected",
        "Bars the detector rejected, by reason.",
        contract.STAT_BARS_REJECTED,
        contract.STAT_BARS_REJECTED,
        "reason",
    ),
)
# Histograms kept in the stats hash as cumulative `<prefix>:<le>` counters (with `<prefix>:+Inf`)
# and a sum field: (metric name, help, bucket prefix, sum field).
STAT_HISTOGRAMS: tuple[tuple[str, str, str, str], ...] = (
    (
        "enqueue_to_publish_latency_seconds",
        "Seconds from the detector building an event to the relay publishing it.",
        contract.STAT_LATENCY_BUCKET,
        contract.STAT_LATENCY_SUM,
    ),
    (
        "relay_batch_duration_seconds",
        "Seconds the relay spent on one batch.",
        contract.STAT_BATCH_BUCKET,
        contract.STAT_BATCH_SUM,
    ),
)
# Timestamps in the stats hash, served as ages.
STAT_TIMES: Mapping[str, tuple[str, str]] = {
    contract.STAT_LAST_PATTERN_TIME: (
        "last_pattern_age_seconds",
        "Seconds since the detector last enqueued a pattern.",
    ),
    contract.STAT_LAST_PUBLISH_TIME: ("last_publish_age_seconds", "Seconds since the relay last published."),
}
# Lists whose length is the metric.
DEPTHS: Mapping[str, tuple[str, str]] = {
    contract.KEY_OUTBOX: ("outbox_depth", "Records waiting in the outbox."),
    contract.KEY_PROCESSING: ("processing_depth", "Records in flight in the relay's processing list."),
    contract.KEY_DEAD_LETTERS: ("dead_letters", "Records in the dead-letter list."),
    contract.KEY_AUDIT_BACKLOG: ("audit_backlog_depth", "Published records whose audit row is still owed."),
    contract.KEY_BACKTEST_QUEUE: ("backtest_queue_depth", "Backtest jobs waiting."),
}


def _number(raw: bytes | str | None) -> float | None:
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


class StackCollector(Collector):
    """Reads the stack's state at scrape time (client_python's custom Collector)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._redis = redis_client(settings, timeout_s=SCRAPE_TIMEOUT_S)
        self._pg: PgConnection | None = None
        self._lock = threading.Lock()  # the HTTP server may scrape from two threads at once
        self._was_up: dict[str, bool] = {}  # per store, for logging each change once
        self._persistence_read: tuple[float, health.RedisPersistence] | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # nothing known before the first scrape; keeps registration free of I/O

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = time.monotonic()
            up = GaugeMetricFamily(PREFIX + "up", "1 when the dependency answers.", labels=["dependency"])
            metrics, redis_up = self._collect_redis()
            up.add_metric(["redis"], 1.0 if redis_up else 0.0)
            pg_up = self._postgres_up()
            up.add_metric(["postgres"], 1.0 if pg_up else 0.0)
            yield up
            yield from metrics
            yield GaugeMetricFamily(
                PREFIX + "scrape_duration_seconds",
                "How long this scrape took to read the stores.",
                value=time.monotonic() - started,
            )

    # --- Redis ------------------------------------------------------------------------------------

    def _read_redis(self) -> list[Any]:
        """Everything a scrape reads from Redis, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(contract.KEY_STATS)
        pipe.get(contract.KEY_HEARTBEAT)
        for key in DEPTHS:
            pipe.llen(key)
        pipe.xlen(contract.KEY_REPLAY_STREAM)
        pipe.hgetall(health.KEY_PROGRAMS)
        pipe.pubsub_numsub(*contract.PRODUCER_CHANNELS)
        replies: list[Any] = pipe.execute()
        return replies

    def refused_by_redis(self) -> RedisConfigError | None:
        """The scrape's reads once: Redis refusing our credentials or a command (an operator must
        act) is returned; Redis being down is not (a scrape reports it as tickstockpl_up 0)."""
        try:
            with redis_errors("the exporter's reads"):
                self._read_redis()
        except RedisConfigError as exc:
            return exc
        except RedisUnavailable:
            return None
        return None

    def _collect_redis(self) -> tuple[list[Metric], bool]:
        try:
            replies = self._read_redis()
        except (redis.RedisError, OSError) as exc:
            self._log_change("Redis", False, exc)
            return [], False
        self._log_change("Redis", True, None)
        stats, heartbeat = replies[0], replies[1]
        depths = replies[2 : 2 + len(DEPTHS)]
        stream_length, programs, numsub = replies[-3], replies[-2], replies[-1]
        now = time.time()
        metrics = list(stats_metrics(stats, now))
        metrics.append(heartbeat_metric(heartbeat, now))
        for (name, help_text), depth in zip(DEPTHS.values(), depths, strict=True):
            metrics.append(GaugeMetricFamily(PREFIX + name, help_text, value=float(depth)))
        metrics.append(
            GaugeMetricFamily(
                PREFIX + "replay_stream_length", "Entries in the replay stream.", value=float(stream_length)
            )
        )
        subscribers = GaugeMetricFamily(
            PREFIX + "channel_subscribers",
            "Subscribers on each producer channel (PUBSUB NUMSUB): is TickStockAppV2 listening?",
            labels=["channel"],
        )
        for channel, count in numsub:
            subscribers.add_metric([_text(channel)], float(count))
        metrics.append(subscribers)
        metrics.extend(program_metrics(health.parse_programs(programs, now)))
        backlog = int(depths[list(DEPTHS).index(contract.KEY_AUDIT_BACKLOG)])
        metrics.extend(persistence_metrics(self._persistence(now), backlog))
        return metrics, True

    def _persistence(self, now: float) -> health.RedisPersistence:
        """Read at most once a minute (two or three round trips; it rarely changes)."""
        if self._persistence_read is None or now - self._persistence_read[0] > PERSISTENCE_EVERY_S:
            try:
                self._persistence_read = (now, health.read_persistence(self._redis))
            except TickStockPLError:
                return health.RedisPersistence(health.UNKNOWN, "Redis did not answer")
        return self._persistence_read[1]

    # --- PostgreSQL -------------------------------------------------------------------------------

    def _postgres_up(self) -> bool:
        try:
            if self._pg is None or self._pg.closed:
                self._pg = postgres_connection(
                    self._settings,
                    connect_timeout_s=max(1, int(SCRAPE_TIMEOUT_S)),
                    statement_timeout_ms=int(SCRAPE_TIMEOUT_S * 1000),
                )
            with postgres_errors(), self._pg.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except (PostgresUnavailable, AuditConfigError, AuditDataError) as exc:
            self._log_change("PostgreSQL", False, exc)
            self._close_pg()
            return False
        self._log_change("PostgreSQL", True, None)
        return True

    def _close_pg(self) -> None:
        close_quietly(self._pg)
        self._pg = None

    def _log_change(self, what: str, up: bool, error: object) -> None:
        """Log each store's state change once, not on every scrape."""
        if self._was_up.get(what) is not up:
            if up:
                log.info("%s reachable", what)
            else:
                log.warning("%s unreachable: %s", what, str(error).strip().splitlines()[0] if error else "")
            self._was_up[what] = up

    def close(self) -> None:
        self._close_pg()
        self._redis.close()


def persistence_metrics(persistence: health.RedisPersistence, audit_backlog: int) -> Iterator[Metric]:
    """What survives a Redis restart, and the deferred audit rows that would not."""
    mode = GaugeMetricFamily(
        PREFIX + "redis_persistence",
        "1 for the Redis's persistence: aof (survives a restart), rdb (snapshots only), none, unknown.",
        labels=["mode"],
    )
    for name in (health.AOF, health.RDB, health.NONE, health.UNKNOWN):
        mode.add_metric([name], 1.0 if persistence.mode == name else 0.0)
    yield mode
    yield GaugeMetricFamily(
        PREFIX + "audit_backlog_at_risk",
        "Deferred audit rows held only by a Redis without persistence: a Redis restart loses them for good.",
        value=float(audit_backlog if persistence.at_risk else 0),
    )


def program_metrics(programs: Mapping[str, health.ProgramState]) -> Iterator[Metric]:
    """Each supervised program's state as supervisord last reported it (tickstockpl/programwatch.py)."""
    running = GaugeMetricFamily(
        PREFIX + "program_running", "1 when supervisord reports the program RUNNING.", labels=["program"]
    )
    failing = GaugeMetricFamily(
        PREFIX + "program_failing",
        "1 when the program is FATAL or restart-looping (health is degraded, doctor fails).",
        labels=["program"],
    )
    failures = GaugeMetricFamily(
        PREFIX + "program_recent_failures",
        f"Unexpected exits and failed starts in the last {health.PROGRAM_FAILURE_WINDOW_S:g} s.",
        labels=["program"],
    )
    for name, program in sorted(programs.items()):
        running.add_metric([name], 1.0 if program.state == "RUNNING" else 0.0)
        failing.add_metric([name], 1.0 if program.problem else 0.0)
        failures.add_metric([name], float(program.recent_failures))
    yield from (running, failing, failures)


def stats_metrics(raw_stats: Mapping[bytes | str, bytes | str], now: float) -> Iterator[Metric]:
    """The stats hash as metric families: known counters by name, every other number generically."""
    stats: dict[str, float] = {}
    for key, raw in raw_stats.items():
        value = _number(raw)
        if value is not None:
            stats[_text(key)] = value
    used: set[str] = set()
    for family in STAT_FAMILIES:
        yield family_metric(family, stats, used)
    for name, help_text, bucket_prefix, sum_field in STAT_HISTOGRAMS:
        histogram = histogram_metric(stats, name, help_text, bucket_prefix, sum_field)
        used.update(field for field in stats if field.startswith(bucket_prefix + ":") or field == sum_field)
        if histogram is not None:
            yield histogram
    for field, (name, help_text) in STAT_TIMES.items():
        used.add(field)
        if field in stats:
            yield GaugeMetricFamily(PREFIX + name, help_text, value=max(0.0, now - stats[field]))
    other = CounterMetricFamily(
        PREFIX + "stats", "Other counters in the stack's stats hash, by field.", labels=["field"]
    )
    for field, value in sorted(stats.items()):
        if field not in used:
            other.add_metric([field], value)
    yield other


def family_metric(family: StatFamily, stats: Mapping[str, float], used: set[str]) -> Metric:
    """One counter family; adds the fields it consumed to `used`."""
    if family.total_field:
        used.add(family.total_field)
    if family.label is None:
        return CounterMetricFamily(
            PREFIX + family.name, family.help, value=stats.get(family.total_field or "", 0.0)
        )
    metric = CounterMetricFamily(PREFIX + family.name, family.help, labels=[family.label])
    prefix = f"{family.label_prefix}:" if family.label_prefix else None
    per_label = {
        field.removeprefix(prefix): value
        for field, value in stats.items()
        if prefix and field.startswith(prefix)
    }
    used.update(f"{prefix}{label}" for label in per_label)
    if per_label:
        for label, value in sorted(per_label.items()):
            metric.add_metric([label], value)
    elif family.total_field and family.total_field in stats:
        metric.add_metric([""], stats[family.total_field])
    return metric


def histogram_metric(
    stats: Mapping[str, float], name: str, help_text: str, bucket_prefix: str, sum_field: str
) -> Metric | None:
    """A histogram from cumulative bucket counters in the stats hash; None until it has any."""
    buckets: list[tuple[float, float]] = []
    for field, value in stats.items():
        if field.startswith(bucket_prefix + ":"):
            try:
                buckets.append((float(field.split(":", 1)[1]), value))
            except ValueError:
                continue
    if not buckets:
        return None
    buckets.sort()
    if buckets[-1][0] != float("inf"):
        buckets.append((float("inf"), buckets[-1][1]))
    return HistogramMetricFamily(
        PREFIX + name,
        help_text,
        buckets=[(floatToGoString(le), count) for le, count in buckets],
        sum_value=stats.get(sum_field, 0.0),
    )


def heartbeat_metric(raw: bytes | str | None, now: float) -> Metric:
    """Heartbeat age; +Inf when the key is missing or unreadable, so a `> 60` alert fires."""
    stamp = _number(raw)
    age = float("inf") if stamp is None else max(0.0, now - stamp)
    return GaugeMetricFamily(
        PREFIX + "heartbeat_age_seconds",
        "Seconds since the producer heartbeat was written (+Inf if missing); offline to the consumer at 60.",
        value=age,
    )


def build_registry(settings: Settings) -> tuple[CollectorRegistry, StackCollector]:
    """A registry with only our collector: the stack's state, read at scrape time."""
    registry = CollectorRegistry(auto_describe=False)
    collector = StackCollector(settings)
    registry.register(collector)
    return registry, collector


def run(settings: Settings, stop: threading.Event) -> int:
    """Serve /metrics until `stop` is set."""
    registry, collector = build_registry(settings)
    refused = collector.refused_by_redis()
    if refused is not None:
        log.error("exporter cannot use Redis at %s: %s", settings.redis_target, refused)
        collector.close()
        return RET_CONFIG
    try:
        server, thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.metrics_host, settings.metrics_port, exc)
        collector.close()
        return RET_UNAVAILABLE
    log.info("serving http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)
    try:
        stop.wait()
        log.info("stopping on request")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        collector.close()
    return RET_OK


def main() -> int:
    return service_main("exporter", run)


if __name__ == "__main__":
    sys.exit(main())
