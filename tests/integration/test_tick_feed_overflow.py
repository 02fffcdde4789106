"""What the tick feed over pub/sub loses under load (issue 14, item 5): Redis closes a subscriber whose
output buffer passes `client-output-buffer-limit pubsub`; the ticks it held are gone. The detector
counts the lost subscription (`tick_feed_disconnects`), resubscribes, and the exporter serves it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.support import poll
from tickstockpl import contract
from tickstockpl.services.detector import Detector
from tickstockpl.services.exporter import build_registry
from tickstockpl.settings import Settings
from tickstockpl.sources.ticks import TickFeedSource

LIMIT = "pubsub 65536 32768 1"  # 64 KB hard: a few hundred unread ticks, past the sockets' own buffers


@pytest.fixture
def small_pubsub_buffers(redis_client: redis.Redis) -> Iterator[None]:
    (before,) = redis_client.config_get("client-output-buffer-limit").values()
    redis_client.config_set("client-output-buffer-limit", LIMIT)
    yield
    redis_client.config_set("client-output-buffer-limit", before)


def flood(client: redis.Redis, ticks: int) -> None:
    """Ticks of ~1 KB each, far faster than a subscriber that is not reading takes them."""
    at = time.time() - 3600
    message = json.dumps({"ticker": "AAPL", "price": 10.0, "volume": 1, "timestamp": at, "pad": "x" * 1000})
    pipe = client.pipeline(transaction=False)
    for _ in range(ticks):
        pipe.publish(contract.CHANNEL_RAW_TICKS, message)
    pipe.execute()


def test_an_overflowing_subscriber_is_dropped_counted_and_resubscribes(
    settings: Settings, redis_client: redis.Redis, small_pubsub_buffers: None
) -> None:
    source = TickFeedSource(settings, poll_s=0.1)
    source._read(threading.Event())  # subscribed, then busy elsewhere: nobody reads the socket
    assert source.subscribed.is_set()
    for _ in range(20):  # until Redis gives up on it (the kernel buffers a few MB first)
        flood(redis_client, 2000)
        if redis_client.pubsub_numsub(contract.CHANNEL_RAW_TICKS)[0][1] == 0:
            break
    assert redis_client.pubsub_numsub(contract.CHANNEL_RAW_TICKS)[0][1] == 0  # Redis closed it
    detector = Detector(settings, source=source, client=redis_client)
    stop = threading.Event()
    thread = threading.Thread(target=detector.run, args=(stop,), kwargs={"drain_timeout_s": 5})
    thread.start()
    try:
        poll(
            lambda: redis_client.hget(contract.KEY_STATS, contract.STAT_TICK_FEED_DISCONNECTS),
            30,
            "the count",
        )
        poll(
            lambda: redis_client.pubsub_numsub(contract.CHANNEL_RAW_TICKS)[0][1] == 1,
            30,
            "a new subscription",
        )
    finally:
        stop.set()
        thread.join(15)
    assert source.disconnects == 1
    assert redis_client.hget(contract.KEY_STATS, contract.STAT_TICK_FEED_DISCONNECTS) == b"1"
    registry, collector = build_registry(settings)
    try:
        assert registry.get_sample_value("tickstockpl_tick_feed_disconnects_total") == 1.0
        # Redis's own count (INFO stats) where the server has it (releases after 7.0): every such close.
        info = redis_client.info("stats")
        served = registry.get_sample_value("tickstockpl_redis_output_buffer_disconnections_total")
        if "client_output_buffer_limit_disconnections" in info:
            assert served == float(info["client_output_buffer_limit_disconnections"]) >= 1
        else:
            assert served is None
    finally:
        collector.close()
