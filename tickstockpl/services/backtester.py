"""The backtester process: TickStockAppV2's backtest jobs in, progress and exactly one result out.

Single-threaded on purpose: the loop reads the job and cancel channels, queues accepted jobs in Redis
(backtest/queue.py), and runs the oldest one. While a job runs, the engine asks `keep_going()` between
symbols; that call reads the channels too, so a cancel stops the job within one symbol and new jobs
are queued at once. Every message is decoded by one function per channel (`parse_job`,
`inbound.decode_cancel`), size- and depth-limited, before anything is queued or logged; a bad job gets
one `failed` result naming the problem (when it has a job_id we can echo) and the loop carries on.
Rejections are counted in the stats hash (`jobs_rejected`, `jobs_rejected:<reason>`, `cancels_rejected`,
`cancels_rejected:<reason>`) and logged at most once per reason every 10 s. A job that crashed the
process MAX_JOB_ATTEMPTS times is moved to the poison list with a failed result (backtest/queue.py).
SIGTERM stops the job in flight without a result; it stays in the running list and is run again at
the next start (contract §2.4, §3.1, Appendix B item 13).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

import redis

from tickstockpl import contract, inbound
from tickstockpl.backoff import Backoff
from tickstockpl.backtest import Cancelled, Job, JobError, job_id_of, parse_job, run_job
from tickstockpl.backtest.queue import JobQueue
from tickstockpl.backtest.store import PostgresHistory
from tickstockpl.contract import ContractError
from tickstockpl.errors import AuditConfigError, RedisConfigError, RedisUnavailable, StoreUnavailable
from tickstockpl.exitcodes import RET_CONFIG, RET_OK
from tickstockpl.lifecycle import service_main
from tickstockpl.logs import SampledLog, escape
from tickstockpl.settings import Settings
from tickstockpl.stores import redis_client

log = logging.getLogger(__name__)
PROGRESS_INTERVAL_S = 0.25  # at most one progress message per this, besides the first and the last
POLL_S = 0.2
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
# Refusals, not outages (AuthenticationError is a ConnectionError, so these are caught first).
REDIS_REFUSALS = (
    redis.AuthenticationError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.AuthorizationError,
)


class Backtester:
    """One connection set and the handlers; `step()` is one turn of the loop."""

    def __init__(self, settings: Settings, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.redis = redis_client(settings)
        self.queue = JobQueue(self.redis)
        self.history = PostgresHistory(settings.for_backtest())  # its own role: historical_bars only
        self.pubsub: Any = None
        self.current: str | None = None  # job_id running now
        self.cancel_current = False
        self.sampled = SampledLog(log)

    def connect(self) -> None:
        """Subscribe (again) and put back what a previous run left in flight."""
        if self.pubsub is not None:
            return
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(contract.CHANNEL_BACKTEST_JOBS, contract.CHANNEL_BACKTEST_CANCEL)
        self.pubsub = pubsub
        recovered = self.queue.recover()
        queued, _ = self.queue.depth()
        log.info(
            "listening on %s and %s; %d job(s) queued (%d recovered from a previous run)",
            contract.CHANNEL_BACKTEST_JOBS,
            contract.CHANNEL_BACKTEST_CANCEL,
            queued,
            recovered,
        )

    def disconnect(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except REDIS_ERRORS:
                pass
        self.pubsub = None

    def close(self) -> None:
        self.disconnect()
        self.history.close()
        self.redis.close()

    def poll(self, timeout: float) -> None:
        """Handle every message that arrives within `timeout` (returns early once the line is quiet)."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            wait = min(POLL_S, max(0.0, deadline - time.monotonic()))
            message = self.pubsub.get_message(timeout=wait)
            if message is None:
                if time.monotonic() >= deadline:
                    return
                continue
            if message.get("type") != "message":
                continue
            self.handle(message["channel"], message["data"])
            deadline = min(deadline, time.monotonic() + 0.01)  # drain what is pending, then go on

    def handle(self, channel: bytes, raw: bytes) -> None:
        """One message; a bug in handling it is logged, never fatal (store outages still propagate)."""
        try:
            if channel == contract.CHANNEL_BACKTEST_CANCEL.encode():
                self.on_cancel(raw)
            else:
                self.on_job(raw)
        except (StoreUnavailable, *REDIS_ERRORS):
            raise
        except Exception:  # one message must never stop the service
            log.exception("a message on %s could not be handled; skipped", escape(channel))

    def reject(self, kind: str, exc: inbound.Rejected, job_id: str | None) -> None:
        """Count a rejected message by reason and log it (sampled, escaped, short)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(contract.KEY_STATS, f"{kind}_rejected", 1)
            pipe.hincrby(contract.KEY_STATS, f"{kind}_rejected:{exc.reason}", 1)
            pipe.execute()
        self.sampled.warning(
            f"{kind}:{exc.reason}",
            "%s rejected (%s), job_id %s: %s",
            kind[:-1],
            exc.reason,
            escape(job_id or "unknown"),
            exc,
        )

    def on_job(self, raw: bytes) -> None:
        try:
            job = parse_job(raw)
        except JobError as exc:
            job_id = job_id_of(raw)
            self.reject("jobs", exc, job_id)
            if job_id is not None and not self.queue.is_done(job_id):
                self.finish(job_id, contract.BACKTEST_FAILED, error=str(exc), quiet=True)
            return
        if self.queue.is_done(job.job_id):
            log.warning("job %s already has its result; ignoring the repeat", job.job_id)
            return
        self.queue.accept(raw)
        log.info("job %s queued", job.job_id)

    def on_cancel(self, raw: bytes) -> None:
        try:
            job_id = inbound.decode_cancel(raw)
        except inbound.Rejected as exc:
            self.reject("cancels", exc, None)
            return
        self.queue.mark_cancelled(job_id)
        if job_id == self.current:
            self.cancel_current = True
            log.info("job %s: cancel received, stopping", job_id)
        elif not self.queue.is_done(job_id) and self.queue.take_queued(job_id) is not None:
            self.finish(job_id, contract.BACKTEST_CANCELLED)

    def finish(
        self,
        job_id: str,
        status: str,
        results: dict[str, Any] | None = None,
        error: str | None = None,
        raw: bytes | None = None,
        progressed: bool = False,
        quiet: bool = False,
    ) -> None:
        """The job's one result (after a first progress message, if it had none), atomically marked done.
        A result the contract refuses (never expected) moves the job aside instead of raising.
        `quiet`: no log line of its own (a rejected job is logged, sampled, by `reject`)."""
        if error is not None:
            error = escape(error, contract.MAX_ERROR_LEN)
        try:
            if not progressed:
                self.publish_progress(job_id, 0.0, None)
            result = contract.build_backtest_result(job_id, status, results, error=error)
        except ContractError as exc:
            log.error("job %s: its %s result breaks the contract (%s); moved aside", job_id, status, exc)
            if raw is not None:
                self.queue.bury(raw, job_id, f"result refused by the contract: {exc}")
            return
        self.queue.finish(job_id, result, raw)
        if not quiet:
            log.info("job %s %s%s", job_id, status, f": {error}" if error else "")

    def publish_progress(
        self, job_id: str, fraction: float, symbol: str | None, eta: float | None = None
    ) -> None:
        message = contract.build_backtest_progress(
            job_id, fraction, current_symbol=symbol, estimated_completion=eta
        )
        self.redis.publish(contract.CHANNEL_BACKTEST_PROGRESS, contract.encode(message))

    def run_next(self) -> bool:
        """Run the oldest queued job to its result; False when the queue is empty."""
        raw = self.queue.claim()
        if raw is None:
            return False
        # Parsed once here: the queue holds the raw message (a restart loses no job), which an
        # older version may have queued before it checked what it checks now.
        job: Job | JobError
        try:
            job = parse_job(raw)
            job_id: str | None = job.job_id
        except JobError as exc:
            job, job_id = exc, job_id_of(raw)
        if job_id is None:  # queued by an older version that did not check job_ids
            log.error("a queued job has no usable job_id; moved aside: %s", escape(raw))
            self.queue.bury(raw, "", "no usable job_id")
        elif self.queue.is_done(job_id):
            self.queue.drop(raw)
        elif (attempts := self.queue.attempt(job_id)) > contract.MAX_JOB_ATTEMPTS:
            reason = f"the job was started {attempts - 1} times and never finished; moved aside"
            log.error("job %s: %s", job_id, reason)
            result = contract.build_backtest_result(job_id, contract.BACKTEST_FAILED, error=reason)
            self.queue.bury(raw, job_id, reason, result)
        elif self.queue.is_cancelled(job_id):
            self.finish(job_id, contract.BACKTEST_CANCELLED, raw=raw)
        elif isinstance(job, JobError):
            self.finish(job_id, contract.BACKTEST_FAILED, error=str(job), raw=raw)
        else:
            self._run(job, raw)
        return True

    def _run(self, job: Job, raw: bytes) -> None:
        job_id = job.job_id
        self.current, self.cancel_current = job_id, False
        progress = _Progress(self, job_id)
        try:
            outcome = run_job(job, self.history, progress, self.keep_going)
        except Cancelled:
            if self.cancel_current:
                self.finish(job_id, contract.BACKTEST_CANCELLED, raw=raw, progressed=True)
            else:
                self.queue.attempt_ended(job_id)
                log.info("job %s: stopping on request; it runs again at the next start", job_id)
        except JobError as exc:
            self.finish(job_id, contract.BACKTEST_FAILED, error=str(exc), raw=raw, progressed=progress.sent)
        except AuditConfigError as exc:
            error = f"history database refused the query: {exc}"
            self.finish(job_id, contract.BACKTEST_FAILED, error=error, raw=raw, progressed=progress.sent)
        except StoreUnavailable:
            self.queue.release(raw, job_id)  # run it again once PostgreSQL is back
            raise
        except REDIS_ERRORS:
            raise  # the job stays in the running list; recovered on reconnect
        except Exception as exc:  # a bug must not take the service (and every later job) down
            log.exception("job %s: unexpected error", job_id)
            error = f"internal error: {type(exc).__name__}: {exc}"
            self.finish(job_id, contract.BACKTEST_FAILED, error=error, raw=raw, progressed=progress.sent)
        else:
            self.finish(job_id, contract.BACKTEST_COMPLETED, outcome.results, raw=raw, progressed=True)
        finally:
            self.current = None

    def keep_going(self) -> bool:
        """Between symbols: read the channels (pausing `backtest_throttle_s` if set), then decide."""
        self.poll(max(0.0, self.settings.backtest_throttle_s))
        return not (self.cancel_current or self.stop.is_set())


class _Progress:
    """Progress messages for one job: the first, the last, and at most one per PROGRESS_INTERVAL_S."""

    def __init__(self, service: Backtester, job_id: str) -> None:
        self.service, self.job_id = service, job_id
        self.started = time.time()
        self.last = 0.0
        self.sent = False

    def __call__(self, fraction: float, symbol: str | None) -> None:
        now = time.monotonic()
        if self.sent and fraction < 1.0 and now - self.last < PROGRESS_INTERVAL_S:
            return
        elapsed = time.time() - self.started
        eta = self.started + elapsed / fraction if fraction > 0 else None
        self.service.publish_progress(self.job_id, fraction, symbol, eta)
        self.sent, self.last = True, now


def run(settings: Settings, stop: threading.Event | None = None, *, burst: bool = False) -> int:
    """Serve jobs until `stop` is set (or, with `burst`, until the queue and the channels are quiet)."""
    stop = stop or threading.Event()
    service = Backtester(settings, stop)
    backoff = Backoff("Redis/PostgreSQL")
    reason = "stopping on request"
    try:
        while not stop.is_set():
            try:
                service.connect()
                service.poll(POLL_S)
                ran = service.run_next()
                backoff.succeeded()
            except (RedisConfigError, *REDIS_REFUSALS) as exc:  # wrong password or ACL: an operator must act
                log.error("backtester cannot use Redis at %s: %s", settings.redis_target, exc)
                return RET_CONFIG
            except (RedisUnavailable, *REDIS_ERRORS) as exc:
                service.disconnect()  # resubscribe, and recover the job in flight, once Redis is back
                stop.wait(backoff.failed(exc))
                continue
            except StoreUnavailable as exc:  # PostgreSQL: the job was requeued; keep taking messages
                try:
                    service.poll(backoff.failed(exc))
                except REDIS_ERRORS:
                    service.disconnect()
                continue
            if burst and not ran:
                reason = "burst done: queue empty"
                break
        log.info(reason)
    finally:
        service.close()
    return RET_OK


def main() -> int:
    return service_main("backtester", run)


if __name__ == "__main__":
    sys.exit(main())
