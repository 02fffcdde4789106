"""The embedded stack: `up / down / status` without Docker, on one machine.

1. the stores are chosen (stack.stores): used as they are where they answer, else run locally by
   our supervisord;
2. supervisord starts (stack.supervisord), the database is prepared, the program group is started;
3. `up` waits until the stack is healthy (stack.checks), then says where to look.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tickstockpl import contract
from tickstockpl.errors import TickStockPLError
from tickstockpl.exitcodes import RET_FAILED, RET_OK
from tickstockpl.local_servers import ensure_service_user
from tickstockpl.settings import ENV_FILE_VARIABLE, Settings
from tickstockpl.stack.base import ROOT, StackError, failed, poll_until_healthy, say
from tickstockpl.stack.checks import persistence_warning, published_since, required_checks, run_doctor
from tickstockpl.stack.stores import LocalStores, choose_stores, ensure_password, prepare_database
from tickstockpl.stack.supervisord import Supervisord

# Superuser secrets: `up` uses them to prepare the database; no service's environment holds them.
SUPERUSER_VARIABLES = ("POSTGRES_ADMIN_URI", "POSTGRES_SUPERUSER_PASSWORD")


@dataclass
class EmbeddedStack:
    """supervisord plus, when needed, local Redis and PostgreSQL, all under `var_dir`."""

    settings: Settings
    var_dir: Path = ROOT / "var"
    root: Path = ROOT
    env_file: Path | None = ROOT / ".env"  # where a generated password is kept (None: var/ only)
    durable: bool = True  # fsync on for the local PostgreSQL (tests may trade it for speed)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    supervisord: Supervisord = field(init=False)
    _since: float = field(default_factory=time.time, repr=False)  # when this `up` began
    _service_user: str = field(default="", repr=False)  # "root" when the fallback applies

    def __post_init__(self) -> None:
        self.supervisord = Supervisord(self.var_dir, self.root, self.settings.detector_processes)

    def environment(self) -> dict[str, str]:
        """What supervisord (and so every program) runs with: the resolved settings, spelled out,
        with the services' database roles, and without any superuser secret (only `up` itself
        prepares the database). The services read no .env: everything they need is here."""
        env = dict(os.environ)
        env.update(self.settings.with_service_roles().to_env())
        env.update(
            {
                "TICKSTOCKPL_VAR": str(self.var_dir),
                "TICKSTOCKPL_PYTHON": sys.executable,
                "TICKSTOCKPL_AUTOSTART": "false",
                "PYTHONUNBUFFERED": "1",
                ENV_FILE_VARIABLE: "",
                "TICKSTOCKPL_SERVICE_USER": self.service_user,
            }
        )
        env.update(self.extra_env)
        for name in SUPERUSER_VARIABLES:
            env.pop(name, None)
        return env

    @property
    def service_user(self) -> str:
        """Who supervisord runs the services as: ourselves, or when we are root the service user
        (root only when that user cannot run our interpreter; `up` says so loudly)."""
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid()).pw_name
        return self._service_user or self.settings.service_user

    def prepare_service_user(self) -> None:
        """As root: make sure the service user exists and can run our interpreter; else fall back to
        root, loudly."""
        self._service_user = ""
        if os.geteuid() != 0:
            return
        python = self.extra_env.get("TICKSTOCKPL_PYTHON", sys.executable)
        problem = ensure_service_user(self.settings.service_user, python, self.root)
        if problem is not None:
            self._service_user = "root"
            say(f"WARNING: the services run as ROOT: {problem}")
            return
        account = pwd.getpwnam(self.settings.service_user)
        say(f"the services run as {account.pw_name} (uid {account.pw_uid})")

    def plan_stores(self) -> LocalStores:
        """Choose the stores, keep a generated password, and hand the local ones to supervisord."""
        stores = choose_stores(self.settings, self.var_dir, self.durable)
        self.settings = ensure_password(self.settings, stores, self.env_file)
        self.supervisord.write_include("stores", stores.programs(self.settings))
        return stores

    def start_supervisord(self, foreground: bool = False) -> subprocess.Popen[bytes]:
        self.prepare_service_user()
        return self.supervisord.start(self.environment(), foreground)

    # --- health ----------------------------------------------------------------------------------

    def failing_checks(self) -> list[str]:
        programs = self.supervisord.programs()
        return required_checks(  # a detectors-only host serves no /metrics: the main host does
            self.settings,
            heartbeat="heartbeat" in programs,
            metrics="exporter" in programs and not self.settings.detectors_only,
        )

    def unhealthy_reasons(self) -> list[str]:
        """Why the stack is not healthy yet (empty: healthy): programs, stores, schema, heartbeat, doctor."""
        self.supervisord.check_programs()
        reasons = self.supervisord.not_ready() + self.failing_checks()
        if (
            not reasons
            and self.settings.source == "synthetic"
            and not published_since(self.settings, self._since)
        ):
            # The synthetic source always produces: `up` returns once events flow, so that a
            # `redis-cli SUBSCRIBE` right after it shows some (the detector warms up on its first bars).
            reasons.append("no pattern published yet (the detector is warming up)")
        if not reasons and (
            run_doctor(self.environment(), self.root, "--json", "--expect-running", quiet=True) != RET_OK
        ):
            reasons.append("tickstockpl doctor: a required check fails")
        return reasons

    def wait_healthy(self, timeout_s: float) -> None:
        poll_until_healthy(self.unhealthy_reasons, timeout_s, interval_s=0.5)

    # --- up / down / status ----------------------------------------------------------------------

    def up(self, timeout_s: float = 120.0) -> int:
        """Bring the stack up (or leave a running one as it is), wait until healthy, say where to look."""
        if (pid := self.supervisord.pid()) is not None:
            say(f"already running (supervisord pid {pid}); checking it")
            self.supervisord.start_programs()
        else:
            stores = self.plan_stores()
            self.start_supervisord()
            prepare_database(self.settings, stores, self.root)
            self.supervisord.start_programs()
        self.wait_healthy(timeout_s)
        run_doctor(self.environment(), self.root)
        self.warn_about_persistence()
        self.print_where_to_look()
        return RET_OK

    def warn_about_persistence(self) -> None:
        """Loudly, when the attached Redis would lose the outbox and the audit backlog on a restart."""
        risk = persistence_warning(self.settings)
        if risk:
            banner = "!" * 100
            fix = "Fix: appendonly yes in that Redis (docs/operations.md, Redis persistence)"
            say(f"{banner}\nWARNING: {risk}.\n{fix}\n{banner}")

    def down(self, timeout_s: float = 180.0) -> int:
        """Stop supervisord and so everything it started (programs first, local stores last)."""
        return self.supervisord.shutdown(timeout_s)

    def run_foreground(self) -> int:
        """The stack in the foreground, everything on stdout; SIGTERM/SIGINT stop it cleanly."""
        if self.supervisord.pid() is not None:
            say(f"a stack already runs from {self.var_dir} (make up); stop it with make down first")
            return RET_FAILED
        stores = self.plan_stores()
        process = self.start_supervisord(foreground=True)

        def forward(signum: int, frame: object) -> None:
            if process.poll() is None:
                process.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        try:
            prepare_database(self.settings, stores, self.root)
            self.supervisord.start_programs()
            self.wait_healthy(120)
            self.print_where_to_look()
        except (StackError, OSError, xmlrpc.client.Error, TickStockPLError) as exc:
            if process.poll() is None:  # not a stop request that raced the start: a real failure
                code = failed(exc, otherwise=RET_FAILED)
                process.terminate()
                process.wait()
                return code
        return process.wait()

    def print_where_to_look(self) -> None:
        s = self.settings
        port_flag = f" -p {s.redis_port}" if s.redis_port != 6379 else ""
        host_flag = f" -h {s.redis_host}" if s.redis_host not in ("localhost", "127.0.0.1") else ""
        lines = [
            "the stack is up and healthy. Where to look:",
            f"  events:   redis-cli{host_flag}{port_flag} SUBSCRIBE {contract.CHANNEL_PATTERNS}",
            f"  metrics:  http://{s.metrics_host}:{s.metrics_port}/metrics",
            "  status:   make status      (supervisord and doctor)",
            f"  logs:     make logs        ({self.supervisord.log_file})",
            "  stop:     make down",
        ]
        print("\n".join(lines), flush=True)

    def status(self) -> int:
        pid = self.supervisord.pid()
        if pid is None:
            say(f"not running (no supervisord answers on {self.supervisord.sock})")
            return RET_FAILED
        self.supervisord.print_status(pid)
        failing = self.failing_checks()
        for line in failing:
            print(f"  ✗ {line}")
        if not failing:
            print("  ✓ required checks pass (Redis, PostgreSQL schema, heartbeat)")
        doctor = run_doctor(self.environment(), self.root)
        self.warn_about_persistence()
        return RET_OK if not failing and doctor == RET_OK else RET_FAILED
