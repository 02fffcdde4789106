"""What the producer's Redis holds about the stack: heartbeat, stats hash, queue depths, subscribers.

Readers take an open client and wrap driver errors into ours (redis_errors), so callers see
RedisUnavailable or RedisConfigError, never a driver exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from tickstockpl import contract
from tickstockpl.settings import Settings
from tickstockpl.stores import redis_client, redis_errors

# A heartbeat further in the future than this is not epoch seconds (milliseconds, or a broken clock).
HEARTBEAT_FUTURE_SKEW_S: Final = 300.0


def checking_client(settings: Settings, *, timeout_s: float = 3.0) -> redis.Redis:
    """A client with a health check's shorter timeout (it fails at once, as every client of ours does)."""
    return redis_client(settings, timeout_s=timeout_s)


def ping_redis(client: redis.Redis) -> float:
    """PING; returns the round trip in milliseconds."""
    started = time.perf_counter()
    with redis_errors("PING"):
        client.ping()
    return (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class HeartbeatReading:
    """The heartbeat key as the consumer reads it: `float(value)` epoch seconds (§5.1)."""

    raw: str | None  # the stored text, None when the key is absent
    timestamp: float | None
    age_s: float | None
    ttl_s: int | None  # seconds left before the key expires; None when absent or without TTL
    alias_raw: str | None  # tickstockpl:heartbeat, which should hold the same value
    error: str | None  # why the value is unusable; None when it parses as recent epoch seconds

    def problem(self, max_age_s: float = contract.HEARTBEAT_MAX_AGE_S) -> str | None:
        """Why the consumer would call the producer offline, or None when it is fresh."""
        if self.error is not None:
            return self.error
        assert self.age_s is not None
        if self.age_s > max_age_s:
            return f"stale: {self.age_s:.1f} s old (limit {max_age_s:g} s)"
        return None

    def fresh(self, max_age_s: float = contract.HEARTBEAT_MAX_AGE_S) -> bool:
        return self.problem(max_age_s) is None


def parse_heartbeat(raw: str | None, now: float) -> tuple[float | None, str | None]:
    """(epoch seconds, None) for a usable value, else (value or None, why it is unusable)."""
    if raw is None:
        return None, "absent"
    try:
        value = float(raw)
    except ValueError:
        return None, f"not a float of epoch seconds: {raw[:40]!r}"
    if not math.isfinite(value) or value <= 0:
        return None, f"not a float of epoch seconds: {raw[:40]!r}"
    if value > now + HEARTBEAT_FUTURE_SKEW_S:
        unit = " (milliseconds, not seconds?)" if value > now * 100 else ""
        return value, f"{value - now:.0f} s in the future{unit}"
    return value, None


def as_text(value: Any) -> str | None:
    """A Redis reply (bytes or text) as text; None stays None."""
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_heartbeat(client: redis.Redis, now: float | None = None) -> HeartbeatReading:
    """Read both heartbeat keys and the TTL in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.get(contract.KEY_HEARTBEAT)
    pipe.ttl(contract.KEY_HEARTBEAT)
    pipe.get(contract.KEY_HEARTBEAT_ALIAS)
    with redis_errors("reading the heartbeat"):
        value, ttl, alias = pipe.execute()
    now = time.time() if now is None else now
    raw = as_text(value)
    timestamp, error = parse_heartbeat(raw, now)
    age = max(0.0, now - timestamp) if timestamp is not None and error is None else None
    return HeartbeatReading(
        raw=raw,
        timestamp=timestamp,
        age_s=age,
        ttl_s=int(ttl) if raw is not None and int(ttl) >= 0 else None,
        alias_raw=as_text(alias),
        error=error,
    )


def _float_field(fields: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(fields[name])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class StackStats:
    """The stack-wide figures in KEY_STATS, written by every process (not one process's counters)."""

    patterns_detected: int
    last_pattern_time: float | None
    last_bar_time: float | None
    started_at: float | None  # set by the heartbeat when a stack run begins
    stopped_at: float | None  # set by the heartbeat when it stops cleanly
    fields: Mapping[str, str] = field(default_factory=dict)  # every field, for the exporter
    shard_bar_times: Mapping[int, float] = field(default_factory=dict)  # detector shard -> its last bar

    @property
    def running(self) -> bool:
        """A stack run has begun and the heartbeat has not stopped cleanly since."""
        if self.started_at is None:
            return False
        return self.stopped_at is None or self.stopped_at < self.started_at

    def uptime_s(self, now: float) -> float | None:
        return None if self.started_at is None else max(0.0, now - self.started_at)

    def detector_lag_s(self, now: float) -> float | None:
        """Seconds since the detector last showed progress: the newer of its last bar and last pattern."""
        seen = [t for t in (self.last_bar_time, self.last_pattern_time) if t is not None]
        return max(0.0, now - max(seen)) if seen else None


def parse_stats(raw: Mapping[Any, Any]) -> StackStats:
    """StackStats from an HGETALL reply (bytes or text); unparseable fields read as absent."""
    fields = {as_text(key) or "": as_text(value) or "" for key, value in raw.items()}
    try:
        detected = int(fields.get(contract.STAT_PATTERNS_DETECTED, "0"))
    except ValueError:
        detected = 0
    return StackStats(
        patterns_detected=detected,
        last_pattern_time=_float_field(fields, contract.STAT_LAST_PATTERN_TIME),
        last_bar_time=_float_field(fields, contract.STAT_LAST_BAR_TIME),
        started_at=_float_field(fields, contract.STAT_STARTED_AT),
        stopped_at=_float_field(fields, contract.STAT_STOPPED_AT),
        fields=fields,
        shard_bar_times=_shard_bar_times(fields),
    )


def _shard_bar_times(fields: Mapping[str, str]) -> dict[int, float]:
    """`shard_last_bar_time:<shard>` fields, by shard."""
    times = {}
    for name in fields:
        prefix, _, shard = name.partition(":")
        if prefix == contract.STAT_SHARD_LAST_BAR_TIME and shard.isdigit():
            value = _float_field(fields, name)
            if value is not None:
                times[int(shard)] = value
    return times


def read_stats(client: redis.Redis) -> StackStats:
    with redis_errors("reading the stats hash"):
        raw = client.hgetall(contract.KEY_STATS)
    return parse_stats(raw)


@dataclass(frozen=True)
class QueueDepths:
    """How much work waits in the producer's own Redis structures."""

    outbox: int  # detected, not yet taken by the relay
    processing: int  # taken by the relay, not yet acknowledged
    dead_letters: int  # poison records set aside with their reason
    audit_backlog: int  # published, audit row still to write (Postgres was down)


_SIZE_BY_TYPE = {"list": "LLEN", "stream": "XLEN", "hash": "HLEN", "set": "SCARD", "zset": "ZCARD"}


def queue_depths(client: redis.Redis) -> QueueDepths:
    """Sizes of the outbox, processing list, dead letters and audit backlog, whatever type each is."""
    keys = (
        contract.KEY_OUTBOX,
        contract.KEY_PROCESSING,
        contract.KEY_DEAD_LETTERS,
        contract.KEY_AUDIT_BACKLOG,
    )
    with redis_errors("reading queue depths"):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        types = [as_text(kind) or "none" for kind in pipe.execute()]
        pipe = client.pipeline(transaction=False)
        sized = [(key, kind) for key, kind in zip(keys, types, strict=True) if kind in _SIZE_BY_TYPE]
        for key, kind in sized:
            pipe.execute_command(_SIZE_BY_TYPE[kind], key)
        sizes = dict(zip([key for key, _ in sized], pipe.execute() if sized else [], strict=True))
    depth = [int(sizes.get(key, 0)) for key in keys]
    return QueueDepths(*depth)


def subscriber_counts(
    client: redis.Redis, channels: Sequence[str] = contract.PRODUCER_CHANNELS
) -> dict[str, int]:
    """PUBSUB NUMSUB for each channel: is TickStockAppV2 (or anyone) listening?"""
    with redis_errors("PUBSUB NUMSUB"):
        replies = client.pubsub_numsub(*channels)
    return {(as_text(name) or ""): int(count) for name, count in replies}
