"""The Docker path of `up / down / status`: `docker compose` with docker-compose.yml, taken when a
Docker daemon answers (TICKSTOCKPL_STACK=docker forces it, `embedded` forbids it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tickstockpl import contract
from tickstockpl.exitcodes import RET_OK
from tickstockpl.settings import Settings
from tickstockpl.stack.base import ROOT
from tickstockpl.stack.stores import ensure_env_secret


def use_docker(settings: Settings) -> bool:
    if settings.stack_mode == "docker":
        return True
    return settings.stack_mode == "auto" and docker_daemon_answers()


def docker_daemon_answers(timeout_s: float = 3.0) -> bool:
    """True when `docker info` succeeds: a client without a daemon (our machines) is not enough."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


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
    """`up` in Docker: secrets into .env, then build, start and wait for the health checks."""
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
