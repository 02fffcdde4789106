"""Health of the producer stack, read from its stores at call time.

Shared by the heartbeat service (its `system_health` events), `tickstockpl doctor` (the checklist)
and the exporter (metrics at scrape time), so all three agree on what "fresh", "lagging", "backlog"
and "orphan" mean. Readers take an open Redis client or PostgreSQL cursor and wrap driver errors into
ours (RedisUnavailable, RedisConfigError, PostgresUnavailable, AuditConfigError); `assess()` turns
readings into a status without touching any store. This package re-exports every public name, so
callers write `health.X` whichever module X lives in.
"""

from __future__ import annotations

from tickstockpl.health.assessment import (
    HealthReport,
    Thresholds,
    assess,
    health_event,
    store_component,
)
from tickstockpl.health.audit_store import (
    AUDIT_FUNCTION_SIGNATURE,
    AUDIT_TABLE,
    FLOW_VIEW,
    FlowStats,
    SchemaStatus,
    audit_function_present,
    flow_stats,
    probe_audit_call,
    schema_status,
)
from tickstockpl.health.persistence import (
    AOF,
    NONE,
    RDB,
    RedisPersistence,
    read_persistence,
)
from tickstockpl.health.programs import (
    KEY_PROGRAMS,
    PROGRAM_FAILURE_WINDOW_S,
    PROGRAM_MAX_FAILURES,
    ProgramState,
    parse_programs,
    program_component,
    read_programs,
)
from tickstockpl.health.redis_readings import (
    HEARTBEAT_FUTURE_SKEW_S,
    HeartbeatReading,
    QueueDepths,
    StackStats,
    as_text,
    checking_client,
    parse_heartbeat,
    parse_stats,
    ping_redis,
    queue_depths,
    read_heartbeat,
    read_stats,
    subscriber_counts,
)
from tickstockpl.health.states import (
    BACKLOG,
    DEGRADED,
    DISABLED,
    DOWN,
    FAILING,
    HEALTHY,
    MISCONFIGURED,
    OK,
    PRESENT,
    STALE,
    UNAVAILABLE,
    UNKNOWN,
)

__all__ = [
    "AOF",
    "AUDIT_FUNCTION_SIGNATURE",
    "AUDIT_TABLE",
    "BACKLOG",
    "DEGRADED",
    "DISABLED",
    "DOWN",
    "FAILING",
    "FLOW_VIEW",
    "FlowStats",
    "HEALTHY",
    "HEARTBEAT_FUTURE_SKEW_S",
    "HealthReport",
    "HeartbeatReading",
    "KEY_PROGRAMS",
    "MISCONFIGURED",
    "NONE",
    "OK",
    "PRESENT",
    "PROGRAM_FAILURE_WINDOW_S",
    "PROGRAM_MAX_FAILURES",
    "ProgramState",
    "QueueDepths",
    "RDB",
    "RedisPersistence",
    "STALE",
    "SchemaStatus",
    "StackStats",
    "Thresholds",
    "UNAVAILABLE",
    "UNKNOWN",
    "as_text",
    "assess",
    "audit_function_present",
    "checking_client",
    "flow_stats",
    "health_event",
    "parse_heartbeat",
    "parse_programs",
    "parse_stats",
    "ping_redis",
    "probe_audit_call",
    "program_component",
    "queue_depths",
    "read_heartbeat",
    "read_persistence",
    "read_programs",
    "read_stats",
    "schema_status",
    "store_component",
    "subscriber_counts",
]
