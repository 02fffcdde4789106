"""The exporter's metric families: how each figure the stack keeps in Redis becomes a Prometheus metric.

Pure functions of what was read (no store access), so the collector in services/exporter.py only
reads and the naming, labels and help texts live in one place.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from tickstockpl import contract, health

PREFIX = "tickstockpl_"


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
        "tick_feed_disconnects",
        "Times a detector lost its tick subscription (ticks sent meanwhile are lost): docs/scaling.md.",
        contract.STAT_TICK_FEED_DISCONNECTS,
        label=None,
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
        "boundary_to_publish_latency_seconds",
        "Seconds from the detector having a bar boundary's batch (data.bar_received_at) to the relay "
        "publishing an event of it: what a trader waits for, minus the feed's own delay.",
        contract.STAT_BOUNDARY_BUCKET,
        contract.STAT_BOUNDARY_SUM,
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
# Timestamps in the stats hash, served as they are (epoch seconds): they are points in time, not
# counts, so they never land in tickstockpl_stats_total.
STAT_TIMESTAMPS: Mapping[str, tuple[str, str]] = {
    contract.STAT_STARTED_AT: (
        "stack_started_timestamp_seconds",
        "When the current stack run began (epoch seconds; set by the heartbeat).",
    ),
    contract.STAT_STOPPED_AT: (
        "stack_stopped_timestamp_seconds",
        "When the heartbeat last stopped cleanly (epoch seconds).",
    ),
    contract.STAT_LAST_BAR_TIME: (
        "last_bar_timestamp_seconds",
        "When the detector last accepted a bar (epoch seconds, the wall clock).",
    ),
}
# Per-shard levels `<prefix>:<shard>` in the stats hash, served as gauges labelled by shard.
SHARD_GAUGES: Mapping[str, tuple[str, str]] = {
    contract.STAT_SERIES_TRACKED: ("detector_series_tracked", "Series in the detector shard's engine."),
    contract.STAT_TICK_SYMBOLS_TRACKED: (
        "detector_tick_symbols_tracked",
        "Symbols the detector shard's tick aggregator holds.",
    ),
}
# Lists whose length is the metric.
DEPTHS: Mapping[str, tuple[str, str]] = {
    contract.KEY_OUTBOX: ("outbox_depth", "Records waiting in the outbox."),
    contract.KEY_PROCESSING: ("processing_depth", "Records in flight in the relay's processing list."),
    contract.KEY_DEAD_LETTERS: ("dead_letters", "Records in the dead-letter list."),
    contract.KEY_AUDIT_BACKLOG: ("audit_backlog_depth", "Published records whose audit row is still owed."),
    contract.KEY_BACKTEST_QUEUE: ("backtest_queue_depth", "Backtest jobs waiting."),
}


def parse_number(raw: bytes | str | None) -> float | None:
    """A stored number, or None when absent or not a number."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def decoded(raw: bytes | str) -> str:
    """A Redis reply (bytes or text) as text."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


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


def stats_metrics(
    raw_stats: Mapping[bytes | str, bytes | str], now: float, shards: int = 1
) -> Iterator[Metric]:
    """The stats hash as metric families: known counters by name, per-shard levels for the `shards`
    detector shards, every other number generically."""
    stats: dict[str, float] = {}
    for key, raw in raw_stats.items():
        value = parse_number(raw)
        if value is not None:
            stats[decoded(key)] = value
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
    for field, (name, help_text) in STAT_TIMESTAMPS.items():
        used.add(field)
        if field in stats:
            yield GaugeMetricFamily(PREFIX + name, help_text, value=stats[field])
    yield from shard_metrics(stats, now, shards, used)
    other = CounterMetricFamily(
        PREFIX + "stats", "Other counters in the stack's stats hash, by field.", labels=["field"]
    )
    for field, value in sorted(stats.items()):
        if field not in used:
            other.add_metric([field], value)
    yield other


def shard_metrics(stats: Mapping[str, float], now: float, shards: int, used: set[str]) -> Iterator[Metric]:
    """Each detector shard's levels and last bar age; fields of shards beyond `shards` (left by a run
    with more of them) are consumed but not served."""
    last_bar = GaugeMetricFamily(
        PREFIX + "detector_last_bar_age_seconds",
        "Seconds since the detector shard last accepted a bar (a shard that owns no symbol has none).",
        labels=["shard"],
    )
    levels = {
        prefix: GaugeMetricFamily(PREFIX + name, help_text, labels=["shard"])
        for prefix, (name, help_text) in SHARD_GAUGES.items()
    }
    for field, value in sorted(stats.items()):
        prefix, _, label = field.partition(":")
        if not label.isdigit() or (prefix not in levels and prefix != contract.STAT_SHARD_LAST_BAR_TIME):
            continue
        used.add(field)
        if int(label) >= shards:
            continue
        if prefix == contract.STAT_SHARD_LAST_BAR_TIME:
            last_bar.add_metric([label], max(0.0, now - value))
        else:
            levels[prefix].add_metric([label], value)
    yield last_bar
    yield from levels.values()


def redis_metrics(info: Mapping[str, object] | None) -> Iterator[Metric]:
    """Redis's own count of clients it closed for passing client-output-buffer-limit (INFO stats,
    Redis releases after 7.0): a subscriber closed so, ours or TickStockAppV2's, lost messages."""
    value = (info or {}).get("client_output_buffer_limit_disconnections")
    if isinstance(value, int | float):
        yield CounterMetricFamily(
            PREFIX + "redis_output_buffer_disconnections",
            "Clients Redis closed for overflowing their output buffer (INFO stats; pub/sub messages lost).",
            value=float(value),
        )


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
    stamp = parse_number(raw)
    age = float("inf") if stamp is None else max(0.0, now - stamp)
    return GaugeMetricFamily(
        PREFIX + "heartbeat_age_seconds",
        "Seconds since the producer heartbeat was written (+Inf if missing); offline to the consumer at 60.",
        value=age,
    )
