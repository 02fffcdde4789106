"""Recovery: processing again what a crash, a Redis error or a PostgreSQL outage left behind.

Three sources, all written to PostgreSQL with skip-existing so a repeat writes no second row:
records left in the processing list (at start and after a Redis error), records another (dead)
relay left there longer than allowed (the sweep), and audit rows deferred to the backlog.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING

from tickstockpl import contract
from tickstockpl.publisher import Outgoing, audit_batch
from tickstockpl.relay import deadletters, lists
from tickstockpl.relay.decode import decode_record
from tickstockpl.relay.durability import parse_backlog_entry
from tickstockpl.relay.lists import Finish

if TYPE_CHECKING:
    from tickstockpl.relay.batches import Relay

log = logging.getLogger("tickstockpl.relay")


def recover(relay: Relay, entries: list[bytes], where: str) -> None:
    """Process records again, oldest first; their audit rows are skipped where they exist."""
    if not entries:
        return
    log.warning("recovering %d record(s) %s", len(entries), where)
    size = relay.settings.relay_batch_size
    for start in range(0, len(entries), size):
        relay.complete(relay.start(entries[start : start + size], fresh=False))


class StaleSweep:
    """Which records have sat in the processing list for longer than `stale_after_s`."""

    def __init__(self, stale_after_s: float) -> None:
        self.stale_after_s = stale_after_s
        self.next_sweep = time.monotonic() + stale_after_s / 2
        self.first_seen: dict[bytes, float] = {}

    def due(self) -> bool:
        return time.monotonic() >= self.next_sweep

    def stale(self, entries: list[bytes]) -> list[bytes]:
        """The entries first seen at least `stale_after_s` ago; remembers the rest until next time."""
        now = time.monotonic()
        self.next_sweep = now + self.stale_after_s / 2
        seen: dict[bytes, float] = {}
        stale = []
        for payload in entries:
            key = hashlib.blake2b(payload, digest_size=16).digest()
            seen[key] = self.first_seen.get(key, now)
            if now - seen[key] >= self.stale_after_s:
                stale.append(payload)
        self.first_seen = seen
        return stale


def recover_stale(relay: Relay) -> None:
    """Recover records another (dead) relay left in the processing list longer than allowed.

    Runs with nothing of ours in flight, so everything in the list belongs to someone else.
    """
    stale = relay.sweep.stale(lists.processing(relay.client))
    recover(relay, stale, f"stale in the processing list for over {relay.sweep.stale_after_s:g} s")


def drain_backlog(relay: Relay) -> None:
    """Write one chunk of deferred audit rows, marked `deferred` with their publish time."""
    entries = lists.oldest(relay.client, contract.KEY_AUDIT_BACKLOG, relay.settings.relay_batch_size)
    if not entries:
        relay.backlog_pending = False
        return
    done = Finish(contract.KEY_AUDIT_BACKLOG, entries)
    items, extras = [], []
    for raw in entries:
        try:
            payload, published_at, _ = parse_backlog_entry(raw)
            items.append(Outgoing(payload, decode_record(payload)))
            extras.append({"deferred": True, "published_at": published_at})
        except Exception as exc:  # a hand-edited entry must not block the backlog
            deadletters.add(done, raw, f"unreadable audit backlog entry: {exc}", "decode", published=True)
    outcome = relay.executor.submit(
        audit_batch, relay.audit, items, skip_existing=True, extra_details=extras, isolate_poison=True,
        defer_on_failure=True,
    ).result()  # fmt: skip
    if outcome.deferred is not None:  # still down: the entries stay, only the failure is counted
        failed = Finish(contract.KEY_AUDIT_BACKLOG, [])
        relay.audit_failed(outcome.deferred, failed)
        lists.finish(relay.client, failed)
        return
    relay.audit_ok()
    for item, error in outcome.rejected:
        reason = f"deferred audit row refused by PostgreSQL ({error.sqlstate}): {error}"
        deadletters.add(
            done, item.payload, reason, "audit", sqlstate=error.sqlstate, event=item.event, published=True
        )
    done.count(contract.STAT_AUDIT_BACKLOG_WRITTEN, len(outcome.publishable))
    lists.finish(relay.client, done)
    log.info("wrote %d deferred audit row(s)", len(outcome.publishable))
