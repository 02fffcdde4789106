"""TickStockAppV2's tick feed (`tickstock.data.raw`, contract §3.3) aggregated into 1-minute bars.

A tick is flat JSON: `ticker`, `price`, `volume`, `timestamp` (epoch seconds; milliseconds are
recognised by size), optionally `tick_open/high/low/close/volume` (the feed's own per-tick aggregate,
preferred when present). A minute's bar closes when a tick of a later minute arrives for that symbol,
or when the clock passes the minute's end plus a grace period; a minute with no ticks yields no bar
(as Massive's own minute aggregates do). The clock is the feed's: the newest tick time, advanced by
wall time while the feed is quiet, so a replayed feed with old timestamps aggregates the same way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from itertools import groupby
from typing import Any

import redis

from tickstockpl import contract
from tickstockpl.backoff import Backoff
from tickstockpl.bars import Bar
from tickstockpl.settings import Settings
from tickstockpl.stores import redis_client

log = logging.getLogger(__name__)

BAD_TICK = "tick_unreadable"  # not JSON, or no ticker / price / timestamp
LATE_TICK = "tick_late"  # belongs to a minute whose bar is already closed


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


class TickAggregator:
    """Ticks in, closed bars out; pure (no I/O), so it is tested without Redis."""

    def __init__(
        self, bar_seconds: int = 60, grace_s: float = 2.0, wall: Callable[[], float] = time.monotonic
    ):
        self.bar_seconds = bar_seconds
        self.grace_s = grace_s
        self._wall = wall
        self._open: dict[str, list[float]] = {}  # symbol -> [start, o, h, l, c, v]
        self._closed_until: dict[str, float] = {}  # symbol -> end of its last closed bar
        self._ready: list[Bar] = []
        self._clock: tuple[float, float] | None = None  # (newest tick time, wall time when seen)
        self.rejected: Counter[str] = Counter()

    def now(self) -> float | None:
        """The feed's clock (None before the first tick)."""
        if self._clock is None:
            return None
        tick_time, seen = self._clock
        return tick_time + (self._wall() - seen)

    def add(self, tick: Mapping[str, Any]) -> bool:
        """Take one tick; False (and counted) if it cannot be used."""
        symbol, price, stamp = tick.get("ticker"), _num(tick.get("price")), _num(tick.get("timestamp"))
        if not isinstance(symbol, str) or not symbol.strip() or price is None or stamp is None:
            self.rejected[BAD_TICK] += 1
            return False
        symbol = symbol.strip()
        stamp = stamp / 1000.0 if stamp > 1e11 else stamp  # milliseconds
        start = float(int(stamp // self.bar_seconds) * self.bar_seconds)
        if start + self.bar_seconds <= self._closed_until.get(symbol, float("-inf")):
            self.rejected[LATE_TICK] += 1
            return False
        if self._clock is None or stamp > self._clock[0]:
            self._clock = (stamp, self._wall())
        high = _num(tick.get("tick_high")) or price
        low = _num(tick.get("tick_low")) or price
        volume = _num(tick.get("tick_volume"))
        volume = volume if volume is not None else (_num(tick.get("volume")) or 0.0)
        current = self._open.get(symbol)
        if current is not None and current[0] < start:
            self._close(symbol)
            current = None
        if current is None:
            first = _num(tick.get("tick_open")) or price
            self._open[symbol] = [start, first, max(high, first), min(low, first), price, volume]
        else:
            current[2] = max(current[2], high)
            current[3] = min(current[3], low)
            current[4] = price
            current[5] += volume
        return True

    def flush(self) -> list[Bar]:
        """Bars closed so far: by a later tick, or by the clock passing their end plus the grace."""
        now = self.now()
        if now is not None:
            for symbol in [s for s, b in self._open.items() if b[0] + self.bar_seconds + self.grace_s <= now]:
                self._close(symbol)
        ready, self._ready = self._ready, []
        return sorted(ready, key=lambda bar: (bar.start, bar.symbol))

    def _close(self, symbol: str) -> None:
        start, o, h, low, c, v = self._open.pop(symbol)
        self._closed_until[symbol] = start + self.bar_seconds
        self._ready.append(Bar(symbol, self.bar_seconds, int(start), o, h, low, c, v))


class TickFeedSource:
    """Subscribes to the consumer's tick channel and yields 1-minute bars as they close."""

    def __init__(self, settings: Settings, poll_s: float = 0.5, client: redis.Redis | None = None) -> None:
        self._own_client = client is None  # close() closes only a client this source opened
        self.client = client or redis_client(settings)
        self.aggregator = TickAggregator(bar_seconds=60)
        self.rejected = self.aggregator.rejected
        self.poll_s = poll_s
        self.subscribed = threading.Event()  # set once SUBSCRIBE is confirmed (tests wait on it)
        self._pubsub: Any = None
        self._backoff = Backoff("Redis (tick feed)", cap_s=10.0)

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        while not stop.is_set():
            try:
                self._read(stop)
            except redis.RedisError as exc:
                self._drop_pubsub()
                stop.wait(self._backoff.failed(exc))
                continue
            for _, group in groupby(self.aggregator.flush(), key=lambda bar: bar.start):
                yield list(group)

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
            tick = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            tick = None
        if isinstance(tick, dict):
            self.aggregator.add(tick)
        else:
            self.rejected[BAD_TICK] += 1

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
