"""Field names of the stack-wide stats hash (KEY_STATS), shared by its writers and its readers.

The detector, outbox, relay and heartbeat write them; the heartbeat, doctor and exporter read them.
"""

from __future__ import annotations

from typing import Final

# Fields of KEY_STATS, written by the processes and read by the heartbeat, doctor and exporter. A
# `..._BY` name is a prefix: the field `<prefix>:<label>` counts one pattern (or reason).
STAT_PATTERNS_DETECTED: Final = "patterns_detected"  # HINCRBY by outbox.enqueue
STAT_LAST_PATTERN_TIME: Final = "last_pattern_time"  # epoch seconds (float string), by outbox.enqueue
STAT_LAST_BAR_TIME: Final = "last_bar_time"  # epoch seconds of the detector's last accepted bar, if kept
STAT_STARTED_AT: Final = "started_at"  # when the running stack started: set by the heartbeat (see docs)
STAT_STOPPED_AT: Final = "stopped_at"  # when the heartbeat last stopped cleanly
STAT_DETECTED_BY: Final = "detected"  # detector: signals per pattern, before the confidence minimum
STAT_SIGNALS_BELOW_MIN_CONFIDENCE: Final = "signals_below_min_confidence"  # detector: held back
STAT_BARS_RECEIVED: Final = "bars_received"  # detector
STAT_BARS_REJECTED: Final = "bars_rejected"  # detector; also the prefix of the per-reason fields
STAT_SERIES_EVICTED: Final = "series_evicted"  # detector: series forgotten to stay within the cap
STAT_TICK_FEED_DISCONNECTS: Final = "tick_feed_disconnects"  # detector: tick subscription lost (and redone)
# Per-shard levels (HSET, not HINCRBY): `<prefix>:<shard index>`, one field per detector shard.
STAT_SERIES_TRACKED: Final = "series_tracked"  # series in the shard's engine
STAT_TICK_SYMBOLS_TRACKED: Final = "tick_symbols_tracked"  # symbols the shard's tick aggregator holds
STAT_SHARD_LAST_BAR_TIME: Final = "shard_last_bar_time"  # epoch seconds of the shard's last accepted bar
STAT_PATTERNS_PUBLISHED: Final = "patterns_published"  # relay
STAT_PUBLISHED_BY: Final = "published"  # relay: per pattern
STAT_PUBLISHED_ZERO_SUBSCRIBERS: Final = "published_zero_subscribers"  # relay: PUBLISH reached no one
STAT_LAST_PUBLISH_TIME: Final = "last_publish_time"  # relay: epoch seconds (float string)
STAT_DEAD_LETTERED: Final = "dead_lettered"  # relay; also the prefix of the per-pattern fields
STAT_AUDIT_FAILURES: Final = "audit_failures"  # relay: audit writes (or WAL flushes) that failed
STAT_AUDIT_DEFERRED: Final = "audit_deferred"  # relay: rows moved to KEY_AUDIT_BACKLOG
STAT_AUDIT_BACKLOG_WRITTEN: Final = "audit_backlog_written"  # relay: deferred rows written later
STAT_RECOVERED: Final = "recovered"  # relay: records processed again after a crash or as stale
# Relay histograms: cumulative `<bucket prefix>:<le seconds>` counters (plus `:+Inf`) and a sum.
STAT_HISTOGRAM_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
STAT_LATENCY_BUCKET: Final = "latency_bucket"  # enqueue→publish per event (publish time - envelope timestamp)
STAT_LATENCY_SUM: Final = "latency_sum_s"
# boundary→publish per event: publish time - data.bar_received_at (when the detector had the bar's batch)
STAT_BOUNDARY_BUCKET: Final = "boundary_latency_bucket"
STAT_BOUNDARY_SUM: Final = "boundary_latency_sum_s"
STAT_BATCH_BUCKET: Final = "batch_bucket"  # take→finish per batch
STAT_BATCH_SUM: Final = "batch_sum_s"


def stat_field(prefix: str, label: object) -> str:
    """A per-label field of KEY_STATS: `<prefix>:<label>` (a pattern, a reason, a bucket bound)."""
    return f"{prefix}:{label}"
