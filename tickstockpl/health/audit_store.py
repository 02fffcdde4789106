"""What the audit path needs from PostgreSQL, as the connected role sees it, and the flows it recorded.

Readers take an open cursor or connection and wrap driver errors into ours (postgres_errors), so
callers see PostgresUnavailable or AuditConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tickstockpl import contract
from tickstockpl.audit import LOG_NEW_FUNCTION
from tickstockpl.stores import PgConnection, PgCursor, postgres_errors

# The function as the consumer declares it (§4.2); to_regprocedure() takes the argument types only.
AUDIT_FUNCTION_SIGNATURE: Final = (
    "log_integration_event(uuid, varchar, varchar, varchar, varchar, varchar, varchar,"
    " numeric, integer, jsonb)"
)
AUDIT_TABLE: Final = "integration_events"
FLOW_VIEW: Final = "pattern_flow_analysis"


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
