"""Health of the producer stack, read from its stores at call time.

Shared by the heartbeat service (its `system_health` events), `tickstockpl doctor` (the checklist)
and the exporter (metrics at scrape time), so all three agree on what "fresh", "lagging", "backlog"
and "orphan" mean. Readers take an open Redis client or PostgreSQL cursor and wrap driver errors into
ours (RedisUnavailable, RedisConfigError, PostgresUnavailable, AuditConfigError); `assess()` turns
readings into a status without touching any store.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from tickstockpl import contract
from tickstockpl.audit import LOG_NEW_FUNCTION
from tickstockpl.errors import AuditConfigError, RedisConfigError
from tickstockpl.settings import Settings
from tickstockpl.stores import PgConnection, PgCursor, postgres_errors, redis_client, redis_errors

# Overall status, as the consumer's own fixtures spell it (§2.5).
HEALTHY: Final = "healthy"
DEGRADED: Final = "degraded"
DOWN: Final = "down"
# Component states.
OK: Final = "ok"
UNAVAILABLE: Final = "down"  # the store does not answer
MISCONFIGURED: Final = "error"  # it answers but refuses us: wrong password, function or grant missing
DISABLED: Final = "disabled"  # audit switched off by configuration
STALE: Final = "stale"
BACKLOG: Final = "backlog"
PRESENT: Final = "present"
UNKNOWN: Final = "unknown"
FAILING: Final = "failing"  # a supervised program is FATAL or restart-looping

# A heartbeat further in the future than this is not epoch seconds (milliseconds, or a broken clock).
HEARTBEAT_FUTURE_SKEW_S: Final = 300.0
# The function as the consumer declares it (§4.2); to_regprocedure() takes the argument types only.
AUDIT_FUNCTION_SIGNATURE: Final = (
    "log_integration_event(uuid, varchar, varchar, varchar, varchar, varchar, varchar,"
    " numeric, integer, jsonb)"
)
AUDIT_TABLE: Final = "integration_events"
FLOW_VIEW: Final = "pattern_flow_analysis"


# supervisord's view of every program (tickstockpl/programwatch.py): hash of group:name -> JSON
# {state, since, failures: [epoch s]}. A program is failing when FATAL, or restart-looping: this
# many failures (unexpected exits, failed starts) within the window.
KEY_PROGRAMS: Final = contract.PRODUCER_PREFIX + "programs"
PROGRAM_FAILURE_WINDOW_S: Final = 600.0
PROGRAM_MAX_FAILURES: Final = 3


# --- Redis ------------------------------------------------------------------------------------------
def checking_client(settings: Settings, *, timeout_s: float = 3.0) -> redis.Redis:
    """A client with a health check's shorter timeout (it fails at once, as every client of ours does)."""
    return redis_client(settings, timeout_s=timeout_s)


def ping_redis(client: redis.Redis) -> float:
    """PING; returns the round trip in milliseconds."""
    started = time.perf_counter()
    with redis_errors("PING"):
        client.ping()
    return (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class HeartbeatReading:
    """The heartbeat key as the consumer reads it: `float(value)` epoch seconds (§5.1)."""

    raw: str | None  # the stored text, None when the key is absent
    timestamp: float | None
    age_s: float | None
    ttl_s: int | None  # seconds left before the key expires; None when absent or without TTL
    alias_raw: str | None  # tickstockpl:heartbeat, which should hold the same value
    error: str | None  # why the value is unusable; None when it parses as recent epoch seconds

    def problem(self, max_age_s: float = contract.HEARTBEAT_MAX_AGE_S) -> str | None:
        """Why the consumer would call the producer offline, or None when it is fresh."""
        if self.error is not None:
            return self.error
        assert self.age_s is not None
        if self.age_s > max_age_s:
            return f"stale: {self.age_s:.1f} s old (limit {max_age_s:g} s)"
        return None

    def fresh(self, max_age_s: float = contract.HEARTBEAT_MAX_AGE_S) -> bool:
        return self.problem(max_age_s) is None


def parse_heartbeat(raw: str | None, now: float) -> tuple[float | None, str | None]:
    """(epoch seconds, None) for a usable value, else (value or None, why it is unusable)."""
    if raw is None:
        return None, "absent"
    try:
        value = float(raw)
    except ValueError:
        return None, f"not a float of epoch seconds: {raw[:40]!r}"
    if not math.isfinite(value) or value <= 0:
        return None, f"not a float of epoch seconds: {raw[:40]!r}"
    if value > now + HEARTBEAT_FUTURE_SKEW_S:
        unit = " (milliseconds, not seconds?)" if value > now * 100 else ""
        return value, f"{value - now:.0f} s in the future{unit}"
    return value, None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_heartbeat(client: redis.Redis, now: float | None = None) -> HeartbeatReading:
    """Read both heartbeat keys and the TTL in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.get(contract.KEY_HEARTBEAT)
    pipe.ttl(contract.KEY_HEARTBEAT)
    pipe.get(contract.KEY_HEARTBEAT_ALIAS)
    with redis_errors("reading the heartbeat"):
        value, ttl, alias = pipe.execute()
    now = time.time() if now is None else now
    raw = _text(value)
    timestamp, error = parse_heartbeat(raw, now)
    age = max(0.0, now - timestamp) if timestamp is not None and error is None else None
    return HeartbeatReading(
        raw=raw,
        timestamp=timestamp,
        age_s=age,
        ttl_s=int(ttl) if raw is not None and int(ttl) >= 0 else None,
        alias_raw=_text(alias),
        error=error,
    )


def _float_field(fields: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(fields[name])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class StackStats:
    """The stack-wide figures in KEY_STATS, written by every process (not one process's counters)."""

    patterns_detected: int
    last_pattern_time: float | None
    last_bar_time: float | None
    started_at: float | None  # set by the heartbeat when a stack run begins
    stopped_at: float | None  # set by the heartbeat when it stops cleanly
    fields: Mapping[str, str] = field(default_factory=dict)  # every field, for the exporter

    @property
    def running(self) -> bool:
        """A stack run has begun and the heartbeat has not stopped cleanly since."""
        if self.started_at is None:
            return False
        return self.stopped_at is None or self.stopped_at < self.started_at

    def uptime_s(self, now: float) -> float | None:
        return None if self.started_at is None else max(0.0, now - self.started_at)

    def detector_lag_s(self, now: float) -> float | None:
        """Seconds since the detector last showed progress: the newer of its last bar and last pattern."""
        seen = [t for t in (self.last_bar_time, self.last_pattern_time) if t is not None]
        return max(0.0, now - max(seen)) if seen else None


def parse_stats(raw: Mapping[Any, Any]) -> StackStats:
    """StackStats from an HGETALL reply (bytes or text); unparseable fields read as absent."""
    fields = {_text(key) or "": _text(value) or "" for key, value in raw.items()}
    try:
        detected = int(fields.get(contract.STAT_PATTERNS_DETECTED, "0"))
    except ValueError:
        detected = 0
    return StackStats(
        patterns_detected=detected,
        last_pattern_time=_float_field(fields, contract.STAT_LAST_PATTERN_TIME),
        last_bar_time=_float_field(fields, contract.STAT_LAST_BAR_TIME),
        started_at=_float_field(fields, contract.STAT_STARTED_AT),
        stopped_at=_float_field(fields, contract.STAT_STOPPED_AT),
        fields=fields,
    )


def read_stats(client: redis.Redis) -> StackStats:
    with redis_errors("reading the stats hash"):
        raw = client.hgetall(contract.KEY_STATS)
    return parse_stats(raw)


@dataclass(frozen=True)
class QueueDepths:
    """How much work waits in the producer's own Redis structures."""

    outbox: int  # detected, not yet taken by the relay
    processing: int  # taken by the relay, not yet acknowledged
    dead_letters: int  # poison records set aside with their reason
    audit_backlog: int  # published, audit row still to write (Postgres was down)


_SIZE_BY_TYPE = {"list": "LLEN", "stream": "XLEN", "hash": "HLEN", "set": "SCARD", "zset": "ZCARD"}


def queue_depths(client: redis.Redis) -> QueueDepths:
    """Sizes of the outbox, processing list, dead letters and audit backlog, whatever type each is."""
    keys = (
        contract.KEY_OUTBOX,
        contract.KEY_PROCESSING,
        contract.KEY_DEAD_LETTERS,
        contract.KEY_AUDIT_BACKLOG,
    )
    with redis_errors("reading queue depths"):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
        types = [_text(kind) or "none" for kind in pipe.execute()]
        pipe = client.pipeline(transaction=False)
        sized = [(key, kind) for key, kind in zip(keys, types, strict=True) if kind in _SIZE_BY_TYPE]
        for key, kind in sized:
            pipe.execute_command(_SIZE_BY_TYPE[kind], key)
        sizes = dict(zip([key for key, _ in sized], pipe.execute() if sized else [], strict=True))
    depth = [int(sizes.get(key, 0)) for key in keys]
    return QueueDepths(*depth)


def subscriber_counts(
    client: redis.Redis, channels: Sequence[str] = contract.PRODUCER_CHANNELS
) -> dict[str, int]:
    """PUBSUB NUMSUB for each channel: is TickStockAppV2 (or anyone) listening?"""
    with redis_errors("PUBSUB NUMSUB"):
        replies = client.pubsub_numsub(*channels)
    return {(_text(name) or ""): int(count) for name, count in replies}


# Redis persistence, as the outbox and the audit backlog depend on it.
AOF: Final = "aof"  # survives a restart (up to ~1 s of writes on a crash, with appendfsync everysec)
RDB: Final = "rdb"  # snapshots only: a restart loses what was written since the last one
NONE: Final = "none"  # nothing survives a restart
# UNKNOWN: Redis forbids both CONFIG GET and INFO (an ACL, a managed service)


@dataclass(frozen=True)
class RedisPersistence:
    """Whether the producer's Redis structures survive a Redis restart, and the exact risk if not."""

    mode: str  # AOF, RDB, NONE or UNKNOWN
    detail: str  # what was read: "appendonly yes (appendfsync everysec)", ...

    @property
    def at_risk(self) -> bool:
        """True when a restart is known to lose what only Redis holds."""
        return self.mode in (RDB, NONE)

    def risk(self, audit_backlog: int | None = None) -> str:
        """The warning to print, naming what would be lost; empty when nothing would."""
        if self.mode == AOF:
            return ""
        held = "the outbox (detected patterns not yet published), the processing list and the audit backlog"
        backlog = ""
        if audit_backlog:
            backlog = (
                f"; {audit_backlog} published pattern(s) whose audit row is deferred live ONLY there and "
                "would never get their PATTERN_PUBLISHED row"
            )
        if self.mode == NONE:
            return f"Redis has no persistence ({self.detail}): a Redis restart empties {held}{backlog}"
        if self.mode == RDB:
            return (
                f"Redis keeps snapshots only ({self.detail}): a Redis restart loses every write since the "
                f"last snapshot, in {held}{backlog}"
            )
        return f"Redis persistence unknown ({self.detail}): without any, a restart empties {held}{backlog}"


def read_persistence(client: redis.Redis) -> RedisPersistence:
    """CONFIG GET appendonly/save, else INFO persistence; UNKNOWN when Redis forbids both."""
    try:
        with redis_errors("CONFIG GET appendonly"):
            try:
                config = {**client.config_get("appendonly"), **client.config_get("save")}
                config.update(client.config_get("appendfsync"))
            except redis.ResponseError:  # an ACL (NOPERM), or CONFIG renamed away
                config = {}
            if config:
                if _text(config.get("appendonly")) == "yes":
                    return RedisPersistence(
                        AOF, f"appendonly yes, appendfsync {_text(config.get('appendfsync'))}"
                    )
                save = (_text(config.get("save")) or "").strip()
                if save:
                    return RedisPersistence(RDB, f"appendonly no, save '{save}'")
                return RedisPersistence(NONE, "appendonly no, save ''")
            try:
                info = client.info("persistence")
            except redis.ResponseError:
                return RedisPersistence(UNKNOWN, "Redis forbids CONFIG GET and INFO to us")
    except RedisConfigError:
        return RedisPersistence(UNKNOWN, "Redis forbids CONFIG GET and INFO to us")
    if int(info.get("aof_enabled", 0)) == 1:
        return RedisPersistence(AOF, "aof_enabled:1 (INFO persistence; CONFIG is forbidden)")
    # INFO does not show the save rules: a snapshot since start up is the only hint there are any.
    return RedisPersistence(
        RDB if int(info.get("rdb_saves", 0)) > 0 else NONE,
        f"aof_enabled:0, rdb_saves:{info.get('rdb_saves', 0)} (INFO persistence; CONFIG is forbidden)",
    )


@dataclass(frozen=True)
class ProgramState:
    """One supervised program as supervisord last reported it."""

    name: str  # group:name
    state: str
    since: float
    recent_failures: int  # within PROGRAM_FAILURE_WINDOW_S of now

    @property
    def problem(self) -> str | None:
        """Why this program makes the stack degraded, or None."""
        if self.state == "FATAL":
            return f"{self.name} FATAL (gave up restarting)"
        if self.recent_failures >= PROGRAM_MAX_FAILURES:
            minutes = PROGRAM_FAILURE_WINDOW_S / 60
            return f"{self.name} restart-looping ({self.recent_failures} failures in {minutes:g} min)"
        return None


def read_programs(client: redis.Redis, now: float | None = None) -> dict[str, ProgramState]:
    """Every program's state from KEY_PROGRAMS (empty when no supervisord of ours reports)."""
    with redis_errors("reading program states"):
        raw = client.hgetall(KEY_PROGRAMS)
    return parse_programs(raw, time.time() if now is None else now)


def parse_programs(raw: Mapping[Any, Any], now: float) -> dict[str, ProgramState]:
    """ProgramStates from an HGETALL reply of KEY_PROGRAMS; values we did not write are skipped."""
    programs: dict[str, ProgramState] = {}
    for key, value in raw.items():
        name = _text(key) or ""
        try:
            entry = json.loads(value)
            failures = [float(t) for t in entry.get("failures", [])]
            programs[name] = ProgramState(
                name=name,
                state=str(entry["state"]),
                since=float(entry["since"]),
                recent_failures=sum(1 for t in failures if t > now - PROGRAM_FAILURE_WINDOW_S),
            )
        except (ValueError, KeyError, TypeError):
            continue  # not ours to judge: a value we did not write
    return programs


def program_component(programs: Mapping[str, ProgramState] | None) -> dict[str, Any]:
    """The `programs` component: ok, failing (with why), or unknown when nothing reports."""
    if not programs:
        return {"status": UNKNOWN, "failing": {}}
    failing = {name: program.problem for name, program in programs.items() if program.problem}
    return {
        "status": FAILING if failing else OK,
        "failing": failing,
        "states": {name: program.state for name, program in programs.items()},
    }


# --- PostgreSQL -------------------------------------------------------------------------------------
def audit_function_present(cursor: PgCursor) -> bool:
    with postgres_errors():
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", (AUDIT_FUNCTION_SIGNATURE,))
        row = cursor.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class SchemaStatus:
    """What the audit path needs, for the connected role (contract §4.1-4.3)."""

    table: bool
    view: bool
    function: bool
    sequence: str | None  # the serial's sequence, None when the table is missing
    can_insert: bool
    can_execute: bool
    can_use_sequence: bool
    can_select: bool  # doctor's flow checks; the relay's inline duplicate check
    can_update: bool = False
    can_delete: bool = False
    can_truncate: bool = False
    log_new_callable: bool = False  # tickstockpl_log_new (db/init.sql): duplicate check without SELECT

    @property
    def callable(self) -> bool:
        return self.table and self.function and self.can_insert and self.can_execute and self.can_use_sequence

    @property
    def can_skip_existing(self) -> bool:
        """The relay's duplicate check works: through the definer function, or inline with SELECT."""
        return self.log_new_callable or self.can_select

    @property
    def can_erase(self) -> tuple[str, ...]:
        """What this role may do to existing audit rows (empty: it writes only)."""
        granted = (("UPDATE", self.can_update), ("DELETE", self.can_delete), ("TRUNCATE", self.can_truncate))
        return tuple(name for name, allowed in granted if allowed)


def schema_status(cursor: PgCursor) -> SchemaStatus:
    with postgres_errors():
        cursor.execute(
            "SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL,"
            " to_regprocedure(%s) IS NOT NULL",
            (AUDIT_TABLE, FLOW_VIEW, AUDIT_FUNCTION_SIGNATURE),
        )
        table, view, function = cursor.fetchone()  # type: ignore[misc]
        sequence = None
        can_insert = can_select = can_use_sequence = can_execute = False
        can_update = can_delete = can_truncate = False
        if table:
            cursor.execute(
                "SELECT pg_get_serial_sequence(%(t)s, 'id'), has_table_privilege(%(t)s, 'INSERT'),"
                " has_table_privilege(%(t)s, 'SELECT'), has_table_privilege(%(t)s, 'UPDATE'),"
                " has_table_privilege(%(t)s, 'DELETE'), has_table_privilege(%(t)s, 'TRUNCATE')",
                {"t": AUDIT_TABLE},
            )
            sequence, can_insert, can_select, can_update, can_delete, can_truncate = cursor.fetchone()  # type: ignore[misc]
        cursor.execute(
            "SELECT coalesce(has_function_privilege(p, 'EXECUTE'), false) FROM to_regprocedure(%s) AS p",
            (LOG_NEW_FUNCTION,),
        )
        log_new_callable = bool(cursor.fetchone()[0])  # type: ignore[index]
        if sequence:
            cursor.execute("SELECT has_sequence_privilege(%s, 'USAGE')", (sequence,))
            can_use_sequence = bool(cursor.fetchone()[0])  # type: ignore[index]
        if function:
            cursor.execute("SELECT has_function_privilege(%s, 'EXECUTE')", (AUDIT_FUNCTION_SIGNATURE,))
            can_execute = bool(cursor.fetchone()[0])  # type: ignore[index]
    return SchemaStatus(
        table=bool(table),
        view=bool(view),
        function=bool(function),
        sequence=sequence,
        can_insert=bool(can_insert),
        can_execute=bool(can_execute),
        can_use_sequence=can_use_sequence,
        can_select=bool(can_select),
        can_update=bool(can_update),
        can_delete=bool(can_delete),
        can_truncate=bool(can_truncate),
        log_new_callable=log_new_callable,
    )


def probe_audit_call(conn: PgConnection) -> None:
    """Call log_integration_event as our role inside a transaction that is rolled back.

    The only proof that a real row would be accepted (function, grants, sequence, column types).
    Raises AuditConfigError or PostgresUnavailable; leaves no row behind (a sequence value is used).
    """
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with postgres_errors(), conn.cursor() as cursor:
            cursor.execute(
                "SELECT log_integration_event(NULL::uuid, %s, %s, %s, NULL, NULL, NULL, NULL::numeric, NULL,"
                " %s::jsonb)",
                (contract.EVENT_HEARTBEAT, contract.SOURCE_SYSTEM, "DOCTOR_PROBE", '{"probe": true}'),
            )
    finally:
        if not conn.closed:
            conn.rollback()
            conn.autocommit = autocommit


@dataclass(frozen=True)
class FlowStats:
    """The producer's flows over a window, judged the way the consumer's monitor does (contract §6)."""

    window_s: float
    published: int  # flows with our PATTERN_PUBLISHED row
    completed: int  # ... and EVENT_RECEIVED + EVENT_PARSED in the same pattern_flow_analysis group
    orphans: int  # ... with no EVENT_RECEIVED or EVENT_PARSED row at all, older than the grace period
    p50_ms: float | None  # total_latency_ms of the completed flows, as the view computes it
    p95_ms: float | None
    last_published_age_s: float | None


_FLOW_STATS_SQL = """
WITH recent AS (
    SELECT flow_id, symbol, pattern_name, checkpoint, source_system, timestamp
    FROM integration_events
    WHERE flow_id IS NOT NULL AND timestamp >= now() - make_interval(secs => %(window)s)
),
published AS (
    SELECT flow_id, min(timestamp) AS published_at FROM recent
    WHERE checkpoint = %(published)s AND source_system = %(producer)s
    GROUP BY flow_id
),
groups AS (  -- pattern_flow_analysis groups (flow_id, symbol, pattern_name), limited to the window
    SELECT r.flow_id, extract(epoch FROM max(r.timestamp) - min(r.timestamp)) * 1000 AS latency_ms,
           array_agg(r.checkpoint::text) AS checkpoints
    FROM recent r JOIN published p USING (flow_id)
    GROUP BY r.flow_id, r.symbol, r.pattern_name
),
completed AS (
    SELECT flow_id, latency_ms FROM groups WHERE checkpoints @> %(complete_path)s::text[]
),
answered AS (
    SELECT DISTINCT flow_id FROM recent WHERE checkpoint IN (%(received)s, %(parsed)s)
)
SELECT
    (SELECT count(*) FROM published),
    (SELECT count(DISTINCT flow_id) FROM completed),
    (SELECT count(*) FROM published p
     WHERE p.published_at < now() - make_interval(secs => %(grace)s)
       AND NOT EXISTS (SELECT 1 FROM answered a WHERE a.flow_id = p.flow_id)),
    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM completed),
    (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM completed),
    (SELECT extract(epoch FROM now() - max(published_at)) FROM published)
"""


def flow_stats(cursor: PgCursor, *, window_s: float = 3600.0, orphan_grace_s: float = 10.0) -> FlowStats:
    """Published, completed and orphan flows over the last `window_s` (needs SELECT on the table).

    A flow younger than `orphan_grace_s` is not yet an orphan: the consumer's rows follow ours.
    """
    params = {
        "window": float(window_s),
        "grace": float(orphan_grace_s),
        "published": contract.CHECKPOINT_PATTERN_PUBLISHED,
        "producer": contract.SOURCE_SYSTEM,
        "received": contract.CHECKPOINT_EVENT_RECEIVED,
        "parsed": contract.CHECKPOINT_EVENT_PARSED,
        "complete_path": [
            contract.CHECKPOINT_PATTERN_PUBLISHED,
            contract.CHECKPOINT_EVENT_RECEIVED,
            contract.CHECKPOINT_EVENT_PARSED,
        ],
    }
    with postgres_errors():
        cursor.execute(_FLOW_STATS_SQL, params)
        published, completed, orphans, p50, p95, last_age = cursor.fetchone()  # type: ignore[misc]
    return FlowStats(
        window_s=float(window_s),
        published=int(published),
        completed=int(completed),
        orphans=int(orphans),
        p50_ms=None if p50 is None else float(p50),
        p95_ms=None if p95 is None else float(p95),
        last_published_age_s=None if last_age is None else float(last_age),
    )


# --- Assessment -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Thresholds:
    """When a component stops being `ok`."""

    detector_stale_after_s: float = 300.0
    outbox_backlog: int = 10_000

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """Stale after five bars' worth of wall time (bars come faster when replay speed is up), >= 2 min."""
        bar_wall_s = settings.bar_seconds / settings.speed if settings.speed > 0 else settings.bar_seconds
        return cls(detector_stale_after_s=max(120.0, 5 * bar_wall_s))


def store_component(error: Exception | None, *, disabled: bool = False) -> dict[str, Any]:
    """A store's component entry from the outcome of its probe (None = it answered)."""
    if disabled:
        return {"status": DISABLED}
    if error is None:
        return {"status": OK}
    misconfigured = isinstance(error, AuditConfigError | RedisConfigError)
    return {"status": MISCONFIGURED if misconfigured else UNAVAILABLE, "error": str(error)[:300]}


@dataclass(frozen=True)
class HealthReport:
    """An overall status with the reasons for it and one entry per component."""

    status: str
    reasons: tuple[str, ...]
    components: Mapping[str, Mapping[str, Any]]


def assess(
    *,
    redis_component: Mapping[str, Any],
    postgres_component: Mapping[str, Any],
    stats: StackStats | None,
    depths: QueueDepths | None,
    now: float,
    thresholds: Thresholds = Thresholds(),
    programs: Mapping[str, ProgramState] | None = None,
    persistence: RedisPersistence | None = None,
) -> HealthReport:
    """Healthy, degraded or down, from readings already taken (stats and depths None when Redis is down).

    down: neither store is usable, so nothing can be published or audited. degraded: one store is
    unusable, the detector has shown no progress for too long, the outbox is backed up, or a
    supervised program is FATAL or restart-looping. Dead letters are reported but do not change
    the status: they are set aside and block nothing.
    """
    reasons: list[str] = []
    redis_ok = redis_component["status"] == OK
    postgres_ok = postgres_component["status"] in (OK, DISABLED)
    if not redis_ok:
        reasons.append(f"redis {redis_component['status']}")
    if not postgres_ok:
        reasons.append(f"postgres {postgres_component['status']}")
    detector: dict[str, Any] = {"status": UNKNOWN, "lag_seconds": None}
    outbox: dict[str, Any] = {"status": UNKNOWN, "depth": None, "processing": None, "audit_backlog": None}
    dead: dict[str, Any] = {"status": UNKNOWN, "count": None}
    if stats is not None:
        lag = stats.detector_lag_s(now)
        detector = {
            "status": UNKNOWN if lag is None else (STALE if lag > thresholds.detector_stale_after_s else OK),
            "lag_seconds": None if lag is None else round(lag, 3),
            "last_bar_time": stats.last_bar_time,
            "last_pattern_time": stats.last_pattern_time,
            "patterns_detected": stats.patterns_detected,
        }
        if detector["status"] == STALE:
            reasons.append(f"detector stale: no progress for {lag:.0f} s")
    if depths is not None:
        backed_up = depths.outbox > thresholds.outbox_backlog
        outbox = {
            "status": BACKLOG if backed_up else OK,
            "depth": depths.outbox,
            "processing": depths.processing,
            "audit_backlog": depths.audit_backlog,
        }
        if backed_up:
            reasons.append(f"outbox backlog: {depths.outbox} records")
        dead = {"status": PRESENT if depths.dead_letters else OK, "count": depths.dead_letters}
        if depths.audit_backlog and persistence is not None and persistence.at_risk:
            reasons.append(f"{depths.audit_backlog} deferred audit rows only in a Redis without persistence")
    program_states = program_component(programs)
    reasons.extend(program_states["failing"].values())
    if not redis_ok and not postgres_ok:
        status = DOWN
    elif reasons:
        status = DEGRADED
    else:
        status = HEALTHY
    redis_entry = dict(redis_component)
    if persistence is not None:
        redis_entry["persistence"] = persistence.mode
    components = {
        "redis": redis_entry,
        "postgres": dict(postgres_component),
        "detector": detector,
        "outbox": outbox,
        "dead_letters": dead,
        "programs": program_states,
    }
    return HealthReport(status=status, reasons=tuple(reasons), components=components)


def health_event(
    report: HealthReport,
    *,
    now: float,
    previous_status: str | None,
    status_since: float,
    uptime_s: float | None,
) -> dict[str, Any]:
    """The `system_health` message for tickstock.health.status (§2.5, Appendix B item 14).

    Flat like the consumer's fixtures: top-level event_type, source, timestamp (float) and status;
    `metrics` mirrors their shape where we have the figure.
    """
    outbox = report.components["outbox"]
    detector = report.components["detector"]
    return {
        "event_type": contract.EVENT_SYSTEM_HEALTH,
        "source": contract.SOURCE_SYSTEM,
        "timestamp": float(now),
        "status": report.status,
        "previous_status": previous_status,
        "status_since": float(status_since),
        "reasons": list(report.reasons),
        "components": {name: dict(value) for name, value in report.components.items()},
        "metrics": {
            "queue_depth": outbox.get("depth"),
            "uptime_hours": None if uptime_s is None else round(uptime_s / 3600, 4),
            "patterns_detected": detector.get("patterns_detected"),
        },
    }
