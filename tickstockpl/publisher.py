"""The one audit-then-publish path, shared by the relay and `publish-test`.

Order matters (contract Appendix B item 7): the PATTERN_PUBLISHED row is committed before the event
is published, so the consumer's EVENT_RECEIVED row always comes after ours in `flow_path`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tickstockpl import contract
from tickstockpl.audit import AuditLog
from tickstockpl.errors import RedisUnavailable


@dataclass(frozen=True)
class Outgoing:
    """One event ready to go: the exact wire bytes and the parsed, validated event."""

    payload: bytes
    event: Mapping[str, Any]

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Outgoing:
        validated = contract.validate_pattern_event(dict(event))
        return cls(contract.encode(validated).encode("utf-8"), validated)

    @property
    def flow_id(self) -> str:
        return str(self.event["data"]["flow_id"])


def publish(client: redis.Redis, batch: Sequence[Outgoing], *, replay_maxlen: int) -> list[int]:
    """PUBLISH each event (pipelined) and XADD it to the bounded replay stream.

    Returns the subscriber count each PUBLISH reached; 0 is a fact to count, not an error.
    """
    if not batch:
        return []
    pipe = client.pipeline(transaction=False)
    for item in batch:
        pipe.publish(contract.CHANNEL_PATTERNS, item.payload)
        pipe.xadd(contract.KEY_REPLAY_STREAM, {"event": item.payload}, maxlen=replay_maxlen, approximate=True)
    try:
        replies = pipe.execute()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(f"cannot publish {len(batch)} event(s): {exc}") from None
    return [int(count) for count in replies[0::2]]


def audit_then_publish(
    client: redis.Redis,
    audit: AuditLog,
    batch: Sequence[Outgoing],
    *,
    replay_maxlen: int,
    skip_existing: bool = False,
    extra_details: Sequence[Mapping[str, Any]] | None = None,
) -> list[int]:
    """Commit the batch's audit rows, then publish it; audit errors propagate before any publish."""
    audit.log_published(
        [item.event for item in batch], skip_existing=skip_existing, extra_details=extra_details
    )
    return publish(client, batch, replay_maxlen=replay_maxlen)
