"""Massive (formerly Polygon.io) stocks websocket: per-minute aggregates (`AM` events) as bars.

Protocol (massive.com/docs/websocket/stocks/aggregates-per-minute): connect; the server greets with
`[{"ev":"status","status":"connected"}]`; send `{"action":"auth","params":KEY}` and wait for
`auth_success`; send `{"action":"subscribe","params":"AM.AAPL,AM.MSFT"}`. Then arrays of events:
`{"ev":"AM","sym":"AAPL","o","h","l","c","v","s":start_ms,"e":end_ms,...}`. Timestamps are in
**milliseconds**. A minute with no qualifying trades has no AM event. Any disconnect (or refused
auth) is retried with a capped, jittered backoff; the websocket runs in its own thread and event loop,
handing batches to the detector through a queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from tickstockpl import inbound
from tickstockpl.backoff import Backoff
from tickstockpl.bars import DAY_SECONDS, Bar, bar_from_fields
from tickstockpl.settings import Settings
from tickstockpl.sharding import Shard

log = logging.getLogger(__name__)

AM_FIELDS = ("o", "h", "l", "c", "v")


class AuthFailed(Exception):
    """The server refused the API key."""


def parse_message(raw: str | bytes, rejected: Counter[str]) -> tuple[list[Bar], list[dict[str, Any]]]:
    """Split one websocket frame into AM bars and status events; unusable AM events are counted.

    The frame comes from another system: orjson refuses nesting past 1024 levels (no RecursionError),
    and a bar's start must be a sane time (after 1970, not in the future: inbound.check_timestamp; a
    replay of old bars is fine) and its length at most a day."""
    try:
        events = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        rejected["unreadable_message"] += 1
        return [], []
    if isinstance(events, dict):
        events = [events]
    bars, statuses = [], []
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, dict):
            continue
        if event.get("ev") == "status":
            statuses.append(event)
        elif event.get("ev") == "AM":
            start_ms, end_ms = event.get("s"), event.get("e")
            timeframe = 60
            if isinstance(start_ms, int | float) and isinstance(end_ms, int | float) and end_ms > start_ms:
                timeframe = max(1, round((end_ms - start_ms) / 1000))
            try:
                start = inbound.check_timestamp(start_ms, earliest=0.0) if start_ms is not None else None
            except inbound.Rejected:
                rejected["bad_timestamp"] += 1
                continue
            if not 1 <= timeframe <= DAY_SECONDS:
                rejected["bad_timeframe"] += 1
                continue
            bar = bar_from_fields(event.get("sym"), timeframe, start, event, AM_FIELDS)
            if isinstance(bar, Bar):
                bars.append(bar)
            else:
                rejected[bar] += 1
    return bars, statuses


class MassiveSource:
    """AM bars from Massive's websocket, reconnecting for as long as the detector runs."""

    def __init__(
        self,
        settings: Settings,
        *,
        url: str | None = None,
        api_key: str | None = None,
        symbols: Sequence[str] | None = None,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        shard: Shard | None = None,
    ) -> None:
        self.url = url or settings.massive_ws_url
        self.api_key = api_key if api_key is not None else settings.massive_api_key
        if not self.api_key:
            raise ValueError("the massive source needs MASSIVE_API_KEY")
        # A shard subscribes to its own symbols only, and drops any other bar the server sends.
        self.shard = shard or Shard()
        wanted = symbols if symbols is not None else settings.symbols
        self.symbols = [symbol for symbol in wanted if self.shard.owns(symbol)]
        self.rejected: Counter[str] = Counter()
        self.connections = 0  # successful authentications, for tests and logs
        self._backoff = Backoff("Massive websocket", base_s=backoff_base_s, cap_s=backoff_cap_s)
        self._queue: queue.Queue[list[Bar]] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        self._stop = stop
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), name="massive-ws", daemon=True
        )
        self._thread.start()
        while not stop.is_set():
            try:
                yield self._queue.get(timeout=0.25)
            except queue.Empty:
                continue

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    async def _run(self) -> None:
        if not self.symbols:
            log.warning("Massive websocket: no symbol of TICKSTOCKPL_SYMBOLS is in %s; idle", self.shard)
            return
        while not self._stop.is_set():
            try:
                await self._session()
                reason: object = "connection closed"
            except AuthFailed as exc:
                reason = f"authentication refused: {exc}"
            except (TimeoutError, OSError, WebSocketException) as exc:
                reason = exc
            if self._stop.is_set():
                return
            delay = self._backoff.failed(reason)
            await asyncio.to_thread(self._stop.wait, delay)

    async def _session(self) -> None:
        async with connect(self.url, open_timeout=10, ping_interval=20, close_timeout=2) as ws:
            await ws.send(json.dumps({"action": "auth", "params": self.api_key}))
            await self._await_status(ws, "auth_success", {"auth_failed"})
            params = ",".join(f"AM.{symbol}" for symbol in self.symbols)
            await ws.send(json.dumps({"action": "subscribe", "params": params}))
            self.connections += 1
            self._backoff.succeeded()
            log.info("Massive websocket: authenticated, subscribed to %s", params)
            while not self._stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout=0.25)
                except TimeoutError:
                    continue
                bars, _ = parse_message(raw, self.rejected)
                bars = [bar for bar in bars if self.shard.owns(bar.symbol)]
                if bars:
                    await asyncio.to_thread(self._queue.put, bars)

    async def _await_status(self, ws: Any, wanted: str, failures: set[str]) -> None:
        while True:
            raw = await asyncio.wait_for(ws.recv(), timeout=10)
            _, statuses = parse_message(raw, self.rejected)
            for status in statuses:
                if status.get("status") == wanted:
                    return
                if status.get("status") in failures:
                    raise AuthFailed(str(status.get("message", status.get("status"))))
