"""Every setting, read once from the environment (and `.env`), into one frozen object.

Defaults follow the integration document (Redis localhost:6379; PostgreSQL localhost:5433, database
`tickstock`, role `app_readwrite`). No password lives in code: `.env.example` documents each variable.
A bad value fails at start with a message naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values

from tickstockpl.sharding import Shard, detector_process

T = TypeVar("T")


# Twenty liquid US tickers: enough that the synthetic default publishes several events every 10 s.
DEFAULT_SYMBOLS = (
    "AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META", "TSLA", "AVGO", "JPM", "V",
    "WMT", "XOM", "UNH", "MA", "JNJ", "PG", "HD", "COST", "NFLX", "AMD",
)  # fmt: skip


# The producer's roles, created by db/init.sql (docs/stack.md, "Least privilege").
AUDIT_ROLE = "tickstockpl_producer"  # write-only: EXECUTE + INSERT, no SELECT/UPDATE/DELETE/TRUNCATE
READ_ROLE = "tickstockpl_reader"  # SELECT only: doctor's flow checks
BACKTEST_ROLE = "tickstockpl_backtester"  # SELECT on historical_bars only
# Names an environment variable that holds the dotenv file to read; empty: none (the stack's
# services get every setting spelled out in their environment, and may not read .env).
ENV_FILE_VARIABLE = "TICKSTOCKPL_ENV_FILE"


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _positive(parse: Callable[[str], T]) -> Callable[[str], T]:
    def parse_positive(text: str) -> T:
        value = parse(text)
        if not value > 0:  # type: ignore[operator]
            raise ValueError("must be greater than 0")
        return value

    return parse_positive


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be within 0-1")
    return value


def _int_within(low: int, high: int) -> Callable[[str], int]:
    def parse_int_within(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be within {low}-{high}")
        return value

    return parse_int_within


def _symbol_or_empty(text: str) -> str:
    """A symbol as the feed spells it (it must fit the consumer's 20 characters), or empty."""
    value = text.strip()
    if len(value) > 20 or not all(c.isprintable() and not c.isspace() for c in value):
        raise ValueError("must be one symbol (at most 20 characters, no spaces) or empty")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse_choice(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text

    return parse_choice


def _timeframes(text: str) -> tuple[str, ...]:
    """Timeframe labels (5m, 15m, 1h, 1d), checked, in order of length; `none` for none."""
    from tickstockpl.bars import parse_timeframe, timeframe_label

    if text.strip().lower() == "none":
        return ()
    seconds = sorted({parse_timeframe(label) for label in _parse_list(text)})
    return tuple(timeframe_label(length) for length in seconds)


def _setting(env: str, default: Any, parse: Callable[[str], Any] = str, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """The whole configuration. Build it with `Settings.from_env()`."""

    # Redis: the consumer's server, and the home of our outbox.
    redis_host: str = _setting("REDIS_HOST", "localhost")
    redis_port: int = _setting("REDIS_PORT", 6379, _port)
    redis_db: int = _setting("REDIS_DB", 0, int)
    redis_password: str = _setting("REDIS_PASSWORD", "", secret=True)
    redis_username: str = _setting("REDIS_USERNAME", "")  # an ACL user (deploy/redis-producer.acl)
    # TLS (a rediss:// REDIS_URL sets REDIS_SSL): the CA bundle that signed the server's certificate
    # (empty: the system's), an optional client certificate, and whether the name must match it.
    redis_ssl: bool = _setting("REDIS_SSL", False, _parse_bool)
    redis_ssl_ca_certs: str = _setting("REDIS_SSL_CA_CERTS", "")
    redis_ssl_certfile: str = _setting("REDIS_SSL_CERTFILE", "")
    redis_ssl_keyfile: str = _setting("REDIS_SSL_KEYFILE", "", secret=True)
    redis_ssl_check_hostname: bool = _setting("REDIS_SSL_CHECK_HOSTNAME", True, _parse_bool)
    # PostgreSQL: the consumer's audit database.
    postgres_host: str = _setting("POSTGRES_HOST", "localhost")
    postgres_port: int = _setting("POSTGRES_PORT", 5433, _port)
    postgres_db: str = _setting("POSTGRES_DB", "tickstock")
    postgres_user: str = _setting("POSTGRES_USER", "app_readwrite")
    postgres_password: str = _setting("POSTGRES_PASSWORD", "", secret=True)
    database_uri: str = _setting("DATABASE_URI", "", secret=True)  # wins over the POSTGRES_* parts
    audit_enabled: bool = _setting("TICKSTOCKPL_AUDIT_ENABLED", True, _parse_bool)
    postgres_connect_timeout_s: int = _setting("POSTGRES_CONNECT_TIMEOUT", 3, _positive(int))
    postgres_statement_timeout_ms: int = _setting("POSTGRES_STATEMENT_TIMEOUT_MS", 5000, _positive(int))
    # Relay.
    relay_batch_size: int = _setting("TICKSTOCKPL_RELAY_BATCH", 1000, _positive(int))
    relay_stale_after_s: float = _setting("TICKSTOCKPL_RELAY_STALE_AFTER", 30.0, _positive(float))
    # Published records whose audit rows still wait for the disk; at this many the relay stops taking.
    relay_max_unacked: int = _setting("TICKSTOCKPL_RELAY_MAX_UNACKED", 10_000, _positive(int))
    replay_stream_maxlen: int = _setting("TICKSTOCKPL_REPLAY_MAXLEN", 100_000, _positive(int))
    relay_crash_at: str = _setting(
        "TICKSTOCKPL_CRASH_AT", "", _choice("", "after_move", "after_audit", "after_publish", "before_ack")
    )
    # Heartbeat and health.
    heartbeat_interval_s: float = _setting("TICKSTOCKPL_HEARTBEAT_INTERVAL", 10.0, _positive(float))
    heartbeat_ttl_s: int = _setting("TICKSTOCKPL_HEARTBEAT_TTL", 90, _positive(int))
    alive_row_interval_s: float = _setting("TICKSTOCKPL_ALIVE_ROW_INTERVAL", 60.0, _positive(float))
    health_interval_s: float = _setting("TICKSTOCKPL_HEALTH_INTERVAL", 30.0, _positive(float))
    # Detector and market data.
    source: str = _setting("TICKSTOCKPL_SOURCE", "synthetic", _choice("synthetic", "csv", "ticks", "massive"))
    symbols: tuple[str, ...] = _setting("TICKSTOCKPL_SYMBOLS", DEFAULT_SYMBOLS, _parse_list)
    synthetic_seed: int = _setting("TICKSTOCKPL_SYNTHETIC_SEED", 42, int)
    # How far back (s) an accelerated synthetic session starts, so its bars never run ahead of the clock.
    synthetic_lookback_s: int = _setting("TICKSTOCKPL_SYNTHETIC_LOOKBACK", 7 * 86_400, _not_negative)
    bar_seconds: int = _setting("TICKSTOCKPL_BAR_SECONDS", 60, _positive(int))
    speed: float = _setting("TICKSTOCKPL_SPEED", 60.0, float)  # x real time; 0 = as fast as possible
    csv_files: tuple[str, ...] = _setting("TICKSTOCKPL_CSV_FILES", (), _parse_list)
    massive_api_key: str = _setting("MASSIVE_API_KEY", "", secret=True)
    massive_ws_url: str = _setting("MASSIVE_WS_URL", "wss://socket.massive.com/stocks")
    # Timeframes aggregated from the feed and judged too (docs/patterns.md, "Timeframes"); `none`: the
    # feed's own only. Combos: a pattern seen on two of these (the feed's own may be named) at once.
    timeframes: tuple[str, ...] = _setting("TICKSTOCKPL_TIMEFRAMES", ("5m", "15m", "1h", "1d"), _timeframes)
    combo_timeframes: tuple[str, ...] = _setting(
        "TICKSTOCKPL_COMBO_TIMEFRAMES", ("15m", "1h", "1d"), _timeframes
    )
    session_calendar: str = _setting("TICKSTOCKPL_SESSION_CALENDAR", "XNYS")  # an exchange_calendars name
    # The synthetic market on the calendar's sessions (in the past, with history to learn from), or
    # every minute around the clock from now.
    synthetic_clock: str = _setting(
        "TICKSTOCKPL_SYNTHETIC_CLOCK", "sessions", _choice("sessions", "continuous")
    )
    synthetic_history: int = _setting("TICKSTOCKPL_SYNTHETIC_HISTORY", 35, _not_negative)
    # Sharded detectors (docs/scaling.md): this host runs DETECTOR_SHARDS detector processes, shards
    # SHARD_FIRST .. SHARD_FIRST + DETECTOR_SHARDS - 1 of SHARD_COUNT (0: DETECTOR_SHARDS, one host).
    # supervisord gives each detector its SHARD_INDEX; DETECTORS_ONLY hosts leave the relay, heartbeat,
    # exporter and backtester to the main host (one relay per Redis).
    detector_shards: int = _setting("TICKSTOCKPL_DETECTOR_SHARDS", 1, _positive(int))
    shard_first: int = _setting("TICKSTOCKPL_SHARD_FIRST", 0, _not_negative)
    shard_count: int = _setting("TICKSTOCKPL_SHARD_COUNT", 0, _not_negative)
    shard_index: int = _setting("TICKSTOCKPL_SHARD_INDEX", 0, _not_negative)
    detectors_only: bool = _setting("TICKSTOCKPL_DETECTORS_ONLY", False, _parse_bool)
    # Signals below this confidence are detected and counted but not published (docs/patterns.md).
    min_confidence: float = _setting("TICKSTOCKPL_MIN_CONFIDENCE", 0.7, _fraction)
    # data.indicators.relative_strength (docs/patterns.md, "Indicators"): a symbol's growth over this
    # many bars against its benchmark's: this symbol's series, or (empty) the equal-weighted universe
    # of the bars that close together. At most patterns/indicators.py MAX_RS_BARS.
    rs_bars: int = _setting("TICKSTOCKPL_RS_BARS", 20, _int_within(1, 1000))
    rs_benchmark: str = _setting("TICKSTOCKPL_RS_BENCHMARK", "", _symbol_or_empty)
    # Exporter and backtester.
    metrics_host: str = _setting("TICKSTOCKPL_METRICS_HOST", "127.0.0.1")
    metrics_port: int = _setting("TICKSTOCKPL_METRICS_PORT", 9108, _port)
    # Pause between a backtest's symbols (s): yields the CPU to the detector on a small machine.
    backtest_throttle_s: float = _setting("TICKSTOCKPL_BACKTEST_THROTTLE", 0.0, float)
    log_level: str = _setting("TICKSTOCKPL_LOG_LEVEL", "INFO", _choice("DEBUG", "INFO", "WARNING", "ERROR"))
    # The stack (`make up`): auto = docker compose when a Docker daemon answers, else embedded.
    stack_mode: str = _setting("TICKSTOCKPL_STACK", "auto", _choice("auto", "embedded", "docker"))
    # A superuser URI for a PostgreSQL that `make up` attaches to: apply db/init.sql, set role passwords.
    # Only `up` itself uses it: it never reaches the services' environment.
    postgres_admin_uri: str = _setting("POSTGRES_ADMIN_URI", "", secret=True)
    # Database roles (docs/stack.md, "Least privilege"). `least`: where `make up` prepares the
    # database it gives the producer's roles passwords (generated into .env) and runs the services
    # with them: the write-only audit role for the audit, the reader for doctor's flow checks, the
    # backtester's role for historical_bars. `shared`: every service uses POSTGRES_USER (the weaker
    # option: app_readwrite can UPDATE, DELETE and TRUNCATE the audit trail).
    db_roles: str = _setting("TICKSTOCKPL_DB_ROLES", "least", _choice("least", "shared"))
    audit_user: str = _setting("POSTGRES_AUDIT_USER", AUDIT_ROLE)
    audit_password: str = _setting("POSTGRES_AUDIT_PASSWORD", "", secret=True)
    read_user: str = _setting("POSTGRES_READ_USER", READ_ROLE)
    read_password: str = _setting("POSTGRES_READ_PASSWORD", "", secret=True)
    backtest_user: str = _setting("POSTGRES_BACKTEST_USER", BACKTEST_ROLE)
    backtest_password: str = _setting("POSTGRES_BACKTEST_PASSWORD", "", secret=True)
    # Who runs the services when `make up` runs as root (created as a system user if missing).
    service_user: str = _setting("TICKSTOCKPL_SERVICE_USER", "tickstockpl")
    # Where the embedded stack keeps its state (supervisord socket, logs, local stores); relative to the root.
    var_dir: str = _setting("TICKSTOCKPL_VAR_DIR", "var")
    # Host ports the Docker stack publishes on 127.0.0.1 (docker-compose.yml reads the same variables).
    redis_published_port: int = _setting("REDIS_PUBLISHED_PORT", 6379, _port)
    postgres_published_port: int = _setting("POSTGRES_PUBLISHED_PORT", 5433, _port)
    metrics_published_port: int = _setting("TICKSTOCKPL_METRICS_PUBLISHED_PORT", 9108, _port)
    prometheus_published_port: int = _setting("PROMETHEUS_PUBLISHED_PORT", 9090, _port)

    def __post_init__(self) -> None:
        total = self.total_shards
        if self.shard_first + self.detector_shards > total:
            raise SettingsError(
                f"TICKSTOCKPL_SHARD_FIRST={self.shard_first} + TICKSTOCKPL_DETECTOR_SHARDS="
                f"{self.detector_shards} exceed TICKSTOCKPL_SHARD_COUNT={total}:"
                " set it to the shards of all hosts"
            )
        if self.shard_index >= total:
            raise SettingsError(
                f"TICKSTOCKPL_SHARD_INDEX={self.shard_index} is not a shard of {total} (0-{total - 1})"
            )

    @property
    def total_shards(self) -> int:
        """Detector shards across every host (TICKSTOCKPL_SHARD_COUNT, else this host's)."""
        return self.shard_count or self.detector_shards

    @property
    def shard(self) -> Shard:
        """The detector's shard (supervisord sets TICKSTOCKPL_SHARD_INDEX for each detector process)."""
        return Shard(self.shard_index, self.total_shards)

    @property
    def detector_processes(self) -> tuple[str, ...]:
        """supervisord's names of this host's detector processes."""
        first = self.shard_first
        return tuple(detector_process(index) for index in range(first, first + self.detector_shards))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read the environment, with `.env` (if present) filling in what the environment lacks.

        TICKSTOCKPL_ENV_FILE in the environment names another dotenv file (empty: none).
        """
        environ = os.environ if environ is None else environ
        if ENV_FILE_VARIABLE in environ:
            env_file = environ[ENV_FILE_VARIABLE] or None
        values = dict(read_env_file(env_file)) if env_file else {}
        values.update(environ)
        if values.get(REDIS_URL_VARIABLE):
            values.update(redis_url_parts(values[REDIS_URL_VARIABLE]))
        kwargs: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            name = item.metadata["env"]
            if values.get(name, "") == "":  # unset and empty both mean the default
                continue
            try:
                kwargs[item.name] = item.metadata["parse"](values[name])
            except ValueError as exc:
                shown = "***" if item.metadata["secret"] else repr(values[name])
                raise SettingsError(f"{name}={shown}: {exc}") from None
        return cls(**kwargs)

    def __repr__(self) -> str:
        shown = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            shown.append(f"{item.name}={'***' if item.metadata['secret'] and value else repr(value)}")
        return f"Settings({', '.join(shown)})"

    def to_env(self) -> dict[str, str]:
        """The environment that rebuilds these settings (for child processes and tests)."""
        env = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple):  # an empty list of timeframes is spelled `none`, not a default
                value = ",".join(value) or ("none" if item.metadata["parse"] is _timeframes else "")
            elif isinstance(value, bool):
                value = "1" if value else "0"
            env[item.metadata["env"]] = str(value)
        return env

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def _as_role(self, user: str, password: str) -> Settings:
        """The same settings connecting as `user`, when its password is known (else unchanged)."""
        if self.database_uri or not (user and password):
            return self
        return self.replace(postgres_user=user, postgres_password=password)

    def with_service_roles(self) -> Settings:
        """What the services run with: the audit role as POSTGRES_USER under `least` once its
        password is known (`make up` generates it), else as configured."""
        if self.db_roles != "least":
            return self
        return self._as_role(self.audit_user, self.audit_password)

    def for_reading(self) -> Settings:
        """Connect as the read role (doctor's flow checks), if its password is known."""
        return self._as_role(self.read_user, self.read_password)

    def for_backtest(self) -> Settings:
        """Connect as the backtester's role (historical_bars), if its password is known."""
        return self._as_role(self.backtest_user, self.backtest_password)

    @property
    def postgres_dsn(self) -> str:
        """A libpq connection string (DATABASE_URI if set)."""
        if self.database_uri:
            return self.database_uri
        parts = {
            "host": self.postgres_host,
            "port": self.postgres_port,
            "dbname": self.postgres_db,
            "user": self.postgres_user,
            "password": self.postgres_password,
            "connect_timeout": self.postgres_connect_timeout_s,
            "application_name": "tickstockpl",
        }
        return " ".join(f"{key}='{_libpq_quote(str(value))}'" for key, value in parts.items() if value != "")

    @property
    def postgres_target(self) -> str:
        """Where the database is, for messages (never the password)."""
        if self.database_uri:
            return "DATABASE_URI"
        return f"{self.postgres_user}@{self.postgres_host}:{self.postgres_port}/{self.postgres_db}"

    @property
    def redis_target(self) -> str:
        """Where Redis is, for messages (never the password)."""
        user = f"{self.redis_username}@" if self.redis_username else ""
        tls = " (TLS)" if self.redis_ssl else ""
        return f"{user}{self.redis_host}:{self.redis_port}/{self.redis_db}{tls}"


# REDIS_URL (redis:// or rediss://[user[:password]@]host[:port][/db]) sets the REDIS_* parts it names.
REDIS_URL_VARIABLE = "REDIS_URL"


def redis_url_parts(url: str) -> dict[str, str]:
    """The REDIS_* variables a Redis URL stands for; SettingsError (never the password) when bad."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise SettingsError(f"{REDIS_URL_VARIABLE}: expected redis:// or rediss://host[:port][/db]")
    parts = {"REDIS_HOST": parsed.hostname, "REDIS_SSL": "1" if parsed.scheme == "rediss" else "0"}
    try:
        if parsed.port:
            parts["REDIS_PORT"] = str(parsed.port)
    except ValueError:
        raise SettingsError(f"{REDIS_URL_VARIABLE}: the port is not a number") from None
    if parsed.path.strip("/"):
        parts["REDIS_DB"] = parsed.path.strip("/")
    if parsed.username:
        parts["REDIS_USERNAME"] = unquote(parsed.username)
    if parsed.password:
        parts["REDIS_PASSWORD"] = unquote(parsed.password)
    return parts


def _libpq_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def read_env_file(path: str | Path) -> dict[str, str]:
    """A dotenv file's KEY=VALUE pairs; a missing file gives nothing.

    python-dotenv reads it as docker compose reads the same `.env` (inline `# comments`, quotes,
    `export`), without `${VAR}` interpolation: a generated password may hold a `$`.
    """
    env_path = Path(path)
    if not env_path.is_file():
        return {}
    values = dotenv_values(env_path, interpolate=False, encoding="utf-8")
    bare = sorted(key for key, value in values.items() if value is None)
    if bare:
        raise SettingsError(f"{env_path}: expected KEY=VALUE for {', '.join(bare)}")
    return {key: value for key, value in values.items() if value is not None}
