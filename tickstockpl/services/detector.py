"""The detector process: a market-data source through the pattern engine into the outbox.

Detection never waits on Redis. Events go into a bounded in-memory buffer that a flusher thread
hands to `outbox.enqueue`; when Redis is down the flusher backs off (capped, jittered, logged once
per state change) and the buffer keeps the newest `buffer_max` events, counting any it had to drop.
Counters for other processes (exporter, heartbeat) go to the stats hash in the same flush:
`bars_received`, `bars_rejected`, `bars_rejected:<reason>`, `detected:<pattern>` (every signal),
`signals_below_min_confidence` (detected, not published: TICKSTOCKPL_MIN_CONFIDENCE), `last_bar_time`,
`series_evicted` (series the engine forgot to stay within its cap), `tick_feed_disconnects`, and per
shard (HSET, not HINCRBY; `<name>:<shard index>`) `shard_last_bar_time`, the gauge `series_tracked`
(the engine's series) and, for the tick feed, `tick_symbols_tracked`. Every shard (sharding.py; one
detector process each) adds to the same counters: their sums are the market's.

SIGTERM: finish the batch in flight, flush what can be flushed within `drain_timeout_s`, exit 0;
a second SIGTERM exits at once (tickstockpl.lifecycle).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter, deque
from typing import Any

import redis

from tickstockpl import contract, outbox
from tickstockpl.backoff import Backoff
from tickstockpl.contract import ContractError
from tickstockpl.errors import RedisConfigError, RedisUnavailable, TickStockPLError
from tickstockpl.exitcodes import RET_CONFIG, RET_OK
from tickstockpl.lifecycle import install_stop_handlers, service_main
from tickstockpl.patterns import EventBuilder, StreamingEngine, publishable
from tickstockpl.patterns.sessions import SessionCalendar
from tickstockpl.patterns.timeframes import TimeframeEngine, engine_for
from tickstockpl.settings import Settings
from tickstockpl.sources import BarSource, build_source
from tickstockpl.stores import check_access, redis_client

log = logging.getLogger("tickstockpl.detector")

BUFFER_MAX = 100_000  # events held while Redis is away (~1 KB each: ~100 MB at worst)
# Events per LPUSH: a whole minute boundary's burst (thousands at minimum confidence 0) in one round
# trip, so the relay's first take finds all of it rather than the first slice (docs/latency.md).
FLUSH_BATCH = 10_000
# Stats field: signals detected (and counted under detected:<pattern>) but below TICKSTOCKPL_MIN_CONFIDENCE.
STAT_BELOW_MIN_CONFIDENCE = contract.STAT_SIGNALS_BELOW_MIN_CONFIDENCE
DRAIN_TIMEOUT_S = 10.0  # how long a stopping detector keeps trying to hand over what it holds


class EventBuffer:
    """Events and counter deltas waiting for Redis, flushed by one background thread."""

    def __init__(self, client: redis.Redis, buffer_max: int = BUFFER_MAX, shard_index: int = 0) -> None:
        self.client = client
        self.last_bar_fields = (
            contract.STAT_LAST_BAR_TIME,
            contract.stat_field(contract.STAT_SHARD_LAST_BAR_TIME, shard_index),
        )
        self.events: deque[dict[str, Any]] = deque()
        self.buffer_max = buffer_max
        self.stats: Counter[str] = Counter()
        self.last_bar_time: float | None = None
        self.gauges: dict[str, int] = {}  # written with HSET: levels, not counts
        self.dropped = 0
        self.enqueued = 0
        self.backoff = Backoff("Redis (detector outbox)", cap_s=10.0)
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._loop, name="detector-flusher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(
        self,
        events: list[dict[str, Any]],
        stats: Counter[str],
        last_bar_time: float | None,
        gauges: dict[str, int] | None = None,
    ) -> None:
        with self._cond:
            self.gauges.update(gauges or {})
            self.events.extend(events)
            overflow = len(self.events) - self.buffer_max
            if overflow > 0:  # keep the newest: a stale pattern is worth less than a fresh one
                if not self.dropped:
                    log.error("outbox buffer full (%d events): dropping the oldest", self.buffer_max)
                for _ in range(overflow):
                    self.events.popleft()
                self.dropped += overflow
                self.stats["detector_events_dropped"] += overflow
            self.stats.update(stats)
            if last_bar_time is not None:
                self.last_bar_time = last_bar_time
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self.events)

    def close(self, timeout_s: float) -> int:
        """Stop the flusher after at most `timeout_s` of trying; return the events it could not hand over."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + timeout_s
            self._cond.notify()
        self._thread.join(timeout_s + 6.0)  # one Redis call may take its socket timeout
        return self.pending

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self.events and not self.stats and not self._closing:
                    self._cond.wait()
                if self._closing and (self._idle() or time.monotonic() >= self._deadline):
                    return
                batch = [self.events[i] for i in range(min(FLUSH_BATCH, len(self.events)))]
                stats, last_bar, gauges = Counter(self.stats), self.last_bar_time, dict(self.gauges)
            delay = self._flush(batch, stats, last_bar, gauges)
            if delay:
                with self._cond:
                    wait = min(delay, max(0.0, self._deadline - time.monotonic()))
                    self._cond.wait(wait)

    def _idle(self) -> bool:
        return not self.events and not self.stats

    def _flush(
        self,
        batch: list[dict[str, Any]],
        stats: Counter[str],
        last_bar: float | None,
        gauges: dict[str, int] | None = None,
    ) -> float:
        """One attempt; 0 on success, else the backoff delay."""
        try:
            if batch:
                try:
                    outbox.enqueue(self.client, batch)
                except ContractError as exc:  # never expected: events are built by the contract
                    log.error("dropping %d events the contract refuses: %s", len(batch), exc)
                self._forget_events(batch)
            if stats or last_bar is not None or gauges:
                self._write_stats(stats, last_bar, gauges or {})
        except TickStockPLError as exc:
            return self.backoff.failed(exc)
        except redis.RedisError as exc:
            return self.backoff.failed(exc)
        self.backoff.succeeded()
        return 0.0

    def _forget_events(self, batch: list[dict[str, Any]]) -> None:
        """Drop the handed-over events (by identity: an overflow may have dropped some meanwhile)."""
        sent = {id(event) for event in batch}
        with self._cond:
            while self.events and id(self.events[0]) in sent:
                self.events.popleft()
            self.enqueued += len(batch)

    def _write_stats(self, stats: Counter[str], last_bar: float | None, gauges: dict[str, int]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for name, value in stats.items():
            pipe.hincrby(contract.KEY_STATS, name, value)
        if last_bar is not None:
            pipe.hset(contract.KEY_STATS, mapping=dict.fromkeys(self.last_bar_fields, repr(last_bar)))
        if gauges:
            pipe.hset(contract.KEY_STATS, mapping={name: str(value) for name, value in gauges.items()})
        pipe.execute()
        with self._cond:
            for name, level in gauges.items():
                if self.gauges.get(name) == level:
                    del self.gauges[name]
            self.stats.subtract(stats)
            self.stats = +self.stats  # drop zero entries
            if self.last_bar_time == last_bar:
                self.last_bar_time = None


class Detector:
    """One detector run: `run()` loops over the source's batches until it ends, stops or hits a limit."""

    def __init__(
        self,
        settings: Settings,
        *,
        source: BarSource | None = None,
        client: redis.Redis | None = None,
        engine: StreamingEngine | TimeframeEngine | None = None,
        buffer_max: int = BUFFER_MAX,
    ) -> None:
        self.settings = settings
        self.source = source or build_source(settings)
        calendar = SessionCalendar(settings.session_calendar)  # timeframes, and every event's expires_at
        self.engine = engine or engine_for(
            settings.timeframes,
            settings.combo_timeframes,
            calendar,
            rs_bars=settings.rs_bars,
            rs_benchmark=settings.rs_benchmark,
        )
        self.events = EventBuilder(calendar)
        self.min_confidence = settings.min_confidence
        self.shard = settings.shard
        self.buffer = EventBuffer(client or redis_client(settings), buffer_max, self.shard.index)
        self.bars = 0
        self.signals = 0
        self._source_rejects_seen: Counter[str] = Counter()
        self._evicted_seen = 0
        self._disconnects_seen = 0

    def step(self, batch: list[Any]) -> int:
        """Judge one batch of closed bars and buffer its events; return how many signals.

        The events carry the time the batch reached us (`data.bar_received_at`): the relay's
        boundary -> publish histogram starts there (docs/latency.md)."""
        received_at = time.time()
        before_accepted, before_rejected = self.engine.accepted, Counter(self.engine.rejected)
        signals = self.engine.process(batch)
        published = publishable(signals, self.min_confidence)
        events = self.events.build(published, received_at=received_at)
        stats: Counter[str] = Counter()
        new_rejects = (self.engine.rejected - before_rejected) + (
            self.source.rejected - self._source_rejects_seen
        )
        self._source_rejects_seen = Counter(self.source.rejected)
        accepted = self.engine.accepted - before_accepted
        stats[contract.STAT_BARS_RECEIVED] = accepted + sum(new_rejects.values())
        for reason, count in new_rejects.items():
            stats[contract.STAT_BARS_REJECTED] += count
            stats[contract.stat_field(contract.STAT_BARS_REJECTED, reason)] += count
        for signal in signals:
            stats[contract.stat_field(contract.STAT_DETECTED_BY, signal.pattern)] += 1
        stats[STAT_BELOW_MIN_CONFIDENCE] = len(signals) - len(published)
        stats[contract.STAT_SERIES_EVICTED] = self.engine.evicted - self._evicted_seen
        self._evicted_seen = self.engine.evicted
        disconnects = int(getattr(self.source, "disconnects", 0))  # the tick feed's lost subscriptions
        stats[contract.STAT_TICK_FEED_DISCONNECTS] = disconnects - self._disconnects_seen
        self._disconnects_seen = disconnects
        shard = self.shard.index
        gauges = {contract.stat_field(contract.STAT_SERIES_TRACKED, shard): self.engine.series}
        tracked = getattr(self.source, "tracked_symbols", None)  # the tick feed's per-symbol state
        if tracked is not None:
            gauges[contract.stat_field(contract.STAT_TICK_SYMBOLS_TRACKED, shard)] = int(tracked)
        self.buffer.put(events, +stats, time.time() if accepted else None, gauges)
        self.bars += len(batch)
        self.signals += len(signals)
        return len(signals)

    def _warm(self, stop: threading.Event) -> None:
        """Let the engine learn from the source's history, if both have one (nothing is published)."""
        history, warm = getattr(self.source, "history", None), getattr(self.engine, "warm", None)
        if history is not None and warm is not None:
            started = time.monotonic()
            bars = warm(history(stop))
            if bars:
                log.info("learned from %d bars of history in %.1f s", bars, time.monotonic() - started)

    def run(
        self,
        stop: threading.Event,
        *,
        max_bars: int | None = None,
        burst: bool = False,
        drain_timeout_s: float,
    ) -> str:
        """Loop until the source ends, `stop` is set, `max_bars` bars are in, or one batch (`burst`)."""
        self.buffer.start()
        reason = "the source has no more bars"
        try:
            self._warm(stop)
            for batch in self.source.batches(stop):
                self.step(batch)
                if burst:
                    reason = "burst done: one batch"
                    break
                if max_bars is not None and self.bars >= max_bars:
                    reason = f"max_bars reached ({self.bars} bars)"
                    break
                if stop.is_set():
                    break
            if stop.is_set():
                reason = "stopping on request"
        finally:
            self.source.close()
            left = self.buffer.close(drain_timeout_s)
            if left:
                log.error("%d events could not be handed to Redis before exit and are lost", left)
        return reason


def run(
    settings: Settings,
    stop: threading.Event | None = None,
    *,
    max_bars: int | None = None,
    burst: bool = False,
    source: BarSource | None = None,
    client: redis.Redis | None = None,
    drain_timeout_s: float = DRAIN_TIMEOUT_S,
) -> int:
    """Run the detector; returns an exit code. SIGTERM handling is installed when `stop` is not given."""
    if stop is None:
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            install_stop_handlers(stop, "detector")
    own_client = client is None  # ours to close: callers close the clients they pass in
    try:
        detector = Detector(settings, source=source, client=client)
    except (OSError, ValueError) as exc:
        log.error("cannot open the %s source: %s", settings.source, exc)
        return RET_CONFIG
    try:
        return _run(detector, settings, stop, max_bars=max_bars, burst=burst, drain_timeout_s=drain_timeout_s)
    finally:
        if own_client:
            detector.buffer.client.close()


def _run(
    detector: Detector,
    settings: Settings,
    stop: threading.Event,
    *,
    max_bars: int | None,
    burst: bool,
    drain_timeout_s: float,
) -> int:
    try:
        check_access(detector.buffer.client, "checking Redis at start")  # password and ACL
    except RedisConfigError as exc:  # a wrong password or ACL: restarting will not help
        log.error("detector cannot use Redis at %s: %s", settings.redis_target, exc)
        detector.source.close()
        return RET_CONFIG
    except RedisUnavailable:
        pass  # down for now: the flusher buffers the events and backs off until Redis answers
    log.info(
        "detector starting: source=%s (%s), %d patterns, publishing confidence >= %.2f, redis %s",
        settings.source,
        detector.shard,
        len(detector.engine.pset.names),
        settings.min_confidence,
        settings.redis_target,
    )
    started = time.monotonic()
    reason = detector.run(stop, max_bars=max_bars, burst=burst, drain_timeout_s=drain_timeout_s)
    log.info(
        "detector stopped: %s; %d bars, %d signals, %d events enqueued, %d rejected %s in %.1f s",
        reason,
        detector.bars,
        detector.signals,
        detector.buffer.enqueued,
        sum(detector.engine.rejected.values()) + sum(detector.source.rejected.values()),
        dict(detector.engine.rejected + detector.source.rejected),
        time.monotonic() - started,
    )
    if isinstance(detector.engine, TimeframeEngine):
        periods = detector.engine.aggregator
        log.info(
            "timeframes: %d periods not judged, partly before the feed began or still open at its end",
            periods.partial + periods.open_periods,
        )
    return RET_OK


def main() -> int:
    return service_main("detector", run)


if __name__ == "__main__":
    sys.exit(main())
