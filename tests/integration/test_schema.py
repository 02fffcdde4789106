"""db/init.sql against a real PostgreSQL: idempotent, same shape as the consumer's, roles that work."""

from __future__ import annotations

from collections.abc import Callable

import psycopg2
import pytest

from tests.conftest import CONSUMER_DB, INIT_DB, INIT_SQL, PostgresHandle, execute
from tickstockpl.audit import AuditLog
from tickstockpl.contract import build_pattern_event
from tickstockpl.errors import AuditConfigError
from tickstockpl.settings import Settings

COLUMNS_SQL = """
SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale,
       is_nullable, column_default
FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position
"""
FUNCTION_SQL = """
SELECT pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.prosecdef
FROM pg_proc p WHERE p.proname = 'log_integration_event'
"""


def test_init_sql_applies_twice(
    postgres_server: PostgresHandle, fresh_database: Callable[[str], str]
) -> None:
    name = fresh_database(INIT_DB)  # already has init.sql applied once
    execute(postgres_server.dsn(name), INIT_SQL.read_text())
    execute(postgres_server.dsn(name), INIT_SQL.read_text())
    assert (
        execute(
            postgres_server.dsn(name),
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'integration_events'",
        )[0][0]
        == 5
    )  # primary key + the consumer's four


@pytest.mark.parametrize(
    "sql", [COLUMNS_SQL % "'integration_events'", COLUMNS_SQL % "'pattern_flow_analysis'", FUNCTION_SQL]
)
def test_init_sql_matches_consumer_schema(postgres_server: PostgresHandle, sql: str) -> None:
    ours = execute(postgres_server.dsn(INIT_DB), sql)
    theirs = execute(postgres_server.dsn(CONSUMER_DB), sql)
    assert ours and ours == theirs


def test_consumer_ddl_is_not_idempotent_but_ours_is(
    postgres_server: PostgresHandle, fresh_database: Callable[[str], str]
) -> None:
    """The reason init.sql exists: the consumer's script fails at its first CREATE INDEX on a rerun."""
    from tests.conftest import CONSUMER_DDL

    name = fresh_database(CONSUMER_DB)
    with pytest.raises(psycopg2.errors.DuplicateTable):
        execute(postgres_server.dsn(name), CONSUMER_DDL.read_text())


def _event() -> dict:
    return build_pattern_event(symbol="AAPL", pattern="Hammer", confidence=0.5)


def test_least_privilege_role_can_log_but_not_read(producer_role_settings: Settings) -> None:
    audit = AuditLog(producer_role_settings)
    event = _event()
    assert audit.log_published([event]) == [event["data"]["flow_id"]]
    conn = psycopg2.connect(producer_role_settings.postgres_dsn)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
            cur.execute("SELECT * FROM integration_events")
    finally:
        conn.close()
    audit.close()


def test_least_privilege_role_can_write_without_waiting_for_the_disk_then_flush(
    producer_role_settings: Settings,
) -> None:
    """The relay's path: a commit that does not wait for its fsync, then a flush that covers it."""
    audit = AuditLog(producer_role_settings)
    conn = psycopg2.connect(producer_role_settings.postgres_dsn)
    conn.autocommit = True
    try:
        event = _event()
        assert audit.log_published([event], durable=False) == [event["data"]["flow_id"]]
        with conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_insert_lsn()")  # past the commit record
            (commit_end,) = cur.fetchone()  # type: ignore[misc]
            audit.flush_wal()
            cur.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (commit_end,))
            assert cur.fetchone() == (True,)
    finally:
        conn.close()
        audit.close()


def test_missing_sequence_grant_is_a_config_error(
    postgres_server: PostgresHandle, fresh_database: Callable[[str], str], settings: Settings
) -> None:
    name = fresh_database(CONSUMER_DB)
    execute(
        postgres_server.dsn(name),
        "REVOKE USAGE, SELECT ON SEQUENCE integration_events_id_seq FROM app_readwrite",
    )
    audit = AuditLog(settings.replace(postgres_db=name))
    with pytest.raises(AuditConfigError, match="permission denied for sequence"):
        audit.log_published([_event()])
    audit.close()
