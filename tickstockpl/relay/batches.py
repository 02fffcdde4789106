"""The relay's batches: take, decode, audit, publish, and ack once the audit rows are on disk.

At-least-once delivery with an effectively-once audit trail: a record leaves the processing list
only after its audit row is on disk (or queued in the backlog) and its event is published, in one
script call with its dead letters and counters. Whatever a crash interrupts is processed again, and
the audit write skips flows that already have their row. See docs/relay.md.

Throughput: the audit of batch k+1 runs on a worker thread (psycopg2 releases the GIL while
PostgreSQL works) while the main thread publishes and acks batch k. The rows of a batch are still
committed before any of its events are published.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from tickstockpl import contract
from tickstockpl.audit import AuditLog
from tickstockpl.backoff import Backoff
from tickstockpl.errors import AuditConfigError, PostgresUnavailable, RedisUnavailable, TickStockPLError
from tickstockpl.publisher import AuditOutcome, Outgoing, audit_batch, publish_then_take
from tickstockpl.relay import deadletters, lists, recovery
from tickstockpl.relay.decode import decode_record
from tickstockpl.relay.durability import WAL_FLUSH_EVERY_S, DurableAcks, backlog_rows
from tickstockpl.relay.lists import Finish
from tickstockpl.relay.stats import count_published, observe
from tickstockpl.settings import Settings
from tickstockpl.stores import redis_client

log = logging.getLogger("tickstockpl.relay")

BLOCK_S = 0.5  # how long an idle relay waits on BLMOVE before it checks the stop flag again


@dataclass
class Batch:
    """Records taken together, from the outbox (`fresh`) or found in the processing list."""

    raw: list[bytes]
    items: list[Outgoing]
    done: Finish  # dead letters found while decoding; completed in complete()
    fresh: bool  # crash points fire only on fresh batches, so every crash run also recovers
    audit_attempted: bool
    future: Future[AuditOutcome] = field(repr=False)
    started: float = field(default_factory=time.monotonic)


class Relay:
    """The relay's state between steps; `step()` is one turn of the loop. One instance per process."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else redis_client(settings)
        self.audit = AuditLog(settings)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        self.acks = DurableAcks(settings)
        self.sweep = recovery.StaleSweep(settings.relay_stale_after_s)
        self.pg_backoff = Backoff("PostgreSQL audit database (rows go to the backlog meanwhile)")
        self.pg_down: TickStockPLError | None = None
        self.pg_retry_at = 0.0
        self.need_recovery = True  # at start, and after any Redis error
        self.backlog_pending = True  # checked at start; set again whenever rows are deferred
        self.inflight: Batch | None = None
        self.last_take_full = False  # the outbox held a full batch or more at the last take
        self.written: set[str] = set()  # histogram buckets this relay has written (see stats.observe)

    def step(self, burst: bool = False) -> bool:
        """One turn: recovery and upkeep when due, then take a batch and complete the previous one.

        Returns True when there was nothing to do.
        """
        if self.need_recovery:
            self.settle()
            recovery.recover(self, lists.processing(self.client), "left in the processing list")
            self.need_recovery = False
        if self.sweep.due():
            self.settle()
            recovery.recover_stale(self)
        backlog_due = self.backlog_pending and self.audit.enabled and time.monotonic() >= self.pg_retry_at
        if backlog_due:
            self.settle()
            recovery.drain_backlog(self)
        self._confirm_flush()
        if self.acks.records() >= self.settings.relay_max_unacked:
            self.settle()  # the disk is behind: stop taking until it catches up
        had_inflight = self.inflight is not None
        size = self.settings.relay_batch_size
        if self.inflight is not None and self.last_take_full:
            # Under load: take the next batch first, so that its audit overlaps this one's publish.
            raw = lists.take(self.client, size)
            new = self.start(raw, fresh=True) if raw else None
            self.complete(self.inflight)
        else:
            if self.inflight is not None:
                # Light load: publish the batch and take what arrived meanwhile in one round trip.
                batch, self.inflight = self.inflight, None
                raw = self.complete(batch, take=size)
            else:
                block_s = WAL_FLUSH_EVERY_S if self.acks.unacked else 0.0 if burst else BLOCK_S
                raw = lists.take(self.client, size, block_s=block_s)
            new = self.start(raw, fresh=True) if raw else None
        self.last_take_full = len(raw) >= size
        self.inflight = new
        backlog_waits = self.backlog_pending and self.pg_down is None and self.audit.enabled
        return not raw and not had_inflight and not backlog_waits and not self.acks.unacked

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.acks.close()
        self.audit.close()
        self.client.close()

    # --- one batch --------------------------------------------------------------------------------

    def start(self, raw: list[bytes], *, fresh: bool) -> Batch:
        """Decode a batch (poison goes to dead letters) and hand its audit rows to the worker."""
        if fresh:
            self._crash_point("after_move")
        done = Finish(contract.KEY_PROCESSING, raw)
        items = []
        for payload in raw:
            try:
                items.append(Outgoing(payload, decode_record(payload)))
            except contract.ContractError as exc:
                deadletters.add(done, payload, str(exc), "contract")
            except Exception as exc:  # RecursionError, OverflowError...: poison must not stop the relay
                deadletters.add(done, payload, f"cannot decode: {type(exc).__name__}: {exc}", "decode")
        known_down = self.pg_down if time.monotonic() < self.pg_retry_at else None
        future = self.executor.submit(
            audit_batch,
            self.audit,
            items,
            skip_existing=True,  # rows are effectively once even after a crash or a duplicate enqueue
            isolate_poison=True,
            defer_on_failure=True,
            known_down=known_down,
            durable=self.acks.durable_commits,  # normally the ack waits for the flush, not the publish
        )
        return Batch(raw, items, done, fresh, known_down is None, future)

    def complete(self, batch: Batch, take: int = 0) -> list[bytes]:
        """Wait for the batch's audit rows, publish what may go, then ack it once they are on disk.

        With `take`, also moves up to that many new records into the processing list, in the
        publish's round trip, and returns them.
        """
        outcome = batch.future.result()
        if batch.fresh:
            self._crash_point("after_audit")
        published_at = time.time()
        subscribers, taken = publish_then_take(
            self.client, outcome.publishable, replay_maxlen=self.settings.replay_stream_maxlen, take=take
        )
        if batch.fresh:
            self._crash_point("after_publish")
        done = batch.done
        for item, error in outcome.rejected:
            reason = f"audit row refused by PostgreSQL ({error.sqlstate}): {error}"
            deadletters.add(done, item.payload, reason, "audit", sqlstate=error.sqlstate, event=item.event)
        if outcome.deferred is not None:
            if batch.audit_attempted:
                self.audit_failed(outcome.deferred, done)
            done.backlog = backlog_rows(outcome.publishable, published_at, str(outcome.deferred))
            done.count(contract.STAT_AUDIT_DEFERRED, len(done.backlog))
            self.backlog_pending = self.backlog_pending or bool(done.backlog)
        elif batch.audit_attempted:
            self.audit_ok()
        count_published(done, outcome.publishable, subscribers, published_at, self.written)
        if not batch.fresh:
            done.count(contract.STAT_RECOVERED, len(batch.raw))
        observe(
            done,
            contract.STAT_BATCH_BUCKET,
            contract.STAT_BATCH_SUM,
            [time.monotonic() - batch.started],
            self.written,
        )
        awaits_flush = outcome.awaits_flush and outcome.deferred is None
        self.acks.add(done, outcome.publishable, published_at, awaits_flush=awaits_flush, fresh=batch.fresh)
        self._ack_durable()
        return taken

    def _ack_durable(self) -> None:
        """Ack published batches, oldest first, whose audit rows PostgreSQL has flushed to disk.

        One flush usually covers several small batches: they are acked in one script call.
        """
        ready = self.acks.ready()
        if not ready:
            return
        if any(batch.fresh for batch in ready):
            self._crash_point("before_ack")
        lists.finish(self.client, Finish.merged([batch.done for batch in ready]))

    def _confirm_flush(self) -> None:
        """Collect a finished WAL flush and ack what it covers; start the next one when due."""
        if self.acks.flushing is not None:
            if not self.acks.flushing.done():
                return
            error = self.acks.collect()
            if isinstance(error, PostgresUnavailable):
                failed = Finish(contract.KEY_PROCESSING, [])
                self.audit_failed(error, failed)  # moves the waiting batches' rows to the backlog
                lists.finish(self.client, failed)
            elif isinstance(error, AuditConfigError):  # e.g. EXECUTE on pg_logical_emit_message revoked
                log.error(
                    "cannot flush PostgreSQL's WAL (%s); audit commits wait for their own fsync from now on",
                    error,
                )
                self.acks.durable_commits = True
                self._defer_unacked(error)
            self._ack_durable()
        self.acks.start_flush_when_due()

    def _defer_unacked(self, error: TickStockPLError) -> None:
        if self.acks.defer_unconfirmed(error):
            self.backlog_pending = True

    # --- PostgreSQL state -------------------------------------------------------------------------

    def audit_failed(self, error: TickStockPLError, done: Finish) -> None:
        """Back off; publishing goes on and rows wait in the backlog. Misconfiguration is loud."""
        if isinstance(error, AuditConfigError) and str(error) != str(self.pg_down):
            log.error(
                "AUDIT DATABASE MISCONFIGURED (%s): %s. Publishing continues; PATTERN_PUBLISHED rows "
                "wait in %s until it is fixed.",
                self.settings.postgres_target,
                error,
                contract.KEY_AUDIT_BACKLOG,
            )
        self.pg_down = error
        self.pg_retry_at = time.monotonic() + self.pg_backoff.failed(error)
        done.count(contract.STAT_AUDIT_FAILURES)
        self._defer_unacked(error)

    def audit_ok(self) -> None:
        if self.pg_down is not None:
            self.pg_down = None
            self.pg_retry_at = 0.0
            self.pg_backoff.succeeded()

    # --- in-flight bookkeeping --------------------------------------------------------------------

    def settle(self) -> None:
        """Complete the batch in flight and ack every published one, so that nothing of ours is half done."""
        if self.inflight is not None:
            batch, self.inflight = self.inflight, None
            self.complete(batch)
        while self.acks.unacked:
            self._confirm_flush()
            self.acks.wait()

    def abandon_inflight(self) -> None:
        """After a Redis error: forget what is in flight (it stays in the processing list for recovery)."""
        if self.inflight is not None:
            batch, self.inflight = self.inflight, None
            batch.future.exception()  # let the worker finish with the connection first
        self.acks.abandon()

    def finish_inflight(self) -> str:
        """At a stop: settle what is in flight; say what was left for recovery, if anything."""
        try:
            self.settle()
        except RedisUnavailable as exc:
            self.abandon_inflight()
            return f" (batch in flight left for recovery: {exc})"
        return ""

    def _crash_point(self, step: str) -> None:
        """For fault tests: TICKSTOCKPL_CRASH_AT=<step> kills the process with SIGKILL right here."""
        if self.settings.relay_crash_at == step:
            log.warning("crash point %s: SIGKILL", step)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)
