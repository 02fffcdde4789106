"""The whole stack on one machine: `tickstockpl up / down / status` (and `make up / down / status`).

With a Docker daemon, `docker compose` does the work. Without one (the embedded default, and the
path our own machines test), supervisord runs the programs from `supervisord.conf`:

1. Redis and PostgreSQL already reachable at the configured addresses are used as they are;
   a local address that does not answer gets a local `redis-server` (appendonly) or PostgreSQL
   (initdb into `var/`, run as an unprivileged user when we are root) under supervisord too;
2. the database is prepared: `db/init.sql` applied, the configured role's password set;
3. the program group is started, and `up` waits until the stack is healthy, then says where to look.

supervisord itself runs in the foreground (nodaemon) even for `up`: it is started detached in its
own session with its stdout appended to `var/log/stack.log`, so the same configuration serves
Docker, `up` and the entry-point scripts. Everything `down` stops is a child of that one
supervisord, so nothing is left behind and nothing else is touched.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import xmlrpc.client
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import redis

from tickstockpl import contract, health
from tickstockpl.errors import TickStockPLError
from tickstockpl.exitcodes import RET_CONFIG, RET_FAILED, RET_OK, RET_UNAVAILABLE
from tickstockpl.local_servers import LocalPostgres, LocalRedis, LocalServerError, unprivileged_user, wait_for
from tickstockpl.settings import Settings, read_env_file
from tickstockpl.supervised import STARTSECS

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ("detector", "relay", "heartbeat", "exporter", "backtester")  # supervisord.conf's group
GROUP = "tickstockpl"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
RUNNING, FATAL, EXITED, BACKOFF = "RUNNING", "FATAL", "EXITED", "BACKOFF"


class StackError(RuntimeError):
    """The stack cannot be brought up; the message says what to fix. `code` is the exit code."""

    def __init__(self, message: str, code: int = RET_FAILED) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    """Progress lines on stdout (never stderr: the consumer's launcher does not read it)."""
    print(f"tickstockpl: {message}", flush=True)


def supervisor_call(sock: Path, method: str, *args: Any) -> Any:
    """One call to supervisord's XML-RPC interface (what supervisorctl talks to) on its socket."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{sock}")
    try:
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return getattr(proxy.supervisor, method)(*args)
    finally:
        transport.close()


def tcp_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def docker_daemon_answers(timeout_s: float = 3.0) -> bool:
    """True when `docker info` succeeds: a client without a daemon (our machines) is not enough."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    """Poll `condition` with a deadline; StackError naming `what` when it never holds."""
    try:
        wait_for(condition, timeout_s, what, interval_s)
    except LocalServerError as exc:
        raise StackError(str(exc), RET_UNAVAILABLE) from None


@dataclass
class EmbeddedStack:
    """supervisord plus, when needed, local Redis and PostgreSQL, all under `var_dir`."""

    settings: Settings
    var_dir: Path = ROOT / "var"
    root: Path = ROOT
    env_file: Path | None = ROOT / ".env"  # where a generated password is kept (None: var/ only)
    durable: bool = True  # fsync on for the local PostgreSQL (tests may trade it for speed)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    local_redis: bool = False
    local_postgres: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)  # supervisord, if ours
    _since: float = field(default_factory=time.time, repr=False)  # when this `up` began

    # --- paths -----------------------------------------------------------------------------------

    @property
    def sock(self) -> Path:
        return self.var_dir / "supervisor.sock"

    @property
    def ctl_conf(self) -> Path:
        return self.var_dir / "supervisorctl.conf"

    @property
    def pidfile(self) -> Path:
        return self.var_dir / "supervisord.pid"

    @property
    def log_file(self) -> Path:
        return self.var_dir / "log" / "stack.log"

    @property
    def metrics_dir(self) -> Path:
        return self.var_dir / "metrics"

    def programs(self) -> list[str]:
        """The group's programs whose module exists in this checkout."""
        return [name for name in PROGRAMS if (self.root / "services" / f"{name}.py").is_file()]

    # --- supervisord -----------------------------------------------------------------------------

    def supervisord_pid(self) -> int | None:
        """The pid of our supervisord if it is alive and answers on our socket."""
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:
            if supervisor_call(self.sock, "getPID") == pid:
                return pid
        except (OSError, xmlrpc.client.Error):
            return None
        return None

    def call(self, method: str, *args: Any) -> Any:
        """supervisord's XML-RPC `supervisor.<method>(*args)`."""
        return supervisor_call(self.sock, method, *args)

    def process_info(self) -> list[dict[str, Any]]:
        info: list[dict[str, Any]] = self.call("getAllProcessInfo")
        return info

    def environment(self) -> dict[str, str]:
        """What supervisord (and so every program) runs with: the resolved settings, spelled out."""
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env.update(
            {
                "TICKSTOCKPL_VAR": str(self.var_dir),
                "TICKSTOCKPL_PYTHON": sys.executable,
                "TICKSTOCKPL_AUTOSTART": "false",
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    # --- stores ----------------------------------------------------------------------------------

    def _redis_local(self) -> LocalRedis:
        return LocalRedis(self.var_dir / "redis", port=self.settings.redis_port)

    def _postgres_local(self) -> LocalPostgres:
        return LocalPostgres(
            self.var_dir / "postgres", port=self.settings.postgres_port, durable=self.durable
        )

    def _redis_answers(self) -> bool:
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        except redis.AuthenticationError as exc:
            raise StackError(
                f"Redis at {self.settings.redis_target}: {exc} (check REDIS_PASSWORD)", RET_CONFIG
            ) from None
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def choose_stores(self) -> None:
        """Attach to what answers; plan local servers for local addresses that do not."""
        s = self.settings
        if self._redis_answers():
            say(f"Redis: using the server at {s.redis_target}")
        elif s.redis_host in LOCAL_HOSTS:
            self.local_redis = True
            say(f"Redis: nothing at {s.redis_target}; starting a local redis-server in {self.var_dir}/redis")
        else:
            raise StackError(f"Redis at {s.redis_target} does not answer", RET_UNAVAILABLE)
        if s.database_uri or tcp_open(s.postgres_host, s.postgres_port):
            say(f"PostgreSQL: using the server at {s.postgres_target}")
        elif s.postgres_host in LOCAL_HOSTS:
            self.local_postgres = True
            say(f"PostgreSQL: nothing at port {s.postgres_port}; starting one in {self.var_dir}/postgres")
        else:
            raise StackError(f"PostgreSQL at {s.postgres_target} does not answer", RET_UNAVAILABLE)

    def write_store_programs(self) -> None:
        """var/supervisord.d/stores.conf: the local servers as supervisord programs (or nothing)."""
        include_dir = self.var_dir / "supervisord.d"
        include_dir.mkdir(parents=True, exist_ok=True)
        self.var_dir.chmod(0o755)  # PostgreSQL runs as another user and needs to reach var/postgres
        sections: list[str] = []
        names: list[str] = []
        if self.local_redis:
            local = self._redis_local()
            local.directory.mkdir(parents=True, exist_ok=True)
            sections.append(_program("redis", local.command(), stopsignal="TERM", stopwaitsecs=60))
            names.append("redis")
        if self.local_postgres:
            pg = self._postgres_local()
            pg.initdb()
            try:
                owner = unprivileged_user()
            except LocalServerError as exc:
                raise StackError(str(exc), RET_CONFIG) from None
            user = owner.pw_name if owner else None
            sections.append(_program("postgres", pg.command(), stopsignal="INT", stopwaitsecs=90, user=user))
            names.append("postgres")
        target = include_dir / "stores.conf"
        if not names:
            target.unlink(missing_ok=True)
            return
        header = "; written by tickstockpl up: local stores, started first and stopped last\n"
        group = f"[group:stores]\nprograms={','.join(names)}\npriority=10\n\n"
        target.write_text(header + group + "\n".join(sections))

    def prepare_database(self) -> None:
        """Apply db/init.sql and set the configured role's password (local server or admin URI)."""
        s = self.settings
        if self.local_postgres:
            pg = self._postgres_local()
            admin = (
                f"host={pg.socket_dir} port={pg.port} user={pg.superuser} dbname=postgres connect_timeout=3"
            )
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
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (s.postgres_db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{s.postgres_db}"')
        finally:
            conn.close()
        conn = _connect(_with_dbname(admin, s.postgres_db))
        try:
            with conn.cursor() as cur:
                cur.execute((self.root / "db" / "init.sql").read_text())
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (s.postgres_user,))
                if cur.fetchone() is None:
                    raise StackError(f"role {s.postgres_user} does not exist after db/init.sql", RET_CONFIG)
                cur.execute(f'ALTER ROLE "{s.postgres_user}" LOGIN PASSWORD %s', (s.postgres_password,))
        finally:
            conn.close()
        say(f"PostgreSQL: db/init.sql applied to {s.postgres_db}; password set for {s.postgres_user}")

    # --- up / down -------------------------------------------------------------------------------

    def start_supervisord(self, foreground: bool = False) -> subprocess.Popen[bytes]:
        """Start supervisord (nodaemon); detached with its output in var/log for `up`."""
        for path in (self.var_dir, self.log_file.parent, self.metrics_dir):
            path.mkdir(parents=True, exist_ok=True)
        for stale in self.metrics_dir.iterdir():  # multiprocess files belong to the previous run
            stale.unlink()
        self.sock.unlink(missing_ok=True)
        # For people: `supervisorctl -c var/supervisorctl.conf status` (the main file needs the env).
        self.ctl_conf.write_text(f"[supervisorctl]\nserverurl=unix://{self.sock}\n")
        command = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.root / "supervisord.conf")]
        if foreground:
            process = subprocess.Popen(command, env=self.environment(), cwd=self.root)
        else:
            with open(self.log_file, "ab") as log:
                process = subprocess.Popen(
                    command,
                    env=self.environment(),
                    cwd=self.root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C in the shell that ran `make up` leaves it alone
                )

        def answers() -> bool:
            if process.poll() is not None:
                raise StackError(f"supervisord exited with {process.returncode}; see {self.log_file}")
            return self.supervisord_pid() == process.pid

        self._process = process  # reaped by down(): no zombie, no "still running" warning
        wait_until(answers, 30, "supervisord's control socket")
        return process

    def start_programs(self) -> None:
        for name in self.programs():
            info = self.call("getProcessInfo", f"{GROUP}:{name}")
            if info["statename"] not in (RUNNING, "STARTING"):
                self.call("startProcess", f"{GROUP}:{name}", False)
        say(f"started {', '.join(self.programs())}")

    def check_programs(self) -> None:
        """Fail fast (with the exit code) when a program gave up or exited misconfigured.

        supervisord honours `exitcodes` only after `startsecs`: a program that exits 78 at once is
        retried (BACKOFF) like a crash. Here it is stopped instead, since restarting cannot help.
        """
        for info in self.process_info():
            name = f"{info['group']}:{info['name']}"
            if info["group"] == GROUP and info["name"] not in self.programs():
                continue
            misconfigured = info["exitstatus"] == RET_CONFIG and info["statename"] in (BACKOFF, EXITED, FATAL)
            if misconfigured and info["statename"] == BACKOFF:
                self.call("stopProcess", name, False)
            if (
                misconfigured
                or info["statename"] == FATAL
                or (info["statename"] == EXITED and info["exitstatus"])
            ):
                why = "misconfigured (not restarted)" if misconfigured else "failed"
                raise StackError(
                    f"{name} {why}: {info['statename']}, exit status {info['exitstatus']};"
                    f" see {self.log_file}",
                    RET_CONFIG if misconfigured else RET_FAILED,
                )

    def unhealthy_reasons(self) -> list[str]:
        """Why the stack is not healthy yet (empty: healthy): programs, stores, schema, heartbeat, doctor."""
        self.check_programs()
        states = {info["name"]: _readiness(info) for info in self.process_info() if info["group"] == GROUP}
        programs = self.programs()
        reasons = [
            f"{name} is {states.get(name, 'missing')}"
            for name in programs
            if states.get(name) not in (RUNNING, "DONE")
        ]
        reasons += required_checks(
            self.settings, heartbeat="heartbeat" in programs, metrics="exporter" in programs
        )
        if (
            not reasons
            and self.settings.source == "synthetic"
            and not published_since(self.settings, self._since)
        ):
            # The synthetic source always produces: `up` returns once events flow, so that a
            # `redis-cli SUBSCRIBE` right after it shows some (the detector warms up on its first bars).
            reasons.append("no pattern published yet (the detector is warming up)")
        if not reasons:
            result = subprocess.run(
                [sys.executable, "-m", "tickstockpl.cli", "doctor", "--json", "--expect-running"],
                env=self.environment(),
                cwd=self.root,
                capture_output=True,
                check=False,
            )
            if result.returncode != RET_OK:
                reasons.append("tickstockpl doctor: a required check fails")
        return reasons

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        shown: list[str] = []
        while reasons := self.unhealthy_reasons():
            if time.monotonic() > deadline:
                raise StackError(
                    f"not healthy after {timeout_s:.0f} s: {'; '.join(reasons)}", RET_UNAVAILABLE
                )
            if reasons != shown:  # say what we wait for, once per change
                say(f"waiting: {'; '.join(reasons)}")
                shown = reasons
            time.sleep(0.5)

    def up(self, timeout_s: float = 120.0) -> int:
        """Bring the stack up (or leave a running one as it is), wait until healthy, say where to look."""
        if self.supervisord_pid() is not None:
            say(f"already running (supervisord pid {self.supervisord_pid()}); checking it")
            self.start_programs()
        else:
            self.choose_stores()
            self.ensure_password()
            self.write_store_programs()
            self.start_supervisord()
            self.prepare_database()
            self.start_programs()
        self.wait_healthy(timeout_s)
        run_doctor(self.environment(), self.root)
        self.print_where_to_look()
        return RET_OK

    def down(self, timeout_s: float = 180.0) -> int:
        """Stop supervisord and so everything it started (programs first, local stores last)."""
        pid = self.supervisord_pid()
        if pid is None:
            say(f"nothing running from {self.var_dir}")
            self.sock.unlink(missing_ok=True)
            return RET_OK
        say(f"stopping supervisord (pid {pid}) and everything it started")
        self.call("shutdown")
        wait_until(lambda: not _alive(pid), timeout_s, f"supervisord (pid {pid}) to exit")
        if self._process is not None:
            self._process.wait()
        self.sock.unlink(missing_ok=True)
        say("stopped")
        return RET_OK

    def run_foreground(self) -> int:
        """The stack in the foreground, everything on stdout; SIGTERM/SIGINT stop it cleanly."""
        if self.supervisord_pid() is not None:
            say(f"a stack already runs from {self.var_dir} (make up); stop it with make down first")
            return RET_FAILED
        self.choose_stores()
        self.ensure_password()
        self.write_store_programs()
        process = self.start_supervisord(foreground=True)

        def forward(signum: int, frame: object) -> None:
            if process.poll() is None:
                process.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        try:
            self.prepare_database()
            self.start_programs()
            self.wait_healthy(120)
            self.print_where_to_look()
        except (StackError, OSError, xmlrpc.client.Error, psycopg2.Error) as exc:
            if process.poll() is None:  # not a stop request that raced the start: a real failure
                say(f"error: {exc}")
                process.terminate()
                process.wait()
                return exc.code if isinstance(exc, StackError) else RET_FAILED
        return process.wait()

    # --- configuration ---------------------------------------------------------------------------

    def ensure_password(self) -> None:
        """A role we set up needs a password: generate one once and keep it in .env."""
        if self.settings.postgres_password or self.settings.database_uri:
            return
        if not (self.local_postgres or self.settings.postgres_admin_uri):
            return  # someone else's server: its password is theirs to give us
        password = ensure_env_secret(self.env_file, "POSTGRES_PASSWORD")
        self.settings = self.settings.replace(postgres_password=password)

    def print_where_to_look(self) -> None:
        s = self.settings
        port_flag = f" -p {s.redis_port}" if s.redis_port != 6379 else ""
        host_flag = f" -h {s.redis_host}" if s.redis_host not in ("localhost", "127.0.0.1") else ""
        lines = [
            "the stack is up and healthy. Where to look:",
            f"  events:   redis-cli{host_flag}{port_flag} SUBSCRIBE {contract.CHANNEL_PATTERNS}",
            f"  metrics:  http://{s.metrics_host}:{s.metrics_port}/metrics",
            "  status:   make status      (supervisord and doctor)",
            f"  logs:     make logs        ({self.log_file})",
            "  stop:     make down",
        ]
        print("\n".join(lines), flush=True)

    def status(self) -> int:
        pid = self.supervisord_pid()
        if pid is None:
            say(f"not running (no supervisord answers on {self.sock})")
            return RET_FAILED
        print(f"supervisord pid {pid}, control socket {self.sock}")
        for info in self.process_info():
            extra = (
                info["description"] if info["statename"] != EXITED else f"exit status {info['exitstatus']}"
            )
            print(f"  {info['group'] + ':' + info['name']:<26} {info['statename']:<9} {extra}")
        failing = required_checks(
            self.settings, heartbeat="heartbeat" in self.programs(), metrics="exporter" in self.programs()
        )
        for line in failing:
            print(f"  ✗ {line}")
        if not failing:
            print("  ✓ required checks pass (Redis, PostgreSQL schema, heartbeat)")
        doctor = run_doctor(self.environment(), self.root)
        return RET_OK if not failing and doctor == RET_OK else RET_FAILED


def _readiness(info: Mapping[str, Any]) -> str:
    """RUNNING only once past the hold on a misconfigured exit (tickstockpl.supervised); DONE when
    exited 0 (a finite CSV replay that has run its course); else supervisord's state name."""
    if info["statename"] == EXITED and info["exitstatus"] == 0:
        return "DONE"
    if info["statename"] == RUNNING and info["now"] - info["start"] <= STARTSECS + 1:
        return "STARTING"
    return str(info["statename"])


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


def _program(
    name: str, command: list[str], *, stopsignal: str, stopwaitsecs: int, user: str | None = None
) -> str:
    """One supervisord [program:] section; `%` is doubled, since supervisord expands it."""
    lines = [
        f"[program:{name}]",
        "command=" + " ".join(_quote(part) for part in command).replace("%", "%%"),
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        f"stopsignal={stopsignal}",
        f"stopwaitsecs={stopwaitsecs}",
        "redirect_stderr=true",
        "stdout_logfile=/dev/stdout",
        "stdout_logfile_maxbytes=0",
    ]
    if user:
        lines.append(f"user={user}")
    return "\n".join(lines) + "\n"


def _quote(part: str) -> str:
    return f'"{part}"' if (not part or any(c in part for c in " \"'")) else part


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _connect(dsn: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def _pg_ready(dsn: str) -> bool:
    _connect(dsn).close()
    return True


def _with_dbname(dsn: str, dbname: str) -> str:
    """The same connection parameters, another database (libpq keyword strings and URIs alike)."""
    return psycopg2.extensions.make_dsn(dsn, dbname=dbname)


def required_checks(settings: Settings, heartbeat: bool, metrics: bool) -> list[str]:
    """The quick in-process form of doctor's required checks, plus /metrics: failures (empty: healthy)."""
    failures: list[str] = []
    if metrics:
        url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status != 200:
                    failures.append(f"{url} answered {response.status}")
        except OSError as exc:
            failures.append(f"{url}: {exc}")
    client = health.checking_client(settings, timeout_s=2)
    try:
        health.ping_redis(client)
        if heartbeat:
            problem = health.read_heartbeat(client).problem()
            if problem:
                failures.append(f"heartbeat key {contract.KEY_HEARTBEAT}: {problem}")
    except TickStockPLError as exc:
        failures.append(f"Redis at {settings.redis_target}: {exc}")
    finally:
        client.close()
    try:
        conn = health.connect_postgres(settings)
        try:
            with conn.cursor() as cursor:
                if not health.schema_status(cursor).callable:
                    failures.append(
                        f"PostgreSQL {settings.postgres_target}: schema or grants missing (apply db/init.sql)"
                    )
        finally:
            conn.close()
    except TickStockPLError as exc:
        failures.append(f"PostgreSQL {settings.postgres_target}: {exc}")
    return failures


def published_since(settings: Settings, since: float) -> bool:
    """True once the relay has published a pattern at or after `since` (epoch seconds)."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        raw = client.hget(contract.KEY_STATS, "last_publish_time")
        return raw is not None and float(raw) >= since
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        client.close()


def run_doctor(env: Mapping[str, str], root: Path) -> int:
    """Run `tickstockpl doctor`, its table on stdout."""
    return subprocess.run(
        [sys.executable, "-m", "tickstockpl.cli", "doctor"], env=dict(env), cwd=root
    ).returncode


# --- Docker ------------------------------------------------------------------------------------


def compose(*args: str, root: Path = ROOT) -> int:
    """`docker compose ...` (or the older `docker-compose`) in the project directory."""
    plugin = (
        subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    )
    command = (
        ["docker", "compose"] if plugin or shutil.which("docker-compose") is None else ["docker-compose"]
    )
    return subprocess.run([*command, *args], cwd=root, check=False).returncode


def compose_up(settings: Settings, root: Path = ROOT) -> int:
    """The Docker path of `up`: secrets into .env, then build, start and wait for the health checks."""
    env_file = root / ".env"
    if not settings.postgres_password:
        ensure_env_secret(env_file, "POSTGRES_PASSWORD")
    ensure_env_secret(env_file, "POSTGRES_SUPERUSER_PASSWORD")
    code = compose("up", "-d", "--build", "--wait", root=root)
    if code == RET_OK:
        print(
            "the stack is up in Docker. Where to look:\n"
            f"  events:   redis-cli SUBSCRIBE {contract.CHANNEL_PATTERNS}\n"
            f"  metrics:  http://127.0.0.1:{settings.metrics_port}/metrics   (Prometheus: http://127.0.0.1:9090)\n"
            "  status:   make status   logs: make logs   stop: make down",
            flush=True,
        )
    return code


def use_docker(settings: Settings) -> bool:
    if settings.stack_mode == "docker":
        return True
    return settings.stack_mode == "auto" and docker_daemon_answers()


# --- CLI ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for health (up)")


def var_dir(settings: Settings, root: Path = ROOT) -> Path:
    return (root / settings.var_dir).resolve()


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`tickstockpl up|down|status`: the command name picks the action."""
    stack = EmbeddedStack(settings=settings, var_dir=var_dir(settings))
    if stack.supervisord_pid() is None and use_docker(settings):
        if args.command == "up":
            return compose_up(settings)
        return compose("down") if args.command == "down" else compose("ps")
    try:
        if args.command == "up":
            return stack.up(args.timeout)
        if args.command == "down":
            return stack.down()
        return stack.status()
    except (StackError, LocalServerError) as exc:
        say(f"error: {exc}")
        return exc.code if isinstance(exc, StackError) else RET_UNAVAILABLE


def foreground_main() -> int:
    """The entry-point scripts: the whole stack in the foreground, logging to stdout, until SIGTERM."""
    os.chdir(ROOT)  # .env and the programs' working directory, wherever the script was run from
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        say(f"configuration error: {exc}")
        return RET_CONFIG
    try:
        return EmbeddedStack(settings=settings, var_dir=var_dir(settings)).run_foreground()
    except (StackError, LocalServerError) as exc:
        say(f"error: {exc}")
        return exc.code if isinstance(exc, StackError) else RET_UNAVAILABLE
