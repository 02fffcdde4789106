"""The stack's Redis and PostgreSQL, found or started, and the database prepared.

Redis and PostgreSQL already reachable at the configured addresses are used as they are; a local
address that does not answer gets a local `redis-server` (appendonly) or PostgreSQL (initdb into
`var/`, run as an unprivileged user when we are root), run by our supervisord so that `down` stops
them. The database is then prepared: `db/init.sql` applied, the configured role's password set,
and under TICKSTOCKPL_DB_ROLES=least the producer's own roles' too (each generated once into `.env`
when there is none).
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import redis

from tickstockpl import health
from tickstockpl.errors import AuditConfigError, PostgresUnavailable
from tickstockpl.exitcodes import RET_CONFIG, RET_UNAVAILABLE
from tickstockpl.local_servers import LocalPostgres, LocalRedis, LocalServerError, unprivileged_user
from tickstockpl.settings import Settings, read_env_file
from tickstockpl.stack.base import StackError, say, wait_until
from tickstockpl.stack.supervisord import program_section
from tickstockpl.stores import (
    PgConnection,
    connect_postgres,
    postgres_errors,
    set_login_password,
    with_dbname,
)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class LocalStores:
    """Which stores `up` runs itself, in `var_dir`; the others answered and are used as they are."""

    var_dir: Path
    redis: bool = False
    postgres: bool = False
    durable: bool = True  # fsync on for the local PostgreSQL (tests may trade it for speed)

    def redis_server(self, settings: Settings) -> LocalRedis:
        return LocalRedis(self.var_dir / "redis", port=settings.redis_port)

    def postgres_server(self, settings: Settings) -> LocalPostgres:
        return LocalPostgres(self.var_dir / "postgres", port=settings.postgres_port, durable=self.durable)

    def programs(self, settings: Settings) -> str | None:
        """Prepare var/ for the local servers (initdb once) and return them as supervisord programs,
        in a group that starts first and stops last; None when there are none."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.var_dir.chmod(0o755)  # PostgreSQL runs as another user and needs to reach var/postgres
        sections: list[str] = []
        names: list[str] = []
        if self.redis:
            local = self.redis_server(settings)
            local.directory.mkdir(parents=True, exist_ok=True)
            sections.append(program_section("redis", local.command(), stopsignal="TERM", stopwaitsecs=60))
            names.append("redis")
        if self.postgres:
            pg = self.postgres_server(settings)
            pg.initdb()
            try:
                owner = unprivileged_user()
            except LocalServerError as exc:
                raise StackError(str(exc), RET_CONFIG) from None
            user = owner.pw_name if owner else None
            sections.append(
                program_section("postgres", pg.command(), stopsignal="INT", stopwaitsecs=90, user=user)
            )
            names.append("postgres")
        if not names:
            return None
        header = "; written by tickstockpl up: local stores, started first and stopped last\n"
        group = f"[group:stores]\nprograms={','.join(names)}\npriority=10\n\n"
        return header + group + "\n".join(sections)


def choose_stores(settings: Settings, var_dir: Path, durable: bool = True) -> LocalStores:
    """Attach to what answers; plan local servers for local addresses that do not."""
    s = settings
    local_redis = _run_locally(
        "Redis",
        _redis_answers(s),
        s.redis_host,
        s.redis_target,
        f"nothing at {s.redis_target}; starting a local redis-server in {var_dir}/redis",
    )
    local_postgres = _run_locally(
        "PostgreSQL",
        bool(s.database_uri) or tcp_open(s.postgres_host, s.postgres_port),
        s.postgres_host,
        s.postgres_target,
        f"nothing at port {s.postgres_port}; starting one in {var_dir}/postgres",
    )
    return LocalStores(var_dir, redis=local_redis, postgres=local_postgres, durable=durable)


def _run_locally(name: str, answers: bool, host: str, target: str, starting: str) -> bool:
    """False: use the server that answers; True: run one locally; StackError for a remote one that is down."""
    if answers:
        say(f"{name}: using the server at {target}")
        return False
    if host in LOCAL_HOSTS:
        say(f"{name}: {starting}")
        return True
    raise StackError(f"{name} at {target} does not answer", RET_UNAVAILABLE)


def _redis_answers(settings: Settings) -> bool:
    client = health.checking_client(settings, timeout_s=2)
    try:
        return bool(client.ping())
    except redis.AuthenticationError as exc:
        raise StackError(
            f"Redis at {settings.redis_target}: {exc} (check REDIS_PASSWORD)", RET_CONFIG
        ) from None
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def tcp_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def ensure_password(settings: Settings, stores: LocalStores, env_file: Path | None) -> Settings:
    """A role we set up needs a password: generate one once and keep it in .env. Under
    TICKSTOCKPL_DB_ROLES=least, so do the producer's own roles (audit, read, backtest)."""
    if settings.database_uri or not (stores.postgres or settings.postgres_admin_uri):
        return settings  # someone else's server: its passwords are theirs to give us
    if not settings.postgres_password:
        settings = settings.replace(postgres_password=ensure_env_secret(env_file, "POSTGRES_PASSWORD"))
    if settings.db_roles == "least":
        for field_name, variable in ROLE_PASSWORDS:
            if not getattr(settings, field_name):
                settings = settings.replace(**{field_name: ensure_env_secret(env_file, variable)})
    return settings


# The producer's roles whose passwords `up` sets under `least`: (Settings field, variable in .env).
ROLE_PASSWORDS = (
    ("audit_password", "POSTGRES_AUDIT_PASSWORD"),
    ("read_password", "POSTGRES_READ_PASSWORD"),
    ("backtest_password", "POSTGRES_BACKTEST_PASSWORD"),
)


def _role_passwords(settings: Settings) -> dict[str, str]:
    """{role: password} that `prepare_database` sets: POSTGRES_USER's, and the producer's roles'."""
    passwords = {settings.postgres_user: settings.postgres_password}
    if settings.db_roles == "least":
        for user, password in (
            (settings.audit_user, settings.audit_password),
            (settings.read_user, settings.read_password),
            (settings.backtest_user, settings.backtest_password),
        ):
            if password:
                passwords[user] = password
    return passwords


def ensure_env_secret(env_file: Path | None, name: str) -> str:
    """The value of `name` in `env_file`, generated and appended (mode 0600) when missing or empty."""
    existing = read_env_file(env_file) if env_file is not None else {}
    if existing.get(name):
        return existing[name]
    value = secrets.token_urlsafe(18)
    if env_file is not None:
        text = env_file.read_text() if env_file.exists() else ""
        with open(env_file, "a") as handle:
            if text and not text.endswith("\n"):
                handle.write("\n")
            handle.write(f"# generated by make up\n{name}={value}\n")
        env_file.chmod(0o600)
        say(f"generated {name} into {env_file}")
    return value


def prepare_database(settings: Settings, stores: LocalStores, root: Path) -> None:
    """Apply db/init.sql and set the configured role's password (local server or admin URI)."""
    s = settings
    if stores.postgres:
        pg = stores.postgres_server(s)
        admin = f"host={pg.socket_dir} port={pg.port} user={pg.superuser} dbname=postgres connect_timeout=3"
    elif s.postgres_admin_uri:
        admin = s.postgres_admin_uri
    else:
        say("PostgreSQL: no POSTGRES_ADMIN_URI, so db/init.sql is not applied; checking the schema only")
        return
    wait_until(lambda: _pg_ready(admin), 90, "PostgreSQL to accept connections")
    if s.database_uri:
        raise StackError(
            "DATABASE_URI is set: make up prepares databases named by POSTGRES_* only", RET_CONFIG
        )
    conn = _connect(admin)
    try:
        with postgres_errors(), conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (s.postgres_db,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{s.postgres_db}"')
    finally:
        conn.close()
    conn = _connect(with_dbname(admin, s.postgres_db))
    try:
        with postgres_errors(), conn.cursor() as cur:
            cur.execute((root / "db" / "init.sql").read_text())
            passwords = _role_passwords(s)
            for role, password in passwords.items():
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                if cur.fetchone() is None:
                    raise StackError(f"role {role} does not exist after db/init.sql", RET_CONFIG)
                set_login_password(cur, role, password)
    finally:
        conn.close()
    say(f"PostgreSQL: db/init.sql applied to {s.postgres_db}; passwords set for {', '.join(passwords)}")


def _connect(dsn: str) -> PgConnection:
    """An administrator's connection: no statement timeout (db/init.sql may take its time)."""
    return connect_postgres(dsn)


def _pg_ready(dsn: str) -> bool:
    try:
        _connect(dsn).close()
    except (PostgresUnavailable, AuditConfigError):  # starting up, or not yet accepting this role
        return False
    return True
