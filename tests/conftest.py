"""Real Redis and PostgreSQL for the tests, one pair per test session.

testcontainers when a Docker daemon answers a ping within ~2 s (CI starts one; TICKSTOCKPL_TEST_DOCKER=
never forces the other way); otherwise the locally installed `redis-server` and PostgreSQL on free
ports in a temp dir. Never a server that happens to be running. The containers publish on fixed free
host ports, so a stop/start keeps the address; the fixtures remove their own containers (the
testcontainers reaper, ryuk, is disabled: it cannot be pulled where no registry answers).

Two databases: `tickstock` from db/init.sql, and `tickstock_consumer` from the consumer's DDL as the
contract gives it plus only the sequence grant, so the producer is proven against both.

Fixtures for tests:
- `redis_server` (session): host, port, stop(), start(), restart();
- `redis_client`: a client on a flushed server (per test);
- `postgres_server` (session): dsn(db, user, password), stop(), start();
- `settings` / `consumer_settings` / `producer_role_settings`: Settings for db/init.sql as
  app_readwrite, for the consumer's schema as app_readwrite, and for the least-privilege audit
  writer (tickstockpl_producer); `reader_role_settings` / `backtest_role_settings`: db/init.sql as
  tickstockpl_reader and tickstockpl_backtester;
  `integration_events` is truncated in both databases before each test;
- `pg_super(dbname)`: an autocommit superuser connection;
- `fresh_database(schema)`: a new database cloned from a template, for tests that break the schema.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
import redis

from tickstockpl.local_servers import LocalPostgres, LocalRedis, free_port
from tickstockpl.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
INIT_SQL = ROOT / "db" / "init.sql"
CONSUMER_DDL = Path(__file__).with_name("sql") / "consumer_ddl.sql"
APP_ROLE = "app_readwrite"
PRODUCER_ROLE = "tickstockpl_producer"
READER_ROLE = "tickstockpl_reader"
BACKTEST_ROLE = "tickstockpl_backtester"
INIT_DB = "tickstock"
CONSUMER_DB = "tickstock_consumer"


def docker_available(timeout_s: float = 2.0) -> bool:
    """True when a Docker daemon answers a ping in time (CI starts one; TICKSTOCKPL_TEST_DOCKER=never: no)."""
    if os.environ.get("TICKSTOCKPL_TEST_DOCKER", "auto") == "never":
        return False
    docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if docker_host.startswith("unix://"):
        # Probe the socket first: the docker library leaks a socket when nobody answers.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout_s)
            try:
                probe.connect(docker_host.removeprefix("unix://"))
            except OSError:
                return False
    try:
        import docker

        client = docker.from_env(timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@dataclass
class PostgresHandle:
    """What tests need of a PostgreSQL server, whichever way it was started."""

    host: str
    port: int
    superuser: str
    superuser_password: str
    app_password: str
    producer_password: str
    reader_password: str
    backtest_password: str
    _stop: Callable[[], None]
    _start: Callable[[], None]

    def password_for(self, user: str) -> str:
        return {
            self.superuser: self.superuser_password,
            APP_ROLE: self.app_password,
            PRODUCER_ROLE: self.producer_password,
            READER_ROLE: self.reader_password,
            BACKTEST_ROLE: self.backtest_password,
        }[user]

    def dsn(self, dbname: str, user: str | None = None) -> str:
        user = user or self.superuser
        password = self.password_for(user)
        where = f"host={self.host} port={self.port} dbname={dbname}"
        return f"{where} user={user} password={password} connect_timeout=3"

    def stop(self) -> None:
        self._stop()

    def start(self) -> None:
        self._start()


@pytest.fixture(scope="session")
def use_docker() -> bool:
    return docker_available()


@pytest.fixture(scope="session")
def server_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its directories are 0700 root, and PostgreSQL runs as another user.
    path = Path(tempfile.mkdtemp(prefix="tickstockpl-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# The images docker-compose.yml runs (official, or `make offline-images` stand-ins of them).
REDIS_IMAGE = "redis:7-alpine"
POSTGRES_IMAGE = "postgres:15-alpine"


def without_reaper() -> None:
    """testcontainers' reaper (ryuk) is pulled from a registry; our fixtures stop their containers."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def redis_container() -> Any:
    """A Redis container (appendonly, as in compose) on a fixed free host port, not yet started."""
    without_reaper()
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer(REDIS_IMAGE).with_command("redis-server --appendonly yes")
    return container.with_bind_ports(6379, free_port())


def postgres_container() -> Any:
    """A PostgreSQL container (superuser postgres) on a fixed free host port, not yet started."""
    without_reaper()
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(
        POSTGRES_IMAGE, username="postgres", password=secrets.token_urlsafe(12), dbname="postgres"
    )
    return container.with_bind_ports(5432, free_port())


@pytest.fixture(scope="session")
def redis_server(use_docker: bool, server_dir: Path) -> Iterator[Any]:
    if use_docker:
        container = redis_container().start()
        try:
            yield _ContainerRedis(container)
        finally:
            container.stop()
        return
    server = LocalRedis(server_dir / "redis").start()
    yield server
    server.stop(kill=True)


def _start_postgres_again(container: Any) -> None:
    """Start a stopped PostgreSQL container and wait until it accepts connections again."""
    container.get_wrapped_container().start()
    dsn = (
        f"host={container.get_container_host_ip()} port={container.get_exposed_port(5432)}"
        f" user=postgres password={container.password} dbname=postgres connect_timeout=2"
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg2.connect(dsn).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class _ContainerRedis:
    """The LocalRedis interface (host, port, stop, start, restart) over a Redis container."""

    def __init__(self, container: Any) -> None:
        self._container = container
        self.host = container.get_container_host_ip()
        self.port = int(container.get_exposed_port(6379))

    def stop(self, kill: bool = False) -> None:
        wrapped = self._container.get_wrapped_container()
        if kill:
            wrapped.kill()
            wrapped.wait(timeout=30)
        else:
            wrapped.stop(timeout=30)

    def start(self) -> None:
        self._container.get_wrapped_container().start()
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            client.close()

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def _postgres_process(use_docker: bool, directory: Path) -> Iterator[dict[str, Any]]:
    """Start PostgreSQL one way or the other; yield where it is and how to stop and start it."""
    if use_docker:
        container = postgres_container().start()
        try:
            yield {
                "host": container.get_container_host_ip(),
                "port": int(container.get_exposed_port(5432)),
                "superuser": "postgres",
                "superuser_password": container.password,
                "_stop": container.get_wrapped_container().stop,
                "_start": lambda: _start_postgres_again(container),
            }
        finally:
            container.stop()
        return
    server = LocalPostgres(directory).start()
    yield {
        "host": server.host,
        "port": server.port,
        "superuser": server.superuser,
        "superuser_password": server.superuser_password,
        "_stop": server.stop,
        "_start": server.start,
    }
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(use_docker: bool, server_dir: Path) -> Iterator[PostgresHandle]:
    with _postgres_process(use_docker, server_dir / "postgres") as where:
        handle = PostgresHandle(
            **where,
            app_password=secrets.token_urlsafe(12),
            producer_password=secrets.token_urlsafe(12),
            reader_password=secrets.token_urlsafe(12),
            backtest_password=secrets.token_urlsafe(12),
        )
        _create_databases(handle)
        yield handle


def _create_databases(pg: PostgresHandle) -> None:
    """Both schemas, each also kept as a template for `fresh_database`."""
    execute(pg.dsn("postgres"), f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD %s", (pg.app_password,))
    for name in (INIT_DB, CONSUMER_DB):
        execute(pg.dsn("postgres"), f"CREATE DATABASE {name}")
    execute(pg.dsn(INIT_DB), INIT_SQL.read_text())
    for role in (PRODUCER_ROLE, READER_ROLE, BACKTEST_ROLE):
        execute(pg.dsn(INIT_DB), f"ALTER ROLE {role} PASSWORD %s", (pg.password_for(role),))
    execute(pg.dsn(CONSUMER_DB), CONSUMER_DDL.read_text())  # as the consumer ships it, run by a superuser
    execute(pg.dsn(CONSUMER_DB), f"GRANT USAGE, SELECT ON SEQUENCE integration_events_id_seq TO {APP_ROLE}")
    for name in (INIT_DB, CONSUMER_DB):
        execute(pg.dsn("postgres"), f"CREATE DATABASE {name}_template TEMPLATE {name}")


def _connect(dsn: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def execute(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement (autocommit) on a short-lived connection; rows if it returns any."""
    conn = _connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture
def pg_super(postgres_server: PostgresHandle) -> Iterator[Callable[[str], psycopg2.extensions.connection]]:
    opened: list[psycopg2.extensions.connection] = []

    def connect(dbname: str = INIT_DB) -> psycopg2.extensions.connection:
        conn = _connect(postgres_server.dsn(dbname))
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture
def redis_client(redis_server: Any) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port, socket_timeout=5)
    client.flushall()
    yield client
    client.close()


def _settings(redis_server: Any, pg: PostgresHandle, dbname: str, user: str) -> Settings:
    return Settings(
        redis_host=redis_server.host,
        redis_port=redis_server.port,
        postgres_host=pg.host,
        postgres_port=pg.port,
        postgres_db=dbname,
        postgres_user=user,
        postgres_password=pg.password_for(user),
    )


@pytest.fixture
def clean_databases(postgres_server: PostgresHandle) -> None:
    for dbname in (INIT_DB, CONSUMER_DB):
        execute(postgres_server.dsn(dbname), "TRUNCATE integration_events RESTART IDENTITY")


@pytest.fixture
def settings(
    redis_client: redis.Redis, redis_server: Any, postgres_server: PostgresHandle, clean_databases: None
) -> Settings:
    return _settings(redis_server, postgres_server, INIT_DB, APP_ROLE)


@pytest.fixture
def consumer_settings(
    redis_client: redis.Redis, redis_server: Any, postgres_server: PostgresHandle, clean_databases: None
) -> Settings:
    return _settings(redis_server, postgres_server, CONSUMER_DB, APP_ROLE)


@pytest.fixture
def producer_role_settings(
    redis_client: redis.Redis, redis_server: Any, postgres_server: PostgresHandle, clean_databases: None
) -> Settings:
    return _settings(redis_server, postgres_server, INIT_DB, PRODUCER_ROLE)


@pytest.fixture
def reader_role_settings(
    redis_client: redis.Redis, redis_server: Any, postgres_server: PostgresHandle, clean_databases: None
) -> Settings:
    return _settings(redis_server, postgres_server, INIT_DB, READER_ROLE)


@pytest.fixture
def backtest_role_settings(
    redis_client: redis.Redis, redis_server: Any, postgres_server: PostgresHandle, clean_databases: None
) -> Settings:
    return _settings(redis_server, postgres_server, INIT_DB, BACKTEST_ROLE)


@pytest.fixture
def fresh_database(postgres_server: PostgresHandle) -> Iterator[Callable[[str], str]]:
    """Clone a template into a new database (name returned); dropped after the test."""
    created: list[str] = []

    def create(schema: str = INIT_DB) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        execute(postgres_server.dsn("postgres"), f"CREATE DATABASE {name} TEMPLATE {schema}_template")
        created.append(name)
        return name

    yield create
    for name in created:
        execute(postgres_server.dsn("postgres"), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
