"""Audit rows in the consumer's `integration_events`, always through `log_integration_event(...)`.

The only module that talks to PostgreSQL for the audit trail, through the door in stores.py, which
sorts driver errors into PostgresUnavailable (try again later), AuditConfigError (wrong password,
function or grant missing: an operator must act) and AuditDataError (this row can never be written).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import orjson

from tickstockpl import contract
from tickstockpl.errors import AuditDataError, PostgresUnavailable
from tickstockpl.settings import Settings
from tickstockpl.stores import PgConnection, PgCursor, postgres_connection, postgres_errors

log = logging.getLogger(__name__)

# One round trip for a whole batch: the rows travel as ONE JSON document, unpacked by the server, and
# the function is called once per row. Confidence arrives as numeric straight from the JSON text
# (never float8, which psycopg 3 would need cast) and details as jsonb. One json.dumps per batch
# costs the client half the CPU of adapting five Python lists (4 vs 9 us a row), and the client's
# CPU is the relay's main thread's too.
_BATCH = """
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS b(flow_id uuid, symbol text, pattern text, confidence numeric, details jsonb, ord int)
"""
_LOG_PUBLISHED_SQL = f"""
SELECT t.flow_id,
       log_integration_event(t.flow_id, %(event_type)s, %(source)s, %(checkpoint)s, %(channel)s,
                             t.symbol, t.pattern, t.confidence, NULL, t.details)
FROM ({_BATCH}) AS t
"""
# Skip-existing path (the relay's): a flow whose PATTERN_PUBLISHED row already exists is not logged
# again, and a flow_id repeated inside the batch is logged once. The consumer's DDL has no unique
# constraint, so concurrent relays serialize on an advisory lock, taken in its own statement so that
# the check below sees every row committed before it was granted (READ COMMITTED: a snapshot per
# statement). Existing rows are found with `= ANY(array)` on the flow_id index (a NOT EXISTS join let
# the planner scan the whole table: ~3,000 rows/s on 20k rows). The function sits in the select list,
# so it runs only for rows that pass the filter.
_LOG_NEW_SQL = f"""
WITH batch AS (
    SELECT DISTINCT ON (b.flow_id) b.* FROM ({_BATCH}) AS b ORDER BY b.flow_id, b.ord
), existing AS (
    SELECT e.flow_id FROM integration_events e
    WHERE e.flow_id = ANY(ARRAY(SELECT flow_id FROM batch))
      AND e.checkpoint = %(checkpoint)s AND e.source_system = %(source)s
)
SELECT t.flow_id,
       log_integration_event(t.flow_id, %(event_type)s, %(source)s, %(checkpoint)s, %(channel)s,
                             t.symbol, t.pattern, t.confidence, NULL, t.details)
FROM batch t
WHERE t.flow_id NOT IN (SELECT flow_id FROM existing)
"""
_AUDIT_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('tickstockpl.audit'))"
# The same skip-existing write as db/init.sql's SECURITY DEFINER function, for a role that may not
# SELECT the table (the least-privilege writer, tickstockpl_producer): it takes the lock itself.
# Used whenever the connected role may EXECUTE it; the inline form above is the fallback for a
# consumer-owned database without it (app_readwrite, which can read the table).
LOG_NEW_FUNCTION: Final = "tickstockpl_log_new(jsonb, varchar, varchar, varchar, varchar)"
_LOG_NEW_CALL_SQL = """
SELECT f FROM tickstockpl_log_new(%(rows)s::jsonb, %(event_type)s, %(source)s, %(checkpoint)s,
                                  %(channel)s) AS f
"""
_CAN_CALL_LOG_NEW_SQL = (
    "SELECT coalesce(has_function_privilege(p, 'EXECUTE'), false) FROM to_regprocedure(%s) AS p"
)
# A write that does not wait for its WAL flush (see AuditLog.log_published, `durable`). SET LOCAL
# lasts to the end of the query string's implicit transaction.
_NOT_DURABLE_SQL = "SET LOCAL synchronous_commit TO off"
# Flush the WAL up to now, without a table: a transactional logical message gives the transaction
# an xid and a WAL record, so its synchronous commit waits for the flush of everything before it,
# every commit that returned before this one started included. Any role may call it; logical
# decoding, if the database runs any, sees a 'tickstockpl' message.
_FLUSH_WAL_SQL = (
    "SET LOCAL synchronous_commit TO on; SELECT pg_logical_emit_message(true, 'tickstockpl', 'flush')"
)
_LOG_ROW_SQL = (
    "SELECT log_integration_event(%s::uuid, %s, %s, %s, %s, NULL, NULL, NULL::numeric, NULL, %s::jsonb)"
)

_UNIQUE_VIOLATION = "23505"


def _rows_document(rows: list[dict[str, Any]]) -> str:
    """The batch as one JSON text: orjson (about 20x cheaper a row), json for what orjson cannot carry.

    Every value was validated finite by the contract (orjson would write NaN as null, json refuses
    it); an integer beyond 64 bits, valid but rare, makes orjson raise, so json writes that batch.
    """
    try:
        return orjson.dumps(rows).decode("utf-8")
    except TypeError:
        return json.dumps(rows, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class AuditLog:
    """A lazily (re)connected psycopg2 connection that writes audit rows and commits at once.

    Transactions are opened only when a batch is ready and committed immediately, because the
    row's `timestamp` is the transaction start (contract Appendix B item 7). The connection is in
    autocommit mode and each write is ONE query string, so PostgreSQL runs it as one implicit
    transaction: one round trip, where psycopg2's BEGIN / statement(s) / COMMIT took three or four
    (which dominated latency at low load).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: PgConnection | None = None
        self._log_new_sql = ""  # chosen per connection, see _skip_existing_sql

    @property
    def enabled(self) -> bool:
        return self._settings.audit_enabled

    def connect(self) -> PgConnection:
        if self._conn is None or self._conn.closed:
            # UTF8 on the wire whatever the database's encoding: text the database cannot store
            # (a LATIN1 database) is then refused by the server as data (22P05), not by Python's
            # codec before the query is even sent.
            self._conn = postgres_connection(self._settings, client_encoding="UTF8")
            try:
                with postgres_errors():
                    self._log_new_sql = self._skip_existing_sql(self._conn)
            except Exception:
                self.close()
                raise
        return self._conn

    @staticmethod
    def _skip_existing_sql(conn: PgConnection) -> str:
        """The skip-existing write this role may run: the definer function, else the inline check."""
        with conn.cursor() as cursor:
            cursor.execute(_CAN_CALL_LOG_NEW_SQL, (LOG_NEW_FUNCTION,))
            row = cursor.fetchone()
        return _LOG_NEW_CALL_SQL if row and row[0] else f"{_AUDIT_LOCK_SQL};\n{_LOG_NEW_SQL}"

    @property
    def uses_definer_function(self) -> bool:
        """True when skip-existing writes go through tickstockpl_log_new (known once connected)."""
        return self._log_new_sql == _LOG_NEW_CALL_SQL

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    @contextmanager
    def _transaction(self) -> Iterator[PgCursor]:
        """A cursor whose every execute() is its own transaction (one query string, see the class)."""
        conn = self.connect()
        try:
            with postgres_errors(), conn.cursor() as cursor:
                yield cursor
        except PostgresUnavailable:
            self.close()  # the connection may be half dead; start afresh next time
            raise

    def log_published(
        self,
        events: Sequence[Mapping[str, Any]],
        *,
        skip_existing: bool = False,
        extra_details: Sequence[Mapping[str, Any]] | None = None,
        durable: bool = True,
    ) -> list[str]:
        """Write one PATTERN_PUBLISHED row per event in one round trip; return the flow_ids written.

        With `skip_existing`, flows that already have their row are left alone (recovery after a
        crash, deferred rows). `extra_details[i]` is merged into event i's details. With
        `durable=False` the commit returns without waiting for its WAL flush (an fsync, which
        queues behind every other write on the disk): the rows are visible at once, but safe from
        a database crash only once a `flush_wal()` started after this call has returned. The relay
        acks on that; docs/relay.md.
        """
        if not self.enabled or not events:
            return []
        rows = [
            {
                "flow_id": event["data"]["flow_id"],
                "symbol": event["data"]["symbol"],
                "pattern": event["data"]["pattern"],
                "confidence": event["data"]["confidence"],
                "details": contract.audit_details(event, **(extra_details[i] if extra_details else {})),
                "ord": i,
            }
            for i, event in enumerate(events)
        ]
        params = {
            "rows": _rows_document(rows),
            "event_type": contract.EVENT_PATTERN_DETECTED,
            "source": contract.SOURCE_SYSTEM,
            "checkpoint": contract.CHECKPOINT_PATTERN_PUBLISHED,
            "channel": contract.CHANNEL_PATTERNS,
        }
        with self._transaction() as cursor:
            # Inline, two statements in one query string share one implicit transaction (the lock is
            # held to its end) and each gets its own snapshot, so the check sees rows committed
            # before the lock; the definer function does the same inside.
            sql = self._log_new_sql if skip_existing else _LOG_PUBLISHED_SQL
            if not durable:
                sql = f"{_NOT_DURABLE_SQL};\n{sql}"
            cursor.execute(sql, params)
            return [str(row[0]) for row in cursor.fetchall()]

    def log_published_isolating(
        self,
        events: Sequence[Mapping[str, Any]],
        *,
        skip_existing: bool = False,
        extra_details: Sequence[Mapping[str, Any]] | None = None,
        durable: bool = True,
    ) -> tuple[list[str], list[tuple[int, AuditDataError]]]:
        """`log_published`, but one row PostgreSQL rejects for its data does not sink its batch.

        A batch refused with AuditDataError is split in halves (each half its own transaction)
        until the rows that can never be written are found: O(k log n) round trips for k poison
        rows in n. Returns (flow_ids written, [(index into events, error)]). Unavailability and
        configuration errors still propagate: those concern every row alike. A unique violation
        (a database that did add a unique index, and a writer that bypassed our lock) means the
        row exists: the event is not poison.
        """
        written: list[str] = []
        rejected: list[tuple[int, AuditDataError]] = []
        pending = [(0, len(events))]
        while pending:
            start, stop = pending.pop()
            extra = extra_details[start:stop] if extra_details is not None else None
            try:
                written += self.log_published(
                    events[start:stop], skip_existing=skip_existing, extra_details=extra, durable=durable
                )
            except AuditDataError as exc:
                if stop - start == 1 and exc.sqlstate == _UNIQUE_VIOLATION:
                    written.append(str(events[start]["data"]["flow_id"]))  # its row is there already
                    continue
                if stop - start == 1:
                    rejected.append((start, exc))
                    continue
                middle = (start + stop) // 2
                pending += [(middle, stop), (start, middle)]
        return written, sorted(rejected, key=lambda item: item[0])

    def flush_wal(self) -> None:
        """Put PostgreSQL's WAL on disk up to now: every commit that returned before this call."""
        with self._transaction() as cursor:
            cursor.execute(_FLUSH_WAL_SQL)

    def log_producer_row(
        self, checkpoint: str, details: Mapping[str, Any], *, event_type: str = contract.EVENT_HEARTBEAT
    ) -> None:
        """A producer system row (PRODUCER_ALIVE, PRODUCER_STARTED); flow_id NULL keeps the view clean."""
        if not self.enabled:
            return
        with self._transaction() as cursor:
            cursor.execute(
                _LOG_ROW_SQL,
                (None, event_type, contract.SOURCE_SYSTEM, checkpoint, None, json.dumps(details)),
            )
