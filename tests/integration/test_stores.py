"""The PostgreSQL door (stores.py): every caller connects through it, and driver errors leave it as ours."""

from __future__ import annotations

import pytest

from tickstockpl.errors import AuditConfigError, AuditDataError, PostgresUnavailable
from tickstockpl.local_servers import free_port
from tickstockpl.settings import Settings
from tickstockpl.stores import connect_postgres, postgres_connection, postgres_errors


def _show(settings: Settings, name: str, **options: object) -> str:
    conn = postgres_connection(settings, **options)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute(f"SHOW {name}")
            row = cur.fetchone()
            assert row is not None
            return str(row[0])
    finally:
        conn.close()


def test_the_configured_statement_timeout_applies_unless_told_otherwise(settings: Settings) -> None:
    assert _show(settings.replace(postgres_statement_timeout_ms=1234), "statement_timeout") == "1234ms"
    assert _show(settings, "statement_timeout", statement_timeout_ms=0) == "0"
    assert _show(settings, "client_encoding", client_encoding="UTF8") == "UTF8"


def test_a_statement_over_the_timeout_is_unavailable(settings: Settings) -> None:
    conn = postgres_connection(settings, statement_timeout_ms=50)
    try:
        with pytest.raises(PostgresUnavailable, match="statement timeout"):
            with postgres_errors(), conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(2)")
    finally:
        conn.close()


def test_refused_data_is_a_data_error_with_its_sqlstate(settings: Settings) -> None:
    conn = postgres_connection(settings)
    try:
        with pytest.raises(AuditDataError) as refused:
            with postgres_errors(), conn.cursor() as cur:
                cur.execute("SELECT 'not a uuid'::uuid")
        assert refused.value.sqlstate == "22P02"
    finally:
        conn.close()


def test_a_wrong_password_is_a_configuration_error(settings: Settings) -> None:
    with pytest.raises(AuditConfigError, match="password"):
        postgres_connection(settings.replace(postgres_password="not-the-password"))


def test_nothing_listening_is_unavailable(settings: Settings) -> None:
    with pytest.raises(PostgresUnavailable):
        connect_postgres(f"host=127.0.0.1 port={free_port()} dbname=x user=x connect_timeout=2")
