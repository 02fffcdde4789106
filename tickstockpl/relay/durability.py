"""Durability of audit rows: a published batch is acked only once its rows are on disk.

The relay commits its audit rows without waiting for their fsync (which on a shared disk sometimes
queues for tens of milliseconds). The rows are visible before the publish as always; the ack waits
instead, until a WAL flush on a second connection and thread has put the commit on disk, so a
database crash in between leaves the records in the processing list to be written again. One flush
covers every commit that returned before it started, so flushes are simply numbered: a batch
published now needs flush number `flushes_started + 1`. See docs/relay.md, step 3.

Rows whose commit failed, or whose flush was never confirmed, wait in the audit backlog
(KEY_AUDIT_BACKLOG, entries below) until PostgreSQL is back; recovery writes them.
"""

from __future__ import annotations

import binascii
import json
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from tickstockpl import contract
from tickstockpl.audit import AuditLog
from tickstockpl.errors import AuditConfigError, PostgresUnavailable, TickStockPLError
from tickstockpl.publisher import Outgoing
from tickstockpl.relay.deadletters import payload_bytes, payload_fields
from tickstockpl.relay.lists import Finish
from tickstockpl.settings import Settings

# While published batches wait for their audit rows to reach disk, the relay flushes PostgreSQL's
# WAL at most this often (one fsync covers every commit before it), and waits at most this long
# for new records before it looks at the flush again.
WAL_FLUSH_EVERY_S = 0.005


@dataclass
class Unacked:
    """A published batch whose ack waits for its audit rows to reach disk: for WAL flush number
    `needs_flush` to return (0: nothing to wait for)."""

    done: Finish
    items: list[Outgoing]  # what was published: the rows to defer if their flush is never confirmed
    published_at: float
    needs_flush: int
    fresh: bool


class DurableAcks:
    """Published batches, oldest first, and the WAL flushes that let them be acked in order."""

    def __init__(self, settings: Settings) -> None:
        self.unacked: deque[Unacked] = deque()
        # WAL flushes on their own connection and thread: an fsync never delays an audit write.
        self.flush_log = AuditLog(settings)
        self.flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-flush")
        self.flushing: Future[None] | None = None
        self.next_flush = 0.0
        self.flushes_started = 0
        self.flushes_done = 0  # the number of the last flush that returned
        self.durable_commits = False  # True once flush_wal is refused: commits then wait for the disk

    def add(
        self, done: Finish, items: list[Outgoing], published_at: float, *, awaits_flush: bool, fresh: bool
    ) -> None:
        """A batch just published; with `awaits_flush`, its rows were committed but may not be on disk."""
        needs_flush = self.flushes_started + 1 if awaits_flush else 0
        self.unacked.append(Unacked(done, items, published_at, needs_flush, fresh))

    def ready(self) -> list[Unacked]:
        """Take the batches, oldest first, whose rows are on disk: they may be acked now."""
        ready: list[Unacked] = []
        while self.unacked and self.unacked[0].needs_flush <= self.flushes_done:
            ready.append(self.unacked.popleft())
        return ready

    def flush_finished(self) -> bool:
        return self.flushing is not None and self.flushing.done()

    def collect(self) -> TickStockPLError | None:
        """Collect the finished flush: None when it returned (its batches may be acked), else its error."""
        flush, self.flushing = self.flushing, None
        if flush is None:
            return None
        try:
            flush.result()
        except (PostgresUnavailable, AuditConfigError) as exc:
            return exc
        self.flushes_done = self.flushes_started
        return None

    def start_flush_when_due(self) -> None:
        """Start the next flush if a batch waits for one and the last started long enough ago."""
        if self.flushing is not None:
            return
        waiting = any(batch.needs_flush > self.flushes_done for batch in self.unacked)
        if waiting and time.monotonic() >= self.next_flush:
            self.next_flush = time.monotonic() + WAL_FLUSH_EVERY_S
            self.flushes_started += 1
            self.flushing = self.flusher.submit(self.flush_log.flush_wal)

    def wait(self) -> None:
        """Block until the flush in flight returns, or until the next may start."""
        if self.flushing is not None:
            self.flushing.exception()  # wait for it; it is collected next turn
        elif self.unacked:
            time.sleep(max(0.0, self.next_flush - time.monotonic()))

    def records(self) -> int:
        return sum(len(batch.done.batch) for batch in self.unacked)

    def defer_unconfirmed(self, error: TickStockPLError) -> bool:
        """PostgreSQL failed while rows awaited their flush: whether they reached disk is unknown.

        Their batches were published, so their rows go to the backlog, to be written (or found
        already there) when PostgreSQL is back, and the batches can be acked. True if any did.
        """
        deferred = False
        for batch in self.unacked:
            if batch.needs_flush <= self.flushes_done:
                continue
            reason = f"audit row not confirmed on disk: {error}"
            batch.done.backlog += backlog_rows(batch.items, batch.published_at, reason)
            batch.done.count(contract.STAT_AUDIT_DEFERRED, len(batch.items))
            batch.needs_flush = 0
            deferred = True
        return deferred

    def abandon(self) -> None:
        """After a Redis error: forget the published batches (they stay in the processing list)."""
        if self.flushing is not None:
            self.flushing.exception()
            self.flushing = None
        self.unacked.clear()

    def close(self) -> None:
        self.flusher.shutdown(wait=True)
        self.flush_log.close()


def backlog_rows(items: Sequence[Outgoing], published_at: float, reason: str) -> list[bytes]:
    """The audit backlog entries for published records whose rows are still to be written."""
    return [backlog_entry(item.payload, published_at=published_at, reason=reason) for item in items]


def backlog_entry(payload: bytes, *, published_at: float, reason: str) -> bytes:
    """A KEY_AUDIT_BACKLOG entry: a published record whose audit row is still to be written."""
    entry = {"published_at": published_at, "reason": reason, **payload_fields(payload)}
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_backlog_entry(raw: bytes) -> tuple[bytes, float, str]:
    """(original payload, publish time, why the row was deferred); ValueError if unreadable."""
    try:
        entry = json.loads(raw)
        published_at = float(entry["published_at"])
        if not math.isfinite(published_at):  # it becomes a number in the row's details
            raise ValueError(f"published_at is {published_at}")
        return payload_bytes(entry), published_at, str(entry.get("reason", ""))
    except (KeyError, TypeError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValueError(f"unreadable audit backlog entry: {exc}") from None
