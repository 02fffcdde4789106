"""The producer's least-privilege roles (db/init.sql) against the real PostgreSQL (issue 13, 6-7).

The audit writer (tickstockpl_producer) runs the real relay, writes its rows and skips existing
ones through the SECURITY DEFINER function, and cannot read, change or erase the audit trail.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
import redis

from tests.conftest import (
    APP_ROLE,
    BACKTEST_ROLE,
    INIT_DB,
    PRODUCER_ROLE,
    READER_ROLE,
    ROOT,
    PostgresHandle,
    execute,
)
from tests.integration.test_relay_support import (
    Subscriber,
    audit_rows,
    flow_ids,
    make_events,
    queues_empty,
)
from tests.support import run_cli
from tickstockpl import contract, outbox
from tickstockpl.audit import LOG_NEW_FUNCTION, AuditLog
from tickstockpl.exitcodes import RET_OK
from tickstockpl.services import relay
from tickstockpl.settings import Settings, read_env_file
from tickstockpl.stack.embedded import EmbeddedStack
from tickstockpl.stack.stores import LocalStores, ensure_password, prepare_database

# Every statement that would read, change or erase the audit trail.
FORBIDDEN = {
    "select": "SELECT count(*) FROM integration_events",
    "delete": "DELETE FROM integration_events",
    "truncate": "TRUNCATE integration_events",
    "update": "UPDATE integration_events SET checkpoint = 'FORGED'",
    "view": "SELECT count(*) FROM pattern_flow_analysis",
}


@pytest.fixture
def subscriber(redis_client: redis.Redis) -> Iterator[Subscriber]:
    sub = Subscriber(redis_client)
    yield sub
    sub.close()


def _refused(dsn: str, sql: str) -> str:
    """Run `sql` in a transaction that is rolled back; the error PostgreSQL answered with."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
        return ""
    except psycopg2.errors.InsufficientPrivilege as exc:
        return str(exc).splitlines()[0]
    finally:
        conn.rollback()
        conn.close()


def test_the_relay_as_the_audit_role_writes_rows_once(
    producer_role_settings: Settings,
    redis_client: redis.Redis,
    subscriber: Subscriber,
    postgres_server: PostgresHandle,
) -> None:
    """Finding 6: the relay's duplicate check SELECTed, so every row went to the backlog."""
    events = make_events(25)
    # Half were audited before a crash: the relay must see them without reading the table.
    payloads = [contract.encode(event).encode() for event in events[:10]]
    audit = AuditLog(producer_role_settings)
    try:
        audit.log_published(events[:10])
    finally:
        audit.close()
    redis_client.lpush(contract.KEY_PROCESSING, *payloads)
    outbox.enqueue(redis_client, events[10:])
    assert relay.run(producer_role_settings.replace(relay_batch_size=7), burst=True) == RET_OK
    subscriber.wait_for_flows(flow_ids(events))
    superuser = producer_role_settings.replace(
        postgres_user=postgres_server.superuser, postgres_password=postgres_server.superuser_password
    )
    assert audit_rows(superuser) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert queues_empty(redis_client)
    assert redis_client.llen(contract.KEY_AUDIT_BACKLOG) == 0


def test_the_audit_role_uses_the_definer_function_and_skips_existing_rows(
    producer_role_settings: Settings, postgres_server: PostgresHandle
) -> None:
    events = make_events(6)
    audit = AuditLog(producer_role_settings)
    try:
        assert audit.log_published(events[:3]) == [e["data"]["flow_id"] for e in events[:3]]
        assert audit.uses_definer_function
        written = audit.log_published(events + events[:2], skip_existing=True, durable=False)
    finally:
        audit.close()
    assert sorted(written) == sorted(e["data"]["flow_id"] for e in events[3:])
    count = execute(postgres_server.dsn(INIT_DB), "SELECT count(*) FROM integration_events")
    assert count == [(6,)]


def _seq_scans_when_idle(dsn: str) -> int:
    """integration_events' sequential scans so far, once no other backend on its database is left.

    A backend's counters reach pg_stat_user_tables at the latest when it exits: wait for every other
    backend of the database to be gone (a condition, not a duration), then read them.
    """
    others = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    for _ in range(200):
        if execute(dsn, others) == [(0,)]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("another backend stayed connected")
    rows = execute(dsn, "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'integration_events'")
    return int(rows[0][0])


def test_the_definer_function_finds_existing_rows_by_index_whatever_plan_it_cached(
    producer_role_settings: Settings, postgres_server: PostgresHandle
) -> None:
    """The relay's skip-existing write must never scan the whole audit table.

    PL/pgSQL caches a generic plan after five calls. Made while the table was empty (a new
    database, or after a TRUNCATE), it scanned the table on every later batch: in bench_relay the
    relay's p99 at 10,000/s grew to 15 s (session 4). The function forbids sequential scans, so
    the flow_id index is used whatever the statistics or the cached plan say.
    """
    admin = postgres_server.dsn(INIT_DB)
    execute(admin, "ALTER TABLE integration_events SET (autovacuum_enabled = false)")  # no re-plan
    before = _seq_scans_when_idle(admin)
    audit = AuditLog(producer_role_settings)
    try:
        for _ in range(8):  # past the five custom plans: the generic plan is made on an empty table
            audit.log_published(make_events(2), skip_existing=True, durable=False)
        execute(
            admin,
            "INSERT INTO integration_events (flow_id, event_type, source_system, checkpoint)"
            " SELECT gen_random_uuid(), 'pattern', %s, %s FROM generate_series(1, 20000)",
            (contract.SOURCE_SYSTEM, contract.CHECKPOINT_PATTERN_PUBLISHED),
        )
        for _ in range(5):
            audit.log_published(make_events(50), skip_existing=True, durable=False)
        assert audit.uses_definer_function
    finally:
        audit.close()
        execute(admin, "ALTER TABLE integration_events RESET (autovacuum_enabled)")
    assert _seq_scans_when_idle(admin) == before


@pytest.mark.parametrize("statement", sorted(FORBIDDEN))
def test_the_audit_role_cannot_read_change_or_erase_the_trail(
    statement: str, producer_role_settings: Settings, postgres_server: PostgresHandle
) -> None:
    """Finding 7: the role the relay runs as could DELETE, TRUNCATE and UPDATE every row."""
    audit = AuditLog(producer_role_settings)
    try:
        audit.log_published(make_events(3))
    finally:
        audit.close()
    error = _refused(postgres_server.dsn(INIT_DB, PRODUCER_ROLE), FORBIDDEN[statement])
    assert error.startswith("permission denied for"), error
    count = execute(postgres_server.dsn(INIT_DB), "SELECT count(*) FROM integration_events")
    assert count == [(3,)]


def test_the_default_app_role_still_can_erase_which_is_why_it_is_the_weaker_option(
    settings: Settings, postgres_server: PostgresHandle
) -> None:
    """The consumer's grant (ALL to app_readwrite) is theirs: the check that it is not ours to use."""
    assert _refused(postgres_server.dsn(INIT_DB, APP_ROLE), FORBIDDEN["delete"]) == ""


def test_nobody_else_may_call_the_definer_function(postgres_server: PostgresHandle) -> None:
    """EXECUTE is granted to PUBLIC by default: revoked, so the reader and backtester are refused."""
    call = "SELECT tickstockpl_log_new('[]'::jsonb, 'x', 'x', 'x', 'x')"
    for role in (READER_ROLE, BACKTEST_ROLE):
        error = _refused(postgres_server.dsn(INIT_DB, role), call)
        assert error.startswith("permission denied for function tickstockpl_log_new"), (role, error)


def test_the_definer_function_is_pinned_and_not_owned_by_a_superuser(postgres_server: PostgresHandle) -> None:
    rows = execute(
        postgres_server.dsn(INIT_DB),
        "SELECT p.prosecdef, p.proconfig, r.rolsuper, r.rolcanlogin FROM pg_proc p"
        " JOIN pg_roles r ON r.oid = p.proowner WHERE p.proname = 'tickstockpl_log_new'",
    )
    assert rows == [(True, ["search_path=pg_catalog, public, pg_temp", "enable_seqscan=off"], False, False)]


def test_the_reader_reads_and_writes_nothing(postgres_server: PostgresHandle, settings: Settings) -> None:
    dsn = postgres_server.dsn(INIT_DB, READER_ROLE)
    assert _refused(dsn, FORBIDDEN["select"]) == ""
    assert _refused(dsn, FORBIDDEN["view"]) == ""
    for statement in ("delete", "truncate", "update"):
        assert _refused(dsn, FORBIDDEN[statement]).startswith("permission denied")
    insert = "SELECT log_integration_event(NULL, 'x', 'x', 'x')"
    assert _refused(dsn, insert).startswith("permission denied")


def test_the_backtester_reads_history_only(postgres_server: PostgresHandle, settings: Settings) -> None:
    dsn = postgres_server.dsn(INIT_DB, BACKTEST_ROLE)
    assert _refused(dsn, "SELECT count(*) FROM historical_bars") == ""
    assert _refused(dsn, "DELETE FROM historical_bars").startswith("permission denied")
    assert _refused(dsn, FORBIDDEN["select"]).startswith("permission denied")


# --- `make up`: the roles it creates and what the services run with ----------------------------------


@pytest.fixture
def prepared_stack(
    postgres_server: PostgresHandle, redis_server: Any, tmp_path: Path
) -> Iterator[EmbeddedStack]:
    """`up`'s database step against an attached server: POSTGRES_ADMIN_URI, a new database."""
    dbname = f"t_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        redis_host=redis_server.host,
        redis_port=redis_server.port,
        postgres_host=postgres_server.host,
        postgres_port=postgres_server.port,
        postgres_db=dbname,
        postgres_admin_uri=postgres_server.dsn("postgres"),
        # Roles are cluster-wide: `up` sets these passwords, so they must stay the session's own.
        postgres_password=postgres_server.app_password,
        read_password=postgres_server.reader_password,
    )
    env_file = tmp_path / ".env"
    # One generated by `up` (the audit and backtest roles'), one given (the reader's): both kept.
    env_file.write_text(
        f"POSTGRES_AUDIT_PASSWORD={postgres_server.producer_password}\n"
        f"POSTGRES_BACKTEST_PASSWORD={postgres_server.backtest_password}\n"
    )
    stack = EmbeddedStack(settings=settings, var_dir=tmp_path / "var", env_file=env_file)
    stores = LocalStores(tmp_path / "var")
    stack.settings = ensure_password(settings, stores, env_file)
    prepare_database(stack.settings, stores, ROOT)
    yield stack
    execute(postgres_server.dsn("postgres"), f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def test_up_runs_the_services_as_the_audit_role_without_the_admin_uri(
    prepared_stack: EmbeddedStack, postgres_server: PostgresHandle, redis_client: redis.Redis
) -> None:
    """Findings 7 and 8: the services ran as app_readwrite, with the superuser URI in their env."""
    env = prepared_stack.environment()
    assert "POSTGRES_ADMIN_URI" not in env and "POSTGRES_SUPERUSER_PASSWORD" not in env
    assert postgres_server.superuser_password not in "\n".join(env.values())
    assert env["POSTGRES_USER"] == PRODUCER_ROLE
    assert env["TICKSTOCKPL_ENV_FILE"] == ""  # the services read no .env (it holds other passwords)
    services = Settings.from_env(env)
    assert services.postgres_admin_uri == ""
    # The relay, with exactly what the services get, audits; its role cannot erase.
    events = make_events(5)
    outbox.enqueue(redis_client, events)
    assert relay.run(services, burst=True) == RET_OK
    superuser = services.replace(
        postgres_user=postgres_server.superuser, postgres_password=postgres_server.superuser_password
    )
    assert audit_rows(superuser) == {flow_id: 1 for flow_id in flow_ids(events)}
    for statement in ("delete", "truncate", "update", "select"):
        assert _refused(services.postgres_dsn, FORBIDDEN[statement]).startswith("permission denied")
    # doctor's reads and the backtester get their own roles, with passwords `up` generated.
    assert services.for_reading().postgres_user == READER_ROLE
    assert services.for_backtest().postgres_user == BACKTEST_ROLE
    assert _refused(services.for_reading().postgres_dsn, FORBIDDEN["select"]) == ""
    assert _refused(services.for_backtest().postgres_dsn, "SELECT count(*) FROM historical_bars") == ""
    generated = read_env_file(prepared_stack.env_file)  # type: ignore[arg-type]
    assert generated["POSTGRES_AUDIT_PASSWORD"] == postgres_server.producer_password  # kept, not renewed
    assert "POSTGRES_READ_PASSWORD" not in generated  # given in the environment: nothing to generate


def test_shared_roles_keep_the_configured_user(prepared_stack: EmbeddedStack) -> None:
    """TICKSTOCKPL_DB_ROLES=shared: the weaker, app_readwrite-for-everything setup, still possible."""
    prepared_stack.settings = prepared_stack.settings.replace(db_roles="shared")
    env = prepared_stack.environment()
    assert env["POSTGRES_USER"] == APP_ROLE
    assert "POSTGRES_ADMIN_URI" not in env


# --- doctor says which setup it sees ----------------------------------------------------------------


def _doctor(settings: Settings) -> dict[str, Any]:
    result = run_cli(settings, "doctor", "--json")
    report: dict[str, Any] = json.loads(result.stdout)
    report["code"] = result.returncode
    report["by_name"] = {check["name"]: check for check in report["checks"]}
    return report


def test_doctor_fails_when_the_audit_role_cannot_check_for_duplicates(
    producer_role_settings: Settings, fresh_database: Any, postgres_server: PostgresHandle
) -> None:
    """Finding 6: without SELECT and without tickstockpl_log_new every row went to the backlog, and
    doctor passed."""
    dbname = fresh_database()
    execute(postgres_server.dsn(dbname), f"DROP FUNCTION {LOG_NEW_FUNCTION}")
    report = _doctor(producer_role_settings.replace(postgres_db=dbname))
    assert report["code"] == 1
    check = report["by_name"]["duplicate_check"]
    assert check["state"] == "fail" and "every row goes to the audit backlog" in check["detail"]
    assert "duplicate_check" in report["required_failed"]


def test_doctor_names_the_weaker_shared_role_and_the_least_privilege_one(
    settings: Settings, producer_role_settings: Settings
) -> None:
    """Finding 7: nothing said that the role in use could erase the audit trail."""
    shared = _doctor(settings)["by_name"]["privileges"]
    assert shared["state"] == "fail" and not shared["required"]
    assert "app_readwrite may UPDATE, DELETE, TRUNCATE integration_events" in shared["detail"]
    least = _doctor(producer_role_settings)["by_name"]["privileges"]
    assert least["state"] == "pass"
    assert least["detail"] == "least privilege: tickstockpl_producer writes audit rows only, reads nothing"


def test_doctor_reads_the_flows_as_the_read_role(
    producer_role_settings: Settings, postgres_server: PostgresHandle
) -> None:
    settings = producer_role_settings.replace(read_password=postgres_server.reader_password)
    report = _doctor(settings)
    assert report["by_name"]["recent_patterns"]["state"] != "skip"
    assert report["by_name"]["duplicate_check"]["state"] == "pass"
