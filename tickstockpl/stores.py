"""The one door to each store: Redis and PostgreSQL connections built from Settings, driver errors
wrapped into ours (errors.py). The only module of the library that imports psycopg2."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, TypeAlias

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.sql
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tickstockpl import contract
from tickstockpl.errors import (
    AuditConfigError,
    AuditDataError,
    PostgresUnavailable,
    RedisConfigError,
    RedisUnavailable,
)
from tickstockpl.settings import Settings

PgConnection: TypeAlias = psycopg2.extensions.connection
PgCursor: TypeAlias = psycopg2.extensions.cursor


def redis_client(settings: Settings, *, timeout_s: float = 5.0) -> redis.Redis:
    """A client with bounded timeouts, so a dead Redis raises instead of hanging a loop.

    redis-py retries a failed command internally (up to 10 times from 6.x on, a refused password
    included: ~48 s measured). Our loops back off on their own and report each state change, so
    the client fails at once.
    """
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        username=settings.redis_username or None,
        password=settings.redis_password or None,
        **_tls(settings),
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=15,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
    )


def _tls(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS arguments: the server's certificate always verified (against
    REDIS_SSL_CA_CERTS, else the system's CAs), its name too unless REDIS_SSL_CHECK_HOSTNAME=0."""
    if not settings.redis_ssl:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": settings.redis_ssl_ca_certs or None,
        "ssl_certfile": settings.redis_ssl_certfile or None,
        "ssl_keyfile": settings.redis_ssl_keyfile or None,
        "ssl_check_hostname": settings.redis_ssl_check_hostname,
    }


def check_access(client: redis.Redis, what: str = "checking Redis") -> None:
    """PING, then read the producer's own keys: a wrong password and an ACL that forbids our
    commands or keys both raise RedisConfigError here, at start, instead of in a retry loop."""
    with redis_errors(what):
        pipe = client.pipeline(transaction=False)
        pipe.ping()
        pipe.exists(contract.KEY_HEARTBEAT)
        pipe.llen(contract.KEY_OUTBOX)
        pipe.hget(contract.KEY_STATS, contract.STAT_STARTED_AT)
        pipe.execute()


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Wrap redis-py errors: refused credentials are RedisConfigError (an operator must act), the
    rest RedisUnavailable (back off and try again)."""
    try:
        yield
    except (
        redis.exceptions.AuthenticationError,
        redis.exceptions.AuthorizationError,
        redis.exceptions.NoPermissionError,  # NOPERM: a command, key or channel the ACL forbids
    ) as exc:
        raise RedisConfigError(f"{what}: {exc}") from None
    except redis.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")) or any(
            text in str(exc) for text in ACL_REFUSALS
        ):
            raise RedisConfigError(f"{what}: {exc}") from None
        raise RedisUnavailable(f"{what}: {exc}") from None
    except redis.ConnectionError as exc:
        if any(text in str(exc) for text in TLS_REFUSALS):
            raise RedisConfigError(f"{what}: TLS: {exc}") from None
        raise RedisUnavailable(f"{what}: {exc}") from None
    except redis.RedisError as exc:
        raise RedisUnavailable(f"{what}: {exc}") from None


# An ACL refusal inside a Lua script comes back as a plain error, not NOPERM.
ACL_REFUSALS = ("can't run this command", "no permissions to")
# TLS handshake failures that retrying cannot fix: a CA that did not sign the server's certificate,
# a name that does not match it, TLS spoken to a plain port (or the reverse).
TLS_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "certificate verify failed")


# --- PostgreSQL -----------------------------------------------------------------------------------
_CONFIG_SQLSTATES = {"42883", "42P01", "42501", "28P01", "28000", "3D000", "42704"}
_CONFIG_MESSAGES = ("password authentication failed", "does not exist", "no password supplied", "permission")


def classify_postgres(exc: psycopg2.Error) -> Exception:
    """Sort a psycopg2 error into ours: AuditDataError (SQLSTATE class 22 or 23: this row can never be
    written), AuditConfigError (wrong password, function, table or grant missing: an operator must
    act), else PostgresUnavailable (try again later)."""
    code = getattr(exc, "pgcode", None) or ""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if code.startswith(("22", "23")):
        return AuditDataError(message, code)
    if code in _CONFIG_SQLSTATES:
        return AuditConfigError(message)
    if not code and isinstance(exc, psycopg2.OperationalError):
        if any(text in message for text in _CONFIG_MESSAGES):
            return AuditConfigError(message)
    return PostgresUnavailable(message)


@contextmanager
def postgres_errors() -> Iterator[None]:
    """Raise psycopg2 errors as ours (classify_postgres)."""
    try:
        yield
    except psycopg2.Error as exc:
        raise classify_postgres(exc) from None


def postgres_connection(
    settings: Settings,
    *,
    autocommit: bool = True,
    statement_timeout_ms: int | None = None,
    connect_timeout_s: int | None = None,
    client_encoding: str | None = None,
) -> PgConnection:
    """A connection to the configured database, with POSTGRES_STATEMENT_TIMEOUT_MS unless told
    otherwise (0: none); errors classified (PostgresUnavailable, AuditConfigError)."""
    return connect_postgres(
        settings.postgres_dsn,
        autocommit=autocommit,
        statement_timeout_ms=(
            settings.postgres_statement_timeout_ms if statement_timeout_ms is None else statement_timeout_ms
        ),
        connect_timeout_s=connect_timeout_s,
        client_encoding=client_encoding,
    )


def connect_postgres(
    dsn: str,
    *,
    autocommit: bool = True,
    statement_timeout_ms: int = 0,
    connect_timeout_s: int | None = None,
    client_encoding: str | None = None,
) -> PgConnection:
    """A connection to any database (an administrator's DSN included): the door every caller uses.

    Errors are classified (PostgresUnavailable, AuditConfigError); a statement timeout of 0 sets
    none (the server's default).
    """
    options: dict[str, Any] = {}
    if statement_timeout_ms > 0:
        options["options"] = f"-c statement_timeout={statement_timeout_ms}"
    if connect_timeout_s is not None:
        options["connect_timeout"] = connect_timeout_s
    if client_encoding is not None:
        options["client_encoding"] = client_encoding
    with postgres_errors():
        conn = psycopg2.connect(dsn, **options)
        conn.autocommit = autocommit
    return conn


def close_quietly(conn: PgConnection | None) -> None:
    """Close a connection that may already be dead; nothing to report if it is."""
    if conn is not None and not conn.closed:
        try:
            conn.close()
        except psycopg2.Error:
            pass


def execute_values(
    cursor: PgCursor, sql: str, rows: Sequence[Sequence[Any]], *, template: str, page_size: int
) -> None:
    """Many rows in one INSERT (psycopg2.extras.execute_values)."""
    psycopg2.extras.execute_values(cursor, sql, rows, template=template, page_size=page_size)


def copy_from(cursor: PgCursor, sql: str, data: IO[bytes], *, size: int = 1 << 20) -> None:
    """`COPY ... FROM STDIN` fed from a file-like (psycopg2's copy_expert): bulk loads at the
    database's own speed, the rows never becoming Python objects on the way."""
    cursor.copy_expert(sql, data, size=size)


def with_dbname(dsn: str, dbname: str) -> str:
    """The same connection parameters, another database (libpq keyword strings and URIs alike)."""
    return psycopg2.extensions.make_dsn(dsn, dbname=dbname)


def set_login_password(cursor: PgCursor, role: str, password: str) -> None:
    """ALTER ROLE ... LOGIN PASSWORD, the role's name quoted as an identifier, the password bound."""
    statement = psycopg2.sql.SQL("ALTER ROLE {} LOGIN PASSWORD %s").format(psycopg2.sql.Identifier(role))
    cursor.execute(statement, (password,))
