"""`outbox.enqueue`: the builder's events are trusted, anything else is validated, and the relay's
decode still guards against whatever reaches the outbox (one validation point on the way out)."""

from __future__ import annotations

import pytest
import redis

from tests.integration.test_relay_support import dead_letters, make_events
from tickstockpl import contract, outbox
from tickstockpl.exitcodes import RET_OK
from tickstockpl.patterns import EventBuilder, Signal
from tickstockpl.services import relay
from tickstockpl.settings import Settings

SIGNALS = [Signal(f"S{i}", 60, 600 * i, "Doji", "neutral", 0.5, 10.0 + i, 9.5, 100.0) for i in range(5)]


def test_built_events_go_out_as_the_validated_copies_would(redis_client: redis.Redis) -> None:
    built = EventBuilder().build(SIGNALS, now=1_785_000_000.5)
    assert outbox.enqueue(redis_client, built) == len(SIGNALS)
    pushed = redis_client.lrange(contract.KEY_OUTBOX, 0, -1)[::-1]  # LPUSH: oldest at the right
    validated = [contract.encode(contract.validate_pattern_event(dict(event))).encode() for event in built]
    assert pushed == validated
    assert int(redis_client.hget(contract.KEY_STATS, contract.STAT_PATTERNS_DETECTED) or 0) == len(SIGNALS)


def test_other_events_are_validated_and_nothing_is_pushed(redis_client: redis.Redis) -> None:
    good, bad = make_events(2)
    bad["data"]["confidence"] = 1.5
    with pytest.raises(contract.ContractError) as refused:
        outbox.enqueue(redis_client, [good, bad])
    assert refused.value.field == "data.confidence"
    assert redis_client.llen(contract.KEY_OUTBOX) == 0


def test_the_relay_still_guards_against_what_enqueue_trusted(
    consumer_settings: Settings, redis_client: redis.Redis
) -> None:
    """A trusted event changed after it was built passes enqueue; the relay's decode dead-letters it."""
    good, broken = EventBuilder().build(SIGNALS[:2], now=1_785_000_000.5)
    broken["data"]["confidence"] = 1.5  # what no builder returns: the relay must not pass it on
    assert outbox.enqueue(redis_client, [good, broken]) == 2
    assert relay.run(consumer_settings, burst=True) == RET_OK
    letters = dead_letters(redis_client)
    assert [letter.stage for letter in letters] == ["contract"]
    assert "data.confidence" in letters[0].reason and broken["data"]["flow_id"].encode() in letters[0].payload
    assert int(redis_client.hget(contract.KEY_STATS, "patterns_published") or 0) == 1
