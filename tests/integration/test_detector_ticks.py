"""The tick-feed source subscribed to tickstock.data.raw on a real Redis, aggregating into minute bars."""

from __future__ import annotations

import json
import threading
import time

import redis

from tickstockpl import contract
from tickstockpl.bars import Bar
from tickstockpl.settings import Settings
from tickstockpl.sources.ticks import BAD_TICK, TickFeedSource

T0 = (int(time.time()) // 60 - 60) * 60  # a minute boundary an hour ago: inside the tick window


def test_ticks_published_by_the_consumer_become_bars(settings: Settings, redis_client: redis.Redis) -> None:
    source = TickFeedSource(settings, poll_s=0.1)
    stop = threading.Event()
    got: list[Bar] = []

    def consume() -> None:
        for batch in source.batches(stop):
            got.extend(batch)
            if len(got) >= 2:
                stop.set()

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        assert source.subscribed.wait(10)
        redis_client.publish(contract.CHANNEL_RAW_TICKS, "{not json")
        ticks = [
            ("AAPL", 10.0, T0 + 1, 100),
            ("MSFT", 300.0, T0 + 2, 5),
            ("AAPL", 10.4, T0 + 30, 50),
            ("AAPL", 9.9, T0 + 59, 10),
            ("AAPL", 10.2, T0 + 185, 1),  # minutes T0+60 and T0+120 are quiet: no bars for them
        ]
        for ticker, price, at, volume in ticks:
            message = {
                "ticker": ticker,
                "price": price,
                "volume": volume,
                "timestamp": at,
                "event_type": "tick",
            }
            redis_client.publish(contract.CHANNEL_RAW_TICKS, json.dumps(message))
        thread.join(20)
    finally:
        stop.set()
        thread.join(5)
        source.close()
    assert got == [
        Bar("AAPL", 60, T0, 10.0, 10.4, 9.9, 9.9, 160.0),
        Bar("MSFT", 60, T0, 300.0, 300.0, 300.0, 300.0, 5.0),
    ]
    assert source.rejected == {BAD_TICK: 1}
