"""TickStockAppV2's tick feed (`tickstock.data.raw`, contract §3.3) aggregated into 1-minute bars.

A tick is flat JSON: `ticker`, `price`, `volume`, `timestamp` (epoch seconds; milliseconds are
recognised by size), optionally `tick_open/high/low/close/volume` (the feed's own per-tick aggregate,
preferred when present). A minute's bar closes when a tick of a later minute arrives for that symbol,
or when the clock passes the minute's end plus a grace period; a minute with no ticks yields no bar
(as Massive's own minute aggregates do). The clock is the feed's: the newest tick time, advanced by
wall time while the feed is quiet, so a replayed feed with old timestamps aggregates the same way.

Every message is decoded by inbound.decode_tick first (size, JSON depth, ticker pattern, finite
price and volume, a timestamp within a year before and 5 minutes after the wall clock), so a
rejected tick never reaches the aggregator or moves its clock. Rejections are counted as
`tick_<reason>` (the detector reports them as `bars_rejected:tick_<reason>`) and logged, sampled.
Per-symbol state is bounded (TickAggregator). A sharded detector (sharding.py) hears every tick and
keeps only its own symbols' before aggregating; a tick without a readable ticker is shard 0's to count.
A lost subscription (Redis closes a subscriber that falls behind: docs/scaling.md) is counted in
`disconnects` and redone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from itertools import groupby
from typing import Any

import redis

from tickstockpl import contract, inbound
from tickstockpl.backoff import Backoff
from tickstockpl.bars import Bar
from tickstockpl.logs import SampledLog, escape
from tickstockpl.settings import Settings
from tickstockpl.sharding import Shard
from tickstockpl.stores import redis_client

log = logging.getLogger(__name__)

BAD_TICK = f"tick_{inbound.NOT_JSON}"  # not JSON (reasons: tick_<inbound reason>, see inbound.REASONS)
LATE_TICK = "tick_late"  # belongs to a minute whose bar is already closed
TOO_MANY_SYMBOLS = "tick_too_many_symbols"  # a new symbol while MAX_TRACKED_SYMBOLS are active
WHY = {
    LATE_TICK: "its minute's bar is already closed",
    TOO_MANY_SYMBOLS: f"a new symbol while {contract.MAX_TRACKED_SYMBOLS:,} are active (the limit)",
}
SWEEP_EVERY_S = 60.0  # how often (wall time) idle symbols are forgotten


class TickAggregator:
    """Ticks in, closed bars out; pure (no I/O), so it is tested without Redis.

    Per-symbol state is bounded: a symbol whose last bar closed more than `idle_s` ago (feed clock) is
    forgotten, and while `max_symbols` symbols are active a tick for a new one is rejected (counted),
    so a feed of ever-new tickers cannot grow the process."""

    def __init__(
        self,
        bar_seconds: int = 60,
        grace_s: float = 2.0,
        wall: Callable[[], float] = time.monotonic,
        *,
        max_symbols: int = contract.MAX_TRACKED_SYMBOLS,
        idle_s: float = contract.TICK_IDLE_S,
        clock: Callable[[], float] = time.time,
    ):
        self.bar_seconds = bar_seconds
        self.grace_s = grace_s
        self.max_symbols = max_symbols
        self.idle_s = idle_s
        self._wall = wall
        self._time = clock  # the real time, for the window a tick's timestamp must fall in
        self._open: dict[str, list[float]] = {}  # symbol -> [start, o, h, l, c, v]
        self._closed_until: dict[str, float] = {}  # symbol -> end of its last closed bar
        self._symbols: set[str] = set()  # every symbol in either of the two
        self._ready: list[Bar] = []
        self._clock: tuple[float, float] | None = None  # (newest tick time, wall time when seen)
        self._swept = wall()
        self.rejected: Counter[str] = Counter()
        self.evicted = 0
        self.last_reason = ""

    @property
    def tracked(self) -> int:
        """Symbols with state here (an open bar, or a recently closed one)."""
        return len(self._symbols)

    def now(self) -> float | None:
        """The feed's clock (None before the first tick)."""
        if self._clock is None:
            return None
        tick_time, seen = self._clock
        return tick_time + (self._wall() - seen)

    def add(self, message: Mapping[str, Any] | inbound.Tick) -> bool:
        """Take one tick (a checked Tick, or a parsed message to check); False (and counted) if unusable."""
        try:
            tick = (
                message
                if isinstance(message, inbound.Tick)
                else inbound.check_tick(dict(message), self._time())
            )
        except inbound.Rejected as exc:
            self.reject(exc)
            return False
        symbol, price, stamp = tick.ticker, tick.price, tick.timestamp
        start = float(int(stamp // self.bar_seconds) * self.bar_seconds)
        if start + self.bar_seconds <= self._closed_until.get(symbol, float("-inf")):
            return self._refuse(LATE_TICK)
        if symbol not in self._symbols:
            if not self._room():
                return self._refuse(TOO_MANY_SYMBOLS)
            self._symbols.add(symbol)
        if self._clock is None or stamp > self._clock[0]:
            self._clock = (stamp, self._wall())
        high, low = tick.high or price, tick.low or price
        current = self._open.get(symbol)
        if current is not None and current[0] < start:
            self._close(symbol)
            current = None
        if current is None:
            first = tick.open or price
            self._open[symbol] = [start, first, max(high, first), min(low, first), price, tick.volume]
        else:
            current[2] = max(current[2], high)
            current[3] = min(current[3], low)
            current[4] = price
            current[5] += tick.volume
        return True

    def reject(self, exc: inbound.Rejected) -> None:
        self._refuse(f"tick_{exc.reason}")

    def _refuse(self, reason: str) -> bool:
        self.rejected[reason] += 1
        self.last_reason = reason
        return False

    def _room(self) -> bool:
        """Whether one more symbol fits (forgetting idle ones first if needed)."""
        if self.tracked < self.max_symbols:
            return True
        self.sweep(force=True)
        return self.tracked < self.max_symbols

    def sweep(self, force: bool = False) -> int:
        """Forget symbols idle for `idle_s` (at most every SWEEP_EVERY_S unless forced); how many."""
        now = self.now()
        if now is None or self._wall() - self._swept < (1.0 if force else SWEEP_EVERY_S):
            return 0  # forced (a new symbol at the cap): still at most once a second
        self._swept = self._wall()
        horizon = now - self.idle_s
        idle = [s for s, until in self._closed_until.items() if until < horizon and s not in self._open]
        for symbol in idle:
            del self._closed_until[symbol]
            self._symbols.discard(symbol)
        self.evicted += len(idle)
        return len(idle)

    def flush(self) -> list[Bar]:
        """Bars closed so far: by a later tick, or by the clock passing their end plus the grace."""
        now = self.now()
        if now is not None:
            for symbol in [s for s, b in self._open.items() if b[0] + self.bar_seconds + self.grace_s <= now]:
                self._close(symbol)
            self.sweep()
        ready, self._ready = self._ready, []
        return sorted(ready, key=lambda bar: (bar.start, bar.symbol))

    def _close(self, symbol: str) -> None:
        start, o, h, low, c, v = self._open.pop(symbol)
        self._closed_until[symbol] = start + self.bar_seconds
        self._ready.append(Bar(symbol, self.bar_seconds, int(start), o, h, low, c, v))


class TickFeedSource:
    """Subscribes to the consumer's tick channel and yields 1-minute bars as they close."""

    def __init__(
        self,
        settings: Settings,
        poll_s: float = 0.5,
        client: redis.Redis | None = None,
        *,
        shard: Shard | None = None,
    ) -> None:
        self.shard = shard or Shard()  # every shard hears every tick and keeps its own symbols'
        self._own_client = client is None  # close() closes only a client this source opened
        self.client = client or redis_client(settings)
        self.aggregator = TickAggregator(bar_seconds=60)
        self._sampled = SampledLog(log)
        self._rejects_reported: Counter[str] = Counter()
        self.rejected = self.aggregator.rejected
        self.poll_s = poll_s
        self.subscribed = threading.Event()  # set once SUBSCRIBE is confirmed (tests wait on it)
        # Subscriptions lost: Redis closes a subscriber whose output buffer passes
        # client-output-buffer-limit pubsub (docs/scaling.md), or the connection broke.
        self.disconnects = 0
        self._pubsub: Any = None
        self._backoff = Backoff("Redis (tick feed)", cap_s=10.0)

    @property
    def tracked_symbols(self) -> int:
        """Symbols the aggregator holds state for (a gauge for the stats hash)."""
        return self.aggregator.tracked

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        reported = self.disconnects
        while not stop.is_set():
            try:
                self._read(stop)
            except redis.RedisError as exc:
                if self.subscribed.is_set():  # a subscription lost: what it was sent meanwhile is gone
                    self.disconnects += 1
                    log.warning("tick feed subscription lost (%s): ticks sent until it is back are lost", exc)
                self._drop_pubsub()
                stop.wait(self._backoff.failed(exc))
                continue
            bars = self.aggregator.flush()
            for _, group in groupby(bars, key=lambda bar: bar.start):
                yield list(group)
            if not bars and (self.rejected != self._rejects_reported or self.disconnects != reported):
                yield []  # no bar, but rejected ticks or a lost subscription: let the detector count them
            self._rejects_reported = Counter(self.rejected)
            reported = self.disconnects

    def _read(self, stop: threading.Event) -> None:
        """Take the ticks that arrive within one poll interval."""
        if self._pubsub is None:
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=False)
            self._pubsub.subscribe(contract.CHANNEL_RAW_TICKS)
        deadline = time.monotonic() + self.poll_s
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=left)
            if message is None:
                continue
            if message["type"] == "subscribe":
                self.subscribed.set()
                self._backoff.succeeded()
                log.info("subscribed to %s", contract.CHANNEL_RAW_TICKS)
            elif message["type"] == "message":
                self._take(message["data"])

    def _take(self, raw: bytes | str) -> None:
        try:
            message = inbound.load_object(raw, contract.MAX_TICK_BYTES)
        except inbound.Rejected as exc:
            if self.shard.counts_unowned:  # unreadable: no shard owns it, shard 0 counts it
                self._reject(exc)
            return
        if not self._mine(message.get("ticker")):
            return
        try:
            tick = inbound.check_tick(message)
        except inbound.Rejected as exc:
            self._reject(exc)
            return
        if not self.aggregator.add(tick):
            reason = self.aggregator.last_reason
            self._sampled.warning(
                reason,
                "tick for %s at %.0f rejected: %s",
                escape(tick.ticker),
                tick.timestamp,
                WHY.get(reason, reason),
            )

    def _mine(self, ticker: object) -> bool:
        """A tick of this shard's symbols; one without a readable ticker is shard 0's, to count."""
        if not self.shard.sharded:
            return True
        if isinstance(ticker, str) and inbound.TICKER.fullmatch(ticker):
            return self.shard.owns(ticker)
        return self.shard.counts_unowned

    def _reject(self, exc: inbound.Rejected) -> None:
        self.aggregator.reject(exc)
        self._sampled.warning(exc.reason, "tick rejected (%s): %s", exc.reason, exc)

    def _drop_pubsub(self) -> None:
        self.subscribed.clear()
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except redis.RedisError:
                pass
            self._pubsub = None

    def close(self) -> None:
        self._drop_pubsub()
        if self._own_client:
            self.client.close()
