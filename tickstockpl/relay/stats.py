"""The relay's counters and histograms in KEY_STATS, bumped in each batch's atomic finish.

The exporter reads them at scrape time. Field names are the contract's (contract.STAT_*); histograms
are cumulative `<prefix>:<le seconds>` counters (Prometheus style) plus `<prefix>:+Inf` and a sum.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence

from tickstockpl import contract
from tickstockpl.contract import STAT_HISTOGRAM_BUCKETS_S, stat_field
from tickstockpl.publisher import Outgoing
from tickstockpl.relay.lists import Finish

_BUCKET_FIELDS = {
    prefix: tuple(stat_field(prefix, le) for le in STAT_HISTOGRAM_BUCKETS_S)
    for prefix in (contract.STAT_LATENCY_BUCKET, contract.STAT_BOUNDARY_BUCKET, contract.STAT_BATCH_BUCKET)
}


def count_published(
    done: Finish,
    items: Sequence[Outgoing],
    subscribers: Sequence[int],
    published_at: float,
    written: set[str],
) -> None:
    """Count a published batch: totals, zero-subscriber publishes, per pattern, and the latencies.

    Two latencies per event: enqueue→publish (the envelope timestamp, set when the detector built
    the event) and boundary→publish (`data.bar_received_at`, when the detector had the bar's batch),
    the second only for events that carry the stamp (the detector's do; publish-test's do not).
    """
    if not items:
        return
    done.count(contract.STAT_PATTERNS_PUBLISHED, len(items))
    done.count(contract.STAT_PUBLISHED_ZERO_SUBSCRIBERS, sum(1 for count in subscribers if count == 0))
    for pattern, count in Counter(str(item.event["data"]["pattern"]) for item in items).items():
        done.count(stat_field(contract.STAT_PUBLISHED_BY, pattern), count)
    latencies = [max(0.0, published_at - float(item.event["timestamp"])) for item in items]
    observe(done, contract.STAT_LATENCY_BUCKET, contract.STAT_LATENCY_SUM, latencies, written)
    boundary = [
        max(0.0, published_at - stamp)
        for item in items
        if type(stamp := item.event["data"].get(contract.DATA_BAR_RECEIVED_AT)) in (float, int)
    ]
    if boundary:
        observe(done, contract.STAT_BOUNDARY_BUCKET, contract.STAT_BOUNDARY_SUM, boundary, written)
    done.values[contract.STAT_LAST_PUBLISH_TIME] = repr(published_at)


def observe(done: Finish, prefix: str, sum_field: str, samples: Sequence[float], written: set[str]) -> None:
    """Add samples (seconds) to a cumulative histogram in KEY_STATS.

    One HINCRBY per bucket that changed: a bucket below the smallest sample gets nothing once this
    relay has written it (the first batch writes every bucket, so readers see each one from then on).
    `written` is the relay's set of buckets written so far.
    """
    ordered = sorted(samples)
    smallest = ordered[0] if ordered else None
    for le, name in zip(STAT_HISTOGRAM_BUCKETS_S, _BUCKET_FIELDS[prefix], strict=True):
        if smallest is not None and smallest <= le:
            done.count(name, bisect.bisect_right(ordered, le))
        elif name in written:
            continue
        else:
            done.count(name, 0)
        written.add(name)
    done.count(stat_field(prefix, "+Inf"), len(ordered))
    done.floats[sum_field] = done.floats.get(sum_field, 0.0) + sum(ordered)
