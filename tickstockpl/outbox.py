"""The local Redis list between the detector and the relay (the outbox): what the detector needs.

The detector LPUSHes validated events; the relay (`tickstockpl.relay`) moves them on. An invalid
event never enters the outbox: it is rejected here, by the contract, with the field named.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from tickstockpl import contract
from tickstockpl.stores import redis_errors


def enqueue(client: redis.Redis, events: Iterable[Mapping[str, Any]]) -> int:
    """Validate and push pattern events onto the outbox in one round trip; return how many.

    Events the detector's builder made (`contract.BuiltPatternEvent`) hold to the contract by
    construction and are only encoded; any other mapping is validated here. Also counts them in the
    stack-wide stats hash (patterns_detected, last_pattern_time), which the heartbeat reports.
    Raises ContractError (nothing is pushed), RedisUnavailable or RedisConfigError.
    """
    payloads = [
        contract.encode(
            event
            if type(event) is contract.BuiltPatternEvent
            else contract.validate_pattern_event(dict(event))
        )
        for event in events
    ]
    if not payloads:
        return 0
    pipe = client.pipeline(transaction=True)
    pipe.lpush(contract.KEY_OUTBOX, *payloads)
    pipe.hincrby(contract.KEY_STATS, contract.STAT_PATTERNS_DETECTED, len(payloads))
    pipe.hset(contract.KEY_STATS, contract.STAT_LAST_PATTERN_TIME, repr(time.time()))
    with redis_errors(f"cannot enqueue {len(payloads)} pattern(s)"):
        pipe.execute()
    return len(payloads)
