"""The detector's flusher hands a boundary's burst to the outbox in one round trip (issue 16)."""

from __future__ import annotations

from collections import Counter

import redis

from tests.integration.test_relay_support import make_events
from tests.support import poll
from tickstockpl import contract
from tickstockpl.services.detector import EventBuffer


def _lpush_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_lpush", {}).get("calls", 0))


def test_a_burst_of_events_goes_onto_the_outbox_in_one_lpush(redis_client: redis.Redis) -> None:
    """With 500 events per LPUSH, the relay woke on the first slice of a 6,500-event burst and took
    it alone: the burst then cost the relay several audit calls in a row instead of one or two."""
    redis_client.config_resetstat()
    buffer = EventBuffer(redis_client)
    burst = make_events(2_500)
    buffer.put(burst, Counter(), None)  # before the flusher starts: it finds the whole burst waiting
    buffer.start()
    try:
        poll(lambda: buffer.enqueued == len(burst), 30, "the burst to be enqueued")
    finally:
        buffer.close(5.0)
    assert redis_client.llen(contract.KEY_OUTBOX) == len(burst)
    assert _lpush_calls(redis_client) == 1
