"""Massive AM aggregates: message parsing, and auth/subscribe/reconnect against a fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tickstockpl.bars import Bar
from tickstockpl.settings import Settings
from tickstockpl.sharding import Shard
from tickstockpl.sources.massive import MassiveSource, parse_message

S = 1_610_144_640_000  # a minute start in milliseconds


def am(symbol: str, start_ms: int, close: float) -> dict[str, Any]:
    return {
        "ev": "AM", "sym": symbol, "v": 4110, "av": 9470157, "op": 0.4372, "vw": 0.4488, "o": 0.4488,
        "c": close, "h": max(0.4488, close), "l": min(0.4488, close), "a": 0.4352, "z": 685,
        "s": start_ms, "e": start_ms + 60_000,
    }  # fmt: skip


def test_parse_am_events_with_millisecond_timestamps() -> None:
    rejected: Counter[str] = Counter()
    raw = json.dumps([am("AAPL", S, 0.45), {"ev": "status", "status": "success"}, {"ev": "AM", "sym": "X"}])
    bars, statuses = parse_message(raw, rejected)
    assert bars == [Bar("AAPL", 60, S // 1000, 0.4488, 0.45, 0.4488, 0.45, 4110)]  # s is in milliseconds
    assert statuses == [{"ev": "status", "status": "success"}]
    assert rejected == {"missing_field": 1}
    assert parse_message("not json", rejected) == ([], [])
    assert rejected["unreadable_message"] == 1


class FakeMassive:
    """Speaks the documented handshake; each connection gets the next script of frames, then closes."""

    def __init__(self, scripts: list[list[list[dict[str, Any]]]], key: str = "good-key") -> None:
        self.scripts = scripts
        self.key = key
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send(
            json.dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}])
        )
        auth = json.loads(await ws.recv())
        self.received.append(auth)
        if auth.get("params") != self.key:
            await ws.send(json.dumps([{"ev": "status", "status": "auth_failed", "message": "bad key"}]))
            return
        await ws.send(json.dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}]))
        self.received.append(json.loads(await ws.recv()))
        script = self.scripts.pop(0) if self.scripts else []
        for frame in script:
            await ws.send(json.dumps(frame))
        if not self.scripts and not script:
            await asyncio.Future()  # the last connection stays open

    async def main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        async with serve(self.handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def start(self) -> None:
        threading.Thread(target=lambda: asyncio.run(self.main()), daemon=True).start()
        assert self._ready.wait(5)

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)


@pytest.fixture
def fake() -> Iterator[FakeMassive]:
    server = FakeMassive(
        scripts=[
            [[am("AAPL", S, 0.45), am("MSFT", S, 0.46)]],  # then the server drops the connection
            [[am("AAPL", S + 60_000, 0.47)]],
            [],
        ]
    )
    server.start()
    yield server
    server.stop()


def collect(source: MassiveSource, wanted: int, timeout_s: float = 10.0) -> list[Bar]:
    stop = threading.Event()
    got: list[Bar] = []
    deadline = time.monotonic() + timeout_s
    for batch in source.batches(stop):
        got.extend(batch)
        if len(got) >= wanted or time.monotonic() > deadline:
            break
    stop.set()
    source.close()
    return got


def test_auth_subscribe_parse_and_reconnect(fake: FakeMassive) -> None:
    settings = Settings(massive_api_key="good-key", massive_ws_url=f"ws://127.0.0.1:{fake.port}")
    source = MassiveSource(settings, symbols=["AAPL", "MSFT"], backoff_base_s=0.05, backoff_cap_s=0.2)
    bars = collect(source, wanted=3)
    assert [(b.symbol, b.start, b.close) for b in bars] == [
        ("AAPL", S // 1000, 0.45),
        ("MSFT", S // 1000, 0.46),
        ("AAPL", S // 1000 + 60, 0.47),
    ]
    assert fake.received[0] == {"action": "auth", "params": "good-key"}
    assert fake.received[1] == {"action": "subscribe", "params": "AM.AAPL,AM.MSFT"}
    assert source.connections >= 2 and fake.connections >= 2


def test_refused_key_is_retried_with_backoff_not_raised(fake: FakeMassive) -> None:
    settings = Settings(massive_api_key="wrong", massive_ws_url=f"ws://127.0.0.1:{fake.port}")
    source = MassiveSource(settings, symbols=["AAPL"], backoff_base_s=0.05, backoff_cap_s=0.1)
    stop = threading.Event()
    batches = source.batches(stop)
    deadline = time.monotonic() + 10
    thread = threading.Thread(target=lambda: next(batches, None), daemon=True)
    thread.start()
    while fake.connections < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    source.close()
    thread.join(5)
    assert fake.connections >= 3 and source.connections == 0


def test_no_key_no_source() -> None:
    with pytest.raises(ValueError, match="MASSIVE_API_KEY"):
        MassiveSource(Settings())


def test_a_shard_subscribes_to_its_own_symbols_and_drops_any_other_bar() -> None:
    # FB is shard 1's of 2; AAPL and MSFT are shard 0's (tickstockpl/sharding.py).
    server = FakeMassive(scripts=[[[am("AAPL", S, 0.45), am("FB", S, 0.46), am("MSFT", S, 0.47)]], []])
    server.start()
    try:
        settings = Settings(massive_api_key="good-key", massive_ws_url=f"ws://127.0.0.1:{server.port}")
        source = MassiveSource(settings, symbols=["AAPL", "FB", "MSFT"], shard=Shard(1, 2))
        bars = collect(source, wanted=1)
    finally:
        server.stop()
    assert [(b.symbol, b.close) for b in bars] == [("FB", 0.46)]  # the server sent all three anyway
    assert server.received[1] == {"action": "subscribe", "params": "AM.FB"}
    assert MassiveSource(settings, symbols=["AAPL", "FB", "MSFT"], shard=Shard(0, 2)).symbols == [
        "AAPL",
        "MSFT",
    ]
