"""The heartbeat process: tells TickStockAppV2 the producer is alive, and how well.

Every `heartbeat_interval_s` (10 s; the consumer calls >= 60 s offline, contract §5.1) it SETs
`tickstock:producer:heartbeat` and `tickstockpl:heartbeat` to `repr(time.time())` with a TTL, so a
dead producer's key disappears. Every `alive_row_interval_s` (60 s; the consumer's test wants a
50-70 s average over any 2 minutes) it writes a PRODUCER_ALIVE row (event_type `heartbeat`) with the
stack's figures from KEY_STATS. When a stack run begins it writes one PRODUCER_STARTED row, with its
own event_type, so it never counts as a heartbeat. It publishes `system_health` on
`tickstock.health.status` every `health_interval_s` (30 s) and at once on every status change.

The rows keep their cadence across restarts: each PRODUCER_ALIVE row's time goes to
KEY_LAST_ALIVE_ROW, and a restarted heartbeat writes its first row one interval after it (at once if
that is past), not at once. Without Redis at start it waits a whole interval, which is never too soon.

A stack run begins when this process starts and finds no heartbeat key (the previous run stopped
cleanly, or has been dead longer than the TTL); a restart after a crash, while the key is still
alive, continues the run. `started_at` in KEY_STATS is the run's start and `uptime_seconds` counts
from it. Either store being down is reported (status degraded) and retried; nothing is faked later:
a PRODUCER_ALIVE row that could not be written is skipped, not backfilled.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import threading
import time
from typing import Any

import redis

from tickstockpl import contract, health
from tickstockpl.audit import AuditLog
from tickstockpl.backoff import Backoff
from tickstockpl.errors import AuditConfigError, AuditDataError, RedisConfigError, TickStockPLError
from tickstockpl.exitcodes import RET_CONFIG, RET_FAILED, RET_OK
from tickstockpl.lifecycle import service_main
from tickstockpl.settings import Settings
from tickstockpl.stores import postgres_errors, redis_errors

PERSISTENCE_EVERY_S = 60.0  # how often the Redis persistence is read again
log = logging.getLogger("tickstockpl.heartbeat")

HEALTH_CHANGES_KEPT = 100  # status changes kept in KEY_HEALTH_CHANGES for operators


def _next_slot(previous: float, interval: float, now: float) -> float:
    """Fixed-rate schedule (no drift); after a long stall skip the missed slots rather than burst."""
    due = previous + interval
    return due if due > now else now + interval


class Heartbeat:
    """The state of one heartbeat process; `run()` drives it. Store errors never escape a method."""

    def __init__(self, settings: Settings, *, thresholds: health.Thresholds | None = None) -> None:
        self.settings = settings
        self.thresholds = thresholds or health.Thresholds.from_settings(settings)
        timeout = max(0.5, min(5.0, settings.heartbeat_interval_s))
        self.client = health.checking_client(settings, timeout_s=timeout)
        self.audit = AuditLog(settings)
        self.process_started = time.time()
        self.started_at: float | None = None  # the stack run's start, once Redis has told us
        self.new_run = False
        self.startup_row_due = False
        self.startup_row_failed = False
        self.status: str | None = None
        self.previous_status: str | None = None
        self.status_since = self.process_started
        self.unpublished_change = False  # a status change Redis was not there to hear
        self.redis_backoff = Backoff("Redis", cap_s=max(0.2, settings.heartbeat_interval_s))
        self.retry_in = settings.heartbeat_interval_s
        self.postgres_backoff = Backoff("PostgreSQL")
        self.last_report: health.HealthReport | None = None
        self.last_stats: health.StackStats | None = None
        self.refused: RedisConfigError | None = None  # Redis refused our credentials or a command
        self.persistence_warned: float | None = None  # monotonic time of the last persistence warning
        self.persistence: tuple[float, health.RedisPersistence] | None = None  # (when read, what)

    # --- the Redis key ---------------------------------------------------------------------------
    def beat(self) -> bool:
        """SET both heartbeat keys (the same value, with the TTL); join or begin the stack run first."""
        try:
            if self.started_at is None:
                self._join_or_begin_run()
            now = time.time()
            value = repr(now)
            with redis_errors("SET heartbeat"):
                pipe = self.client.pipeline(transaction=True)
                pipe.set(contract.KEY_HEARTBEAT, value, ex=self.settings.heartbeat_ttl_s)
                pipe.set(contract.KEY_HEARTBEAT_ALIAS, value, ex=self.settings.heartbeat_ttl_s)
                # Put the run's start back if the stats hash was lost (a flushed or fresh Redis).
                pipe.hsetnx(contract.KEY_STATS, contract.STAT_STARTED_AT, repr(self.started_at))
                pipe.execute()
        except RedisConfigError as exc:  # a wrong password or ACL: retrying cannot help
            self.refused = exc
            return False
        except TickStockPLError as exc:
            self.retry_in = min(self.settings.heartbeat_interval_s, self.redis_backoff.failed(exc))
            return False
        self.redis_backoff.succeeded()
        return True

    def _join_or_begin_run(self) -> None:
        """No live heartbeat key: a new stack run starting now (when this process started)."""
        with redis_errors("joining the stack run"):
            alive = self.client.exists(contract.KEY_HEARTBEAT)
            if alive:
                self.client.hsetnx(contract.KEY_STATS, contract.STAT_STARTED_AT, repr(self.process_started))
            else:
                self.client.hset(contract.KEY_STATS, contract.STAT_STARTED_AT, repr(self.process_started))
            started = self.client.hget(contract.KEY_STATS, contract.STAT_STARTED_AT)
        self.started_at = float(started) if started else self.process_started
        self.new_run = not alive
        self.startup_row_due = self.new_run
        if self.new_run:
            log.info("stack run begins (started_at=%.3f)", self.started_at)
        else:
            log.info("heartbeat restarted inside a running stack (started_at=%.3f)", self.started_at)

    # --- audit rows ------------------------------------------------------------------------------
    def _write_row(
        self, checkpoint: str, details: dict[str, Any], event_type: str = contract.EVENT_HEARTBEAT
    ) -> bool:
        try:
            self.audit.log_producer_row(checkpoint, details, event_type=event_type)
        except AuditDataError as exc:  # cannot happen with our own small rows; never retry it
            log.error("%s row rejected by PostgreSQL: %s", checkpoint, exc)
            return False
        except TickStockPLError as exc:
            self.postgres_backoff.failed(exc)
            return False
        self.postgres_backoff.succeeded()
        return True

    def write_startup_row(self) -> None:
        """PRODUCER_STARTED once per stack run; if Postgres was down at start, later, marked deferred."""
        if not self.startup_row_due or self.started_at is None:
            return
        details: dict[str, Any] = {
            "started_at": self.started_at,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "heartbeat_interval_s": self.settings.heartbeat_interval_s,
            "alive_row_interval_s": self.settings.alive_row_interval_s,
        }
        if self.startup_row_failed:
            details["deferred"] = True
            details["written_after_s"] = round(time.time() - self.started_at, 3)
        if self._write_row(contract.CHECKPOINT_PRODUCER_STARTED, details, contract.EVENT_PRODUCER_STARTED):
            self.startup_row_due = False
            log.info("startup row written")
        else:
            self.startup_row_failed = True

    def write_alive_row(self) -> bool:
        """PRODUCER_ALIVE with the stack's figures, read now; unknown figures are null, never guessed."""
        now = time.time()
        stats = self._read_stats()
        details: dict[str, Any] = {
            "patterns_detected": None if stats is None else stats.patterns_detected,
            "uptime_seconds": None if self.started_at is None else round(max(0.0, now - self.started_at), 3),
            "last_pattern_time": None if stats is None else stats.last_pattern_time,
            "status": self.status,
        }
        if stats is None:
            details["redis"] = "down"
        if not self._write_row(contract.CHECKPOINT_PRODUCER_ALIVE, details):
            return False
        self._remember_alive_row(now)
        return True

    def _remember_alive_row(self, written_at: float) -> None:
        """The row's time, for a restarted heartbeat to continue the schedule from (`alive_row_delay`)."""
        ttl_s = max(1, math.ceil(2 * self.settings.alive_row_interval_s))
        try:
            with redis_errors("SET the last alive row"):
                self.client.set(contract.KEY_LAST_ALIVE_ROW, repr(written_at), ex=ttl_s)
        except TickStockPLError:
            pass  # Redis is down: a restart then waits a whole interval, never too little

    def alive_row_delay(self) -> float:
        """Seconds until this process's first PRODUCER_ALIVE row: one interval after the last row any
        heartbeat wrote (0 when that is past or there is none); a whole interval if Redis cannot say."""
        interval = self.settings.alive_row_interval_s
        try:
            with redis_errors("reading the last alive row"):
                raw = self.client.get(contract.KEY_LAST_ALIVE_ROW)
        except TickStockPLError:
            return interval
        now = time.time()
        last, _ = health.parse_heartbeat(health.as_text(raw), now)  # the same repr(time.time()) format
        if last is None:
            return 0.0
        return min(interval, max(0.0, last + interval - now))

    def _read_stats(self) -> health.StackStats | None:
        try:
            self.last_stats = health.read_stats(self.client)
        except TickStockPLError:
            return None
        return self.last_stats

    # --- health ----------------------------------------------------------------------------------
    def evaluate(self) -> health.HealthReport:
        """Probe both stores and read the stack's state; remember status changes."""
        redis_error: Exception | None = None
        stats = depths = programs = persistence = None
        try:
            health.ping_redis(self.client)
            stats = health.read_stats(self.client)
            depths = health.queue_depths(self.client)
            programs = health.read_programs(self.client)
            persistence = self._read_persistence()
            self._warn_if_at_risk(persistence, depths.audit_backlog)
        except TickStockPLError as exc:
            redis_error = exc
        postgres_error: Exception | None = None
        if self.audit.enabled:
            postgres_error = self._probe_postgres()
        now = time.time()
        report = health.assess(
            redis_component=health.store_component(redis_error),
            postgres_component=health.store_component(postgres_error, disabled=not self.audit.enabled),
            stats=stats,
            depths=depths,
            now=now,
            thresholds=self.thresholds,
            programs=programs,
            persistence=persistence,
        )
        if report.status != self.status:
            log.warning(
                "health %s -> %s%s",
                self.status or "(start)",
                report.status,
                f": {', '.join(report.reasons)}" if report.reasons else "",
            )
            self.previous_status, self.status, self.status_since = self.status, report.status, now
            self.unpublished_change = True
        self.last_report = report
        return report

    def _read_persistence(self) -> health.RedisPersistence:
        """Re-read at most once a minute: it rarely changes, and under an ACL that forbids CONFIG
        and INFO every read is a refusal in Redis's ACL LOG."""
        now = time.monotonic()
        if self.persistence is None or now - self.persistence[0] > PERSISTENCE_EVERY_S:
            self.persistence = (now, health.read_persistence(self.client))
        return self.persistence[1]

    def _warn_if_at_risk(self, persistence: health.RedisPersistence, audit_backlog: int) -> None:
        """WARNING whenever deferred audit rows live only in a Redis that a restart would empty (at
        most once a minute), and once at start for any Redis without persistence."""
        risk = persistence.risk(audit_backlog) if persistence.at_risk else ""
        now = time.monotonic()
        if not risk or (audit_backlog == 0 and self.persistence_warned is not None):
            return
        if self.persistence_warned is not None and now - self.persistence_warned < 60:
            return
        log.warning("%s", risk)
        self.persistence_warned = now

    def _probe_postgres(self) -> Exception | None:
        """Can the audit path take a row? Connection, then the function (the consumer may drop it)."""
        try:
            conn = self.audit.connect()
            with postgres_errors():
                try:
                    with conn.cursor() as cursor:
                        present = health.audit_function_present(cursor)
                finally:
                    conn.rollback()  # never leave a transaction open: a row's timestamp is its start
        except TickStockPLError as exc:
            self.audit.close()
            return exc
        if not present:
            return AuditConfigError("log_integration_event is missing")
        return None

    def publish_health(self, *, changed: bool) -> bool:
        """PUBLISH the current status; also kept in KEY_HEALTH, and in KEY_HEALTH_CHANGES if it changed."""
        report = self.last_report
        if report is None:
            return False
        now = time.time()
        event = health.health_event(
            report,
            now=now,
            previous_status=self.previous_status,
            status_since=self.status_since,
            uptime_s=None if self.started_at is None else now - self.started_at,
        )
        event["changed"] = changed
        payload = json.dumps(event, allow_nan=False, separators=(",", ":"))
        try:
            with redis_errors("PUBLISH health"):
                pipe = self.client.pipeline(transaction=True)
                pipe.publish(contract.CHANNEL_HEALTH, payload)
                pipe.set(contract.KEY_HEALTH, payload, ex=self.settings.heartbeat_ttl_s)
                if changed:
                    pipe.lpush(contract.KEY_HEALTH_CHANGES, payload)
                    pipe.ltrim(contract.KEY_HEALTH_CHANGES, 0, HEALTH_CHANGES_KEPT - 1)
                pipe.execute()
        except TickStockPLError:
            return False  # Redis is down: the status is in our log; the next change event will tell
        if changed:
            self.unpublished_change = False
        return True

    # --- shutdown --------------------------------------------------------------------------------
    def close(self, *, clean_stop: bool) -> None:
        """On a requested stop, remove the heartbeat at once (as arq does) and mark the run stopped."""
        if clean_stop:
            try:
                with redis_errors("removing the heartbeat"):
                    pipe = self.client.pipeline(transaction=True)
                    pipe.delete(contract.KEY_HEARTBEAT, contract.KEY_HEARTBEAT_ALIAS, contract.KEY_HEALTH)
                    pipe.hset(contract.KEY_STATS, contract.STAT_STOPPED_AT, repr(time.time()))
                    pipe.execute()
            except TickStockPLError as exc:
                log.warning("could not remove the heartbeat key (%s); it expires by its TTL", exc)
        self.audit.close()
        try:
            self.client.close()
        except redis.RedisError:
            pass


def run(settings: Settings, stop: threading.Event | None = None, *, burst: bool = False) -> int:
    """The heartbeat loop until `stop` is set; `burst` does every job that is due once, then exits."""
    stop = stop or threading.Event()
    beat = Heartbeat(settings)
    log.info(
        "heartbeat starting: key every %.3g s (TTL %d s), PRODUCER_ALIVE every %.3g s, health every %.3g s",
        settings.heartbeat_interval_s,
        settings.heartbeat_ttl_s,
        settings.alive_row_interval_s,
        settings.health_interval_s,
    )
    if settings.heartbeat_interval_s > 20 or settings.heartbeat_ttl_s <= settings.heartbeat_interval_s:
        log.warning("heartbeat interval should be <= 20 s and below the TTL (contract §5.1)")
    reason = "stopped on request"
    clean = True
    first_alive_in = beat.alive_row_delay()
    if first_alive_in > 0:
        log.info("first PRODUCER_ALIVE row in %.1f s, one interval after the last one", first_alive_in)
    start = time.monotonic()
    next_beat = next_health = start
    next_alive = start + first_alive_in
    try:
        while True:
            now = time.monotonic()
            if now >= next_beat:
                ok = beat.beat()
                if beat.refused is not None:
                    log.error("heartbeat cannot use Redis at %s: %s", settings.redis_target, beat.refused)
                    reason, clean = f"Redis refused us: {beat.refused}", False
                    return RET_CONFIG
                next_beat = now + (settings.heartbeat_interval_s if ok else beat.retry_in)
                beat.write_startup_row()
                beat.evaluate()
                if beat.unpublished_change and beat.publish_health(changed=True):
                    next_health = now + settings.health_interval_s  # a change event is also this slot's
            if now >= next_alive:
                beat.write_alive_row()
                next_alive = _next_slot(next_alive, settings.alive_row_interval_s, now)
            if now >= next_health:
                beat.publish_health(changed=False)
                next_health = _next_slot(next_health, settings.health_interval_s, now)
            if burst:
                reason, clean = "burst done: every job ran once", False
                break
            if stop.wait(max(0.0, min(next_beat, next_alive, next_health) - time.monotonic())):
                break
    except Exception:
        log.exception("heartbeat failed unexpectedly")
        reason, clean = "unexpected error", False
        return RET_FAILED
    finally:
        beat.close(clean_stop=clean)
        log.info("heartbeat stopped: %s", reason)
    return RET_OK


def main() -> int:
    return service_main("heartbeat", run)


if __name__ == "__main__":
    sys.exit(main())
