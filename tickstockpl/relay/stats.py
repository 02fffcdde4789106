"""The relay's counters and histograms in KEY_STATS, bumped in each batch's atomic finish.

The exporter reads them at scrape time. Histograms are cumulative `<prefix>:<le seconds>` counters
(Prometheus style) plus `<prefix>:+Inf` and a sum: `latency_bucket` is enqueue→publish per event
(publish time minus the envelope timestamp); `batch_bucket` is take→finish per batch.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

from tickstockpl.publisher import Outgoing
from tickstockpl.relay.lists import Finish

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_FIELDS = {
    prefix: tuple(f"{prefix}:{le}" for le in LATENCY_BUCKETS_S)
    for prefix in ("latency_bucket", "batch_bucket")
}


def count_published(
    done: Finish,
    items: Sequence[Outgoing],
    subscribers: Sequence[int],
    published_at: float,
    written: set[str],
) -> None:
    """Count a published batch: totals, zero-subscriber publishes, per pattern, and the latencies."""
    if not items:
        return
    done.count("patterns_published", len(items))
    done.count("published_zero_subscribers", sum(1 for count in subscribers if count == 0))
    for pattern, count in Counter(str(item.event["data"]["pattern"]) for item in items).items():
        done.count(f"published:{pattern}", count)
    latencies = [max(0.0, published_at - float(item.event["timestamp"])) for item in items]
    observe(done, "latency_bucket", "latency_sum_s", latencies, written)
    done.values["last_publish_time"] = repr(published_at)


def observe(done: Finish, prefix: str, sum_field: str, samples: Sequence[float], written: set[str]) -> None:
    """Add samples (seconds) to a cumulative histogram in KEY_STATS.

    One HINCRBY per bucket that changed: a bucket below the smallest sample gets nothing once this
    relay has written it (the first batch writes every bucket, so readers see each one from then on).
    `written` is the relay's set of buckets written so far.
    """
    ordered = sorted(samples)
    smallest = ordered[0] if ordered else None
    for le, name in zip(LATENCY_BUCKETS_S, _BUCKET_FIELDS[prefix], strict=True):
        if smallest is not None and smallest <= le:
            done.count(name, bisect.bisect_right(ordered, le))
        elif name in written:
            continue
        else:
            done.count(name, 0)
        written.add(name)
    done.count(f"{prefix}:+Inf", len(ordered))
    done.floats[sum_field] = done.floats.get(sum_field, 0.0) + sum(ordered)
