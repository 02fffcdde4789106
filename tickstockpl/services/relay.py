"""The relay: outbox → PATTERN_PUBLISHED row → PUBLISH + replay stream → ack.

At-least-once delivery with an effectively-once audit trail: a record leaves the processing list
only after its audit row is on disk (or queued in the backlog) and its event is published, in one
script call with its dead letters and counters. Whatever a crash interrupts is processed again, and
the audit write skips flows that already have their row, so a repeat publishes the same flow_id
again but never writes a second row. See docs/relay.md.

Throughput: the audit of batch k+1 runs on a worker thread (psycopg2 releases the GIL while
PostgreSQL works) while the main thread publishes and acks batch k. The rows of a batch are still
committed before any of its events are published.

Latency: the audit commit does not wait for its fsync, which on a shared disk sometimes queues for
tens of milliseconds behind other writes. The rows are committed (visible) before the publish as
always; the ack waits instead, until a flush on a second connection has put the commit on disk, so
a database crash in between leaves the records in the processing list to be written again.

    python -m tickstockpl.services.relay [--burst]
"""

from __future__ import annotations

import argparse
import bisect
import gc
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from tickstockpl import contract, outbox
from tickstockpl.audit import AuditLog
from tickstockpl.backoff import Backoff
from tickstockpl.errors import (
    AuditConfigError,
    PostgresUnavailable,
    RedisConfigError,
    RedisUnavailable,
    TickStockPLError,
)
from tickstockpl.exitcodes import RET_CONFIG, RET_FAILED, RET_OK
from tickstockpl.lifecycle import service_main
from tickstockpl.publisher import AuditOutcome, Outgoing, audit_batch, publish_then_take
from tickstockpl.settings import Settings
from tickstockpl.stores import redis_client

log = logging.getLogger("tickstockpl.relay")

BLOCK_S = 0.5  # how long an idle relay waits on BLMOVE before it checks the stop flag again
# While published batches wait for their audit rows to reach disk, the relay flushes PostgreSQL's
# WAL at most this often (one fsync covers every commit before it), and waits at most this long
# for new records before it looks at the flush again.
WAL_FLUSH_EVERY_S = 0.005
# Histograms in KEY_STATS, read by the exporter: cumulative `<prefix>:<le seconds>` counters
# (Prometheus style) plus `<prefix>:+Inf` and a sum. `latency_bucket` is enqueue→publish per event
# (publish time minus the envelope timestamp); `batch_bucket` is take→finish per batch.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Allocations (minus deallocations) of tracked objects between young-generation collections; Python's
# default is 700. The relay's garbage is freed by refcount, so a collection finds almost nothing.
GC_GEN0_THRESHOLD = 20_000
_BUCKET_FIELDS = {
    prefix: tuple(f"{prefix}:{le}" for le in LATENCY_BUCKETS_S)
    for prefix in ("latency_bucket", "batch_bucket")
}


def tune_gc() -> None:
    """Keep the cyclic GC out of the latency tail: freeze what start-up allocated, collect rarely.

    With the defaults, a full collection walked every module, connection and compiled regex that
    start-up left behind: 15-50 ms with the GIL held, about once every 7 s at 10,000/s, and each
    one backs up 150-500 records (docs/relay.md, "Where the p99 tail comes from"). Frozen objects
    are never scanned again; a higher young threshold makes collections rare, and what they scan
    is only what was allocated since, so memory stays bounded.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


@dataclass
class Batch:
    """Records taken together, from the outbox (`fresh`) or found in the processing list."""

    raw: list[bytes]
    items: list[Outgoing]
    done: outbox.Finish  # dead letters found while decoding; completed in _complete
    fresh: bool  # crash points fire only on fresh batches, so every crash run also recovers
    audit_attempted: bool
    future: Future[AuditOutcome] = field(repr=False)
    started: float = field(default_factory=time.monotonic)


@dataclass
class Unacked:
    """A published batch whose ack waits for its audit rows to reach disk: for WAL flush number
    `needs_flush` to return (0: nothing to wait for)."""

    done: outbox.Finish
    items: list[Outgoing]  # what was published: the rows to defer if their flush is never confirmed
    published_at: float
    needs_flush: int
    fresh: bool


class Relay:
    """The relay's state between steps; `loop()` drives it. One instance per process."""

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else redis_client(settings)
        self.audit = AuditLog(settings)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")
        self.redis_backoff = Backoff("Redis")
        self.pg_backoff = Backoff("PostgreSQL audit database (rows go to the backlog meanwhile)")
        self.pg_down: TickStockPLError | None = None
        self.pg_retry_at = 0.0
        self.need_recovery = True  # at start, and after any Redis error
        self.backlog_pending = True  # checked at start; set again whenever rows are deferred
        self.next_sweep = time.monotonic() + settings.relay_stale_after_s / 2
        self.first_seen: dict[bytes, float] = {}
        self.inflight: Batch | None = None
        self.last_take_full = False  # the outbox held a full batch or more at the last take
        self.unacked: deque[Unacked] = deque()  # published, oldest first; acked in order
        # WAL flushes on their own connection and thread: an fsync never delays an audit write.
        self.flush_log = AuditLog(settings)
        self.flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-flush")
        self.flushing: Future[None] | None = None
        self.next_flush = 0.0
        # Flushes are numbered as they start; a flush covers every commit that returned before it
        # started, so a batch appended now needs flush number `flushes_started + 1`.
        self.flushes_started = 0
        self.flushes_done = 0  # the number of the last flush that returned
        self.durable_commits = False  # True once flush_wal is refused: commits then wait for the disk
        self.written: set[str] = set()  # histogram buckets this relay has written (see _observe)

    # --- the loop ---------------------------------------------------------------------------------

    def loop(self, stop: threading.Event, burst: bool = False) -> str:
        """Run until asked to stop (or, in burst mode, until there is nothing left); say why."""
        while True:
            if stop.is_set():
                return "stopping on request" + self._finish_inflight()
            try:
                idle = self.step(burst)
                self.redis_backoff.succeeded()
            except RedisUnavailable as exc:
                self._abandon_inflight()
                self.need_recovery = True
                delay = self.redis_backoff.failed(exc)  # logs the state change once
                log.debug("Redis attempt %d failed; next in %.2f s", self.redis_backoff.attempts, delay)
                stop.wait(delay)
                continue
            if burst and idle:
                return "burst done: outbox and processing list empty"

    def step(self, burst: bool = False) -> bool:
        """One turn: recovery and upkeep when due, then take a batch and complete the previous one.

        Returns True when there was nothing to do.
        """
        if self.need_recovery:
            self._settle()
            self._recover(outbox.processing(self.client), "left in the processing list")
            self.need_recovery = False
        if time.monotonic() >= self.next_sweep:
            self._settle()
            self._sweep()
        backlog_due = self.backlog_pending and self.audit.enabled and time.monotonic() >= self.pg_retry_at
        if backlog_due:
            self._settle()
            self._drain_backlog()
        self._confirm_flush()
        if self._unacked_records() >= self.settings.relay_max_unacked:
            self._settle()  # the disk is behind: stop taking until it catches up
        had_inflight = self.inflight is not None
        size = self.settings.relay_batch_size
        if self.inflight is not None and self.last_take_full:
            # Under load: take the next batch first, so that its audit overlaps this one's publish.
            raw = outbox.take(self.client, size)
            new = self._start(raw, fresh=True) if raw else None
            self._complete(self.inflight)
        else:
            if self.inflight is not None:
                # Light load: publish the batch and take what arrived meanwhile in one round trip.
                batch, self.inflight = self.inflight, None
                raw = self._complete(batch, take=size)
            else:
                block_s = WAL_FLUSH_EVERY_S if self.unacked else 0.0 if burst else BLOCK_S
                raw = outbox.take(self.client, size, block_s=block_s)
            new = self._start(raw, fresh=True) if raw else None
        self.last_take_full = len(raw) >= size
        self.inflight = new
        backlog_waits = self.backlog_pending and self.pg_down is None and self.audit.enabled
        return not raw and not had_inflight and not backlog_waits and not self.unacked

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.flusher.shutdown(wait=True)
        self.audit.close()
        self.flush_log.close()
        self.client.close()

    # --- one batch --------------------------------------------------------------------------------

    def _start(self, raw: list[bytes], *, fresh: bool) -> Batch:
        """Decode a batch (poison goes to dead letters) and hand its audit rows to the worker."""
        if fresh:
            self._crash_point("after_move")
        done = outbox.Finish(contract.KEY_PROCESSING, raw)
        items = []
        for payload in raw:
            try:
                items.append(Outgoing(payload, outbox.decode_record(payload)))
            except contract.ContractError as exc:
                self._dead_letter(done, payload, str(exc), "contract")
            except Exception as exc:  # RecursionError, OverflowError...: poison must not stop the relay
                self._dead_letter(done, payload, f"cannot decode: {type(exc).__name__}: {exc}", "decode")
        known_down = self.pg_down if time.monotonic() < self.pg_retry_at else None
        future = self.executor.submit(
            audit_batch,
            self.audit,
            items,
            skip_existing=True,  # rows are effectively once even after a crash or a duplicate enqueue
            isolate_poison=True,
            defer_on_failure=True,
            known_down=known_down,
            durable=self.durable_commits,  # normally the ack waits for the flush, not the publish
        )
        return Batch(raw, items, done, fresh, known_down is None, future)

    def _complete(self, batch: Batch, take: int = 0) -> list[bytes]:
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
            self._dead_letter(done, item.payload, reason, "audit", sqlstate=error.sqlstate, event=item.event)
        if outcome.deferred is not None:
            if batch.audit_attempted:
                self._pg_failed(outcome.deferred, done)
            reason = str(outcome.deferred)
            done.backlog = [
                outbox.backlog_entry(item.payload, published_at=published_at, reason=reason)
                for item in outcome.publishable
            ]
            done.count("audit_deferred", len(done.backlog))
            self.backlog_pending = self.backlog_pending or bool(done.backlog)
        elif batch.audit_attempted:
            self._pg_ok()
        self._count_published(done, outcome.publishable, subscribers, published_at)
        if not batch.fresh:
            done.count("recovered", len(batch.raw))
        _observe(done, "batch_bucket", "batch_sum_s", [time.monotonic() - batch.started], self.written)
        needs_flush = self.flushes_started + 1 if outcome.awaits_flush and outcome.deferred is None else 0
        self.unacked.append(Unacked(done, outcome.publishable, published_at, needs_flush, batch.fresh))
        self._ack_durable()
        return taken

    def _ack_durable(self) -> None:
        """Ack published batches, oldest first, whose audit rows PostgreSQL has flushed to disk.

        One flush usually covers several small batches: they are acked in one script call.
        """
        ready: list[Unacked] = []
        while self.unacked and self.unacked[0].needs_flush <= self.flushes_done:
            ready.append(self.unacked.popleft())
        if not ready:
            return
        if any(batch.fresh for batch in ready):
            self._crash_point("before_ack")
        outbox.finish(self.client, outbox.Finish.merged([batch.done for batch in ready]))

    def _confirm_flush(self) -> None:
        """Collect a finished WAL flush and ack what it covers; start the next one when due."""
        if self.flushing is not None:
            if not self.flushing.done():
                return
            flush, self.flushing = self.flushing, None
            try:
                flush.result()
                self.flushes_done = self.flushes_started
            except PostgresUnavailable as exc:
                failed = outbox.Finish(contract.KEY_PROCESSING, [])
                self._pg_failed(exc, failed)  # moves the waiting batches' rows to the backlog
                outbox.finish(self.client, failed)
            except AuditConfigError as exc:  # e.g. EXECUTE on pg_logical_emit_message revoked
                log.error(
                    "cannot flush PostgreSQL's WAL (%s); audit commits wait for their own fsync from now on",
                    exc,
                )
                self.durable_commits = True
                self._defer_unacked(exc)
            self._ack_durable()
        waiting = any(batch.needs_flush > self.flushes_done for batch in self.unacked)
        if waiting and time.monotonic() >= self.next_flush:
            self.next_flush = time.monotonic() + WAL_FLUSH_EVERY_S
            self.flushes_started += 1
            self.flushing = self.flusher.submit(self.flush_log.flush_wal)

    def _unacked_records(self) -> int:
        return sum(len(batch.done.batch) for batch in self.unacked)

    def _defer_unacked(self, error: TickStockPLError) -> None:
        """PostgreSQL failed while rows awaited their flush: whether they reached disk is unknown.

        Their batches were published, so their rows go to the backlog, to be written (or found
        already there) when PostgreSQL is back, and the batches can be acked.
        """
        for batch in self.unacked:
            if batch.needs_flush <= self.flushes_done:
                continue
            reason = f"audit row not confirmed on disk: {error}"
            batch.done.backlog += [
                outbox.backlog_entry(item.payload, published_at=batch.published_at, reason=reason)
                for item in batch.items
            ]
            batch.done.count("audit_deferred", len(batch.items))
            batch.needs_flush = 0
            self.backlog_pending = True

    def _count_published(
        self, done: outbox.Finish, items: Sequence[Outgoing], subscribers: Sequence[int], published_at: float
    ) -> None:
        if not items:
            return
        done.count("patterns_published", len(items))
        done.count("published_zero_subscribers", sum(1 for count in subscribers if count == 0))
        for pattern, count in Counter(str(item.event["data"]["pattern"]) for item in items).items():
            done.count(f"published:{pattern}", count)
        latencies = [max(0.0, published_at - float(item.event["timestamp"])) for item in items]
        _observe(done, "latency_bucket", "latency_sum_s", latencies, self.written)
        done.values["last_publish_time"] = repr(published_at)

    def _dead_letter(
        self,
        done: outbox.Finish,
        payload: bytes,
        reason: str,
        stage: str,
        *,
        sqlstate: str | None = None,
        event: Any = None,
        published: bool = False,
    ) -> None:
        log.warning("dead letter (%s): %s", stage, reason)
        entry = outbox.dead_letter_entry(
            payload, reason, stage, sqlstate=sqlstate, event=event, published=published
        )
        done.dead_letters.append(entry)
        done.count("dead_lettered")
        pattern = event["data"].get("pattern") if isinstance(event, dict) else None
        done.count(f"dead_lettered:{pattern if isinstance(pattern, str) else 'unknown'}")

    # --- recovery, stale entries, the audit backlog -----------------------------------------------

    def _recover(self, entries: list[bytes], where: str) -> None:
        """Process records again, oldest first; their audit rows are skipped where they exist."""
        if not entries:
            return
        log.warning("recovering %d record(s) %s", len(entries), where)
        size = self.settings.relay_batch_size
        for start in range(0, len(entries), size):
            self._complete(self._start(entries[start : start + size], fresh=False))

    def _sweep(self) -> None:
        """Recover records another (dead) relay left in the processing list longer than allowed.

        Runs with nothing of ours in flight, so everything in the list belongs to someone else.
        """
        now = time.monotonic()
        self.next_sweep = now + self.settings.relay_stale_after_s / 2
        seen: dict[bytes, float] = {}
        stale = []
        for payload in outbox.processing(self.client):
            key = hashlib.blake2b(payload, digest_size=16).digest()
            seen[key] = self.first_seen.get(key, now)
            if now - seen[key] >= self.settings.relay_stale_after_s:
                stale.append(payload)
        self.first_seen = seen
        self._recover(stale, f"stale in the processing list for over {self.settings.relay_stale_after_s:g} s")

    def _drain_backlog(self) -> None:
        """Write one chunk of deferred audit rows, marked `deferred` with their publish time."""
        entries = outbox.oldest(self.client, contract.KEY_AUDIT_BACKLOG, self.settings.relay_batch_size)
        if not entries:
            self.backlog_pending = False
            return
        done = outbox.Finish(contract.KEY_AUDIT_BACKLOG, entries)
        items, extras = [], []
        for raw in entries:
            try:
                payload, published_at, _ = outbox.parse_backlog_entry(raw)
                items.append(Outgoing(payload, outbox.decode_record(payload)))
                extras.append({"deferred": True, "published_at": published_at})
            except Exception as exc:  # a hand-edited entry must not block the backlog
                self._dead_letter(
                    done, raw, f"unreadable audit backlog entry: {exc}", "decode", published=True
                )
        outcome = self.executor.submit(
            audit_batch, self.audit, items, skip_existing=True, extra_details=extras, isolate_poison=True,
            defer_on_failure=True,
        ).result()  # fmt: skip
        if outcome.deferred is not None:  # still down: the entries stay, only the failure is counted
            failed = outbox.Finish(contract.KEY_AUDIT_BACKLOG, [])
            self._pg_failed(outcome.deferred, failed)
            outbox.finish(self.client, failed)
            return
        self._pg_ok()
        for item, error in outcome.rejected:
            reason = f"deferred audit row refused by PostgreSQL ({error.sqlstate}): {error}"
            self._dead_letter(
                done, item.payload, reason, "audit", sqlstate=error.sqlstate, event=item.event, published=True
            )
        done.count("audit_backlog_written", len(outcome.publishable))
        outbox.finish(self.client, done)
        log.info("wrote %d deferred audit row(s)", len(outcome.publishable))

    # --- PostgreSQL state -------------------------------------------------------------------------

    def _pg_failed(self, error: TickStockPLError, done: outbox.Finish) -> None:
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
        done.count("audit_failures")
        self._defer_unacked(error)

    def _pg_ok(self) -> None:
        if self.pg_down is not None:
            self.pg_down = None
            self.pg_retry_at = 0.0
            self.pg_backoff.succeeded()

    # --- in-flight bookkeeping --------------------------------------------------------------------

    def _settle(self) -> None:
        """Complete the batch in flight and ack every published one, so that nothing of ours is half done."""
        if self.inflight is not None:
            batch, self.inflight = self.inflight, None
            self._complete(batch)
        while self.unacked:
            self._confirm_flush()
            if self.flushing is not None:
                self.flushing.exception()  # wait for it; _confirm_flush collects it next turn
            elif self.unacked:
                time.sleep(max(0.0, self.next_flush - time.monotonic()))

    def _abandon_inflight(self) -> None:
        """After a Redis error: forget what is in flight (it stays in the processing list for recovery)."""
        if self.inflight is not None:
            batch, self.inflight = self.inflight, None
            batch.future.exception()  # let the worker finish with the connection first
        if self.flushing is not None:
            self.flushing.exception()
            self.flushing = None
        self.unacked.clear()

    def _finish_inflight(self) -> str:
        try:
            self._settle()
        except RedisUnavailable as exc:
            self._abandon_inflight()
            return f" (batch in flight left for recovery: {exc})"
        return ""

    def _crash_point(self, step: str) -> None:
        """For fault tests: TICKSTOCKPL_CRASH_AT=<step> kills the process with SIGKILL right here."""
        if self.settings.relay_crash_at == step:
            log.warning("crash point %s: SIGKILL", step)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def _observe(
    done: outbox.Finish, prefix: str, sum_field: str, samples: Sequence[float], written: set[str]
) -> None:
    """Add samples (seconds) to a cumulative histogram in KEY_STATS.

    One HINCRBY per bucket that changed: a bucket below the smallest sample gets nothing once this
    relay has written it (the first batch writes every bucket, so readers see each one from then on).
    """
    ordered = sorted(samples)
    smallest = ordered[0] if ordered else None
    for le, name in zip(LATENCY_BUCKETS_S, _BUCKET_FIELDS[prefix], strict=True):
        if smallest is not None and smallest <= le:
            done.count(name, bisect.bisect_right(ordered, le))
        elif name in written:
            continue
        else:
            done.count(name, 0)
        written.add(name)
    done.count(f"{prefix}:+Inf", len(ordered))
    done.floats[sum_field] = done.floats.get(sum_field, 0.0) + sum(ordered)


def run(settings: Settings, stop: threading.Event | None = None, *, burst: bool = False) -> int:
    """Run the relay until `stop` is set (or, with `burst`, until the outbox is empty); exit code."""
    stop = stop if stop is not None else threading.Event()
    relay = Relay(settings)
    log.info(
        "relay starting: redis %s, audit %s, batch %d",
        settings.redis_target,
        settings.postgres_target if settings.audit_enabled else "disabled",
        settings.relay_batch_size,
    )
    code = RET_OK
    try:
        reason = relay.loop(stop, burst)
    except RedisConfigError as exc:  # a wrong password or ACL: restarting will not help, an operator must act
        log.error("relay cannot use Redis at %s: %s", settings.redis_target, exc)
        reason, code = f"Redis refused us: {exc}", RET_CONFIG
    except Exception as exc:  # a bug: say so, leave the records for recovery, let supervisord restart us
        log.exception("relay failed")
        reason, code = f"unexpected error: {exc!r}", RET_FAILED
    finally:
        relay.close()
    log.info("relay stopped: %s", reason)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tickstockpl.services.relay", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--burst", action="store_true", help="exit once the outbox is empty")
    args = parser.parse_args(argv)
    tune_gc()  # process-wide, hence here and not in run(), which tests call in their own process
    return service_main("relay", lambda settings, stop: run(settings, stop, burst=args.burst))


if __name__ == "__main__":
    sys.exit(main())
