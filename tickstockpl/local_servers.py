"""Start the locally installed `redis-server` and PostgreSQL on free ports, without Docker.

Used by the test fixtures (one pair of servers per test session) and by `make up` on machines
without a Docker daemon. PostgreSQL refuses to run as root, so when we are root the cluster is
created and run as an unprivileged user (`postgres` if it exists, else `nobody`).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tickstockpl.errors import AuditConfigError, StoreUnavailable
from tickstockpl.stores import connect_postgres


class LocalServerError(RuntimeError):
    """A local server binary is missing or did not come up."""


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# What a condition raises while the thing it waits for is still starting (connection refused and
# the like). Anything else, LocalServerError from a server that died included, propagates at once.
STARTING_ERRORS = (OSError, redis.RedisError, StoreUnavailable, AuditConfigError, xmlrpc.client.Error)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.02) -> None:
    """Poll `condition` until it holds, or raise LocalServerError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except STARTING_ERRORS:
            pass
        if time.monotonic() > deadline:
            raise LocalServerError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def find_binary(name: str) -> str:
    """`name` on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise LocalServerError(f"{name} not found: install redis-server and postgresql (see README)")


def unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: nobody special when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LocalServerError("running as root and neither 'postgres' nor 'nobody' exists to run PostgreSQL")


def ensure_service_user(name: str, python: str, cwd: Path) -> str | None:
    """As root: create `name` as a system user if missing, and check that it can run `python` with
    our package. None when it can; else why not (a 0700 home above a pyenv interpreter, say)."""
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            return f"user {name!r} does not exist and there is no useradd (set TICKSTOCKPL_SERVICE_USER)"
        created = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            return f"useradd {name} failed: {created.stderr.strip()}"
        account = pwd.getpwnam(name)
    if account.pw_uid == 0:
        return f"TICKSTOCKPL_SERVICE_USER={name} is uid 0"
    try:
        probe = subprocess.run(
            [python, "-c", "import tickstockpl.supervised"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        failed, why = probe.returncode != 0, (probe.stderr.strip().splitlines() or [""])[-1]
    except OSError as exc:
        failed, why = True, str(exc)
    if failed:
        return (
            f"{name} cannot run {python} ({why}); install the virtualenv from a Python other users "
            f"can execute (make install PYTHON=/usr/bin/python3), or readable project files"
        )
    return None


@dataclass
class LocalRedis:
    """A redis-server on a free port in `directory`; appendonly on so a restart keeps the data."""

    directory: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()  # more redis-server options (they win over ours): TLS, ACL, ...
    client_options: dict[str, Any] = field(default_factory=dict)  # how start() must connect to PING

    def command(self) -> list[str]:
        return [
            find_binary("redis-server"),
            "--bind", self.host,
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--protected-mode", "no",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout_s: float = 15.0) -> LocalRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        # No client-side retries: between two pings we check that the server is still alive.
        client = redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
            **self.client_options,
        )
        try:
            wait_for(lambda: self._alive() and bool(client.ping()), timeout_s, f"redis-server on {self.port}")
        finally:
            client.close()
        return self

    def _alive(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
            raise LocalServerError(f"redis-server exited with {self.process.returncode}: {log}")
        return True

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


@dataclass
class LocalPostgres:
    """A throwaway PostgreSQL cluster on a free port, password auth over TCP, trust on its socket."""

    directory: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    superuser: str = "postgres"
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    durable: bool = False  # tests trade durability for speed; `make up` keeps fsync on
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    def _owner(self) -> tuple[int | None, int | None]:
        """(uid, gid) to run PostgreSQL's binaries as; (None, None) means as ourselves."""
        user = unprivileged_user()
        return (None, None) if user is None else (user.pw_uid, user.pw_gid)

    def _chown(self, path: Path) -> None:
        user = unprivileged_user()
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)

    def initdb(self) -> None:
        """Create the cluster (once); `initdb --no-sync` takes about a second."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        for path in (self.directory, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            self._chown(path)
        password_file = self.directory / "superuser.pw"
        password_file.write_text(self.superuser_password + "\n")
        password_file.chmod(0o600)
        self._chown(password_file)
        uid, gid = self._owner()
        result = subprocess.run(
            [
                find_binary("initdb"),
                "--no-sync",
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                f"--pwfile={password_file}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            check=False,
            user=uid,
            group=gid,
        )
        password_file.unlink()
        if result.returncode != 0:
            raise LocalServerError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def command(self) -> list[str]:
        options = [
            find_binary("postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.socket_dir),
            "-c", f"listen_addresses={self.host}",
            "-c", "max_connections=200",
            "-c", "log_min_messages=warning",
        ]  # fmt: skip
        if not self.durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return options

    def start(self, timeout_s: float = 60.0) -> LocalPostgres:
        self.initdb()
        uid, gid = self._owner()
        log = open(self.directory / "postgres.log", "ab")  # the child keeps its own copy
        try:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, user=uid, group=gid
            )
        finally:
            log.close()
        wait_for(lambda: self._alive() and self._accepts(), timeout_s, f"PostgreSQL on {self.port}")
        return self

    def _alive(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            tail = (self.directory / "postgres.log").read_text(errors="replace")[-2000:]
            raise LocalServerError(f"postgres exited with {self.process.returncode}: {tail}")
        return True

    def _accepts(self) -> bool:
        connect_postgres(self.dsn("postgres")).close()
        return True

    def stop(self, fast: bool = True) -> None:
        """SIGINT is PostgreSQL's 'fast' shutdown: roll back sessions, checkpoint, exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(2 if fast else 15)
        self.process.wait(timeout=60)

    def dsn(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        user = user or self.superuser
        password = self.superuser_password if password is None and user == self.superuser else password
        parts = f"host={self.host} port={self.port} dbname={dbname} user={user} connect_timeout=3"
        return parts + (f" password={password}" if password else "")
