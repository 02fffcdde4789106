"""The one audit-then-publish path, shared by the relay and `publish-test`.

`audit_batch` then `publish`: `audit_then_publish` composes them for publish-test; the relay calls the
two stages itself so it can audit one batch while it publishes the previous one.

Order matters (contract Appendix B item 7): the PATTERN_PUBLISHED row is committed before the event
is published, so the consumer's EVENT_RECEIVED row always comes after ours in `flow_path`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from tickstockpl import contract
from tickstockpl.audit import AuditLog
from tickstockpl.errors import (
    AuditConfigError,
    AuditDataError,
    PostgresUnavailable,
    TickStockPLError,
)
from tickstockpl.relay.lists import move_call, moved_records
from tickstockpl.relay.scripts import LuaScript, ScriptCall, run_scripts
from tickstockpl.stores import redis_errors


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


# PUBLISH each event and XADD it to the replay stream, a whole chunk per command: the same commands,
# in order, as a pipeline would send, but packed and answered once instead of twice per event
# (redis-py's per-command packing and reply parsing was half of the relay's main-thread time).
_PUBLISH_LUA = """
local counts = {}
for i = 3, #ARGV do
    counts[#counts + 1] = redis.call('PUBLISH', ARGV[1], ARGV[i])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[i])
end
return counts
"""
PUBLISH_SCRIPT = LuaScript(_PUBLISH_LUA)
PUBLISH_CHUNK = 1000  # events per script call: bounds how long one call holds Redis (~1-2 ms)


def publish(client: redis.Redis, batch: Sequence[Outgoing], *, replay_maxlen: int) -> list[int]:
    """PUBLISH each event and XADD it to the bounded replay stream (`MAXLEN ~`), in order.

    Returns the subscriber count each PUBLISH reached; 0 is a fact to count, not an error.
    """
    return publish_then_take(client, batch, replay_maxlen=replay_maxlen, take=0)[0]


def publish_then_take(
    client: redis.Redis, batch: Sequence[Outgoing], *, replay_maxlen: int, take: int
) -> tuple[list[int], list[bytes]]:
    """`publish`, then move up to `take` records from the outbox into the processing list (as
    `relay.lists.take` does, without waiting), all in one round trip: the relay's steady state.

    Returns the subscriber counts and the records moved, oldest first.
    """
    keys = (contract.KEY_REPLAY_STREAM,)
    chunks = [batch[start : start + PUBLISH_CHUNK] for start in range(0, len(batch), PUBLISH_CHUNK)]
    calls = [
        ScriptCall(
            PUBLISH_SCRIPT, keys, (contract.CHANNEL_PATTERNS, replay_maxlen, *[i.payload for i in chunk])
        )
        for chunk in chunks
    ]
    if take > 0:
        calls.append(move_call(take))
    if not calls:
        return [], []
    with redis_errors(f"cannot publish {len(batch)} event(s)"):
        replies = run_scripts(client, calls)
    taken = moved_records(replies.pop()) if take > 0 else []
    return [int(count) for reply in replies for count in reply], taken


@dataclass
class AuditOutcome:
    """What became of a batch's audit rows, decided before any of it is published."""

    publishable: list[Outgoing]  # the batch minus the rows PostgreSQL refused for their data
    rejected: list[tuple[Outgoing, AuditDataError]] = field(default_factory=list)
    # Set when the rows were not written (database down or misconfigured) and the caller chose to
    # publish anyway: the rows go to a retry backlog.
    deferred: TickStockPLError | None = None
    # With durable=False: rows were committed without waiting for the disk. They are safe from a
    # database crash once an AuditLog.flush_wal started after this outcome has returned.
    awaits_flush: bool = False


def audit_batch(
    audit: AuditLog,
    batch: Sequence[Outgoing],
    *,
    skip_existing: bool = False,
    extra_details: Sequence[Mapping[str, Any]] | None = None,
    isolate_poison: bool = False,
    defer_on_failure: bool = False,
    known_down: TickStockPLError | None = None,
    durable: bool = True,
) -> AuditOutcome:
    """Commit the batch's PATTERN_PUBLISHED rows; say what may be published.

    By default every audit error propagates, so nothing is published (publish-test). The relay
    asks for `isolate_poison` (rows refused for their data are split off, the rest is written) and
    `defer_on_failure` (an unavailable or misconfigured database does not stop publishing);
    `known_down` skips the attempt while the database is in backoff. With `durable=False` the
    commit does not wait for the disk, and the outcome says the rows await a flush.
    """
    events = [item.event for item in batch]
    if known_down is not None:
        return AuditOutcome(list(batch), deferred=known_down)
    bad: list[tuple[int, AuditDataError]] = []
    try:
        if isolate_poison:
            _, bad = audit.log_published_isolating(
                events, skip_existing=skip_existing, extra_details=extra_details, durable=durable
            )
        else:
            audit.log_published(
                events, skip_existing=skip_existing, extra_details=extra_details, durable=durable
            )
    except (PostgresUnavailable, AuditConfigError) as exc:
        if not defer_on_failure:
            raise
        return AuditOutcome(list(batch), deferred=exc)
    bad_index = {index: error for index, error in bad}
    return AuditOutcome(
        [item for index, item in enumerate(batch) if index not in bad_index],
        [(batch[index], error) for index, error in bad],
        awaits_flush=not durable and bool(events) and audit.enabled,
    )


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
    outcome = audit_batch(audit, batch, skip_existing=skip_existing, extra_details=extra_details)
    return publish(client, outcome.publishable, replay_maxlen=replay_maxlen)
