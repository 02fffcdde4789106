"""Helpers for the container suite: one compose project of the whole stack (postgres, redis, producer,
prometheus) on free published ports, driven through `tickstockpl up / down` (what `make up / down`
run) and looked at only from outside: the published ports and the Docker API."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import redis

import docker
from tests.e2e.stackutil import published_rows
from tickstockpl.local_servers import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROJECT_LABEL = "com.docker.compose.project"


@dataclass
class ComposeProject:
    """A compose project named `name`, its settings in `env_file` and the environment of `tickstockpl`."""

    name: str
    env_file: Path
    env: dict[str, str] = field(default_factory=dict)
    client: Any = field(default=None, repr=False)
    up_output: str = ""  # what `tickstockpl up` printed

    @classmethod
    def create(cls, directory: Path, **producer_settings: str) -> ComposeProject:
        """A new project on free ports, with fresh passwords and `producer_settings` for the producer."""
        name = f"tickstockpl-e2e-{secrets.token_hex(3)}"
        env_file = directory / f"{name}.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in producer_settings.items()))
        env = {
            **os.environ,
            "TICKSTOCKPL_STACK": "docker",
            "COMPOSE_PROJECT_NAME": name,
            "TICKSTOCKPL_ENV_FILE": str(env_file),
            "POSTGRES_PASSWORD": secrets.token_urlsafe(12),
            "POSTGRES_SUPERUSER_PASSWORD": secrets.token_urlsafe(12),
            "REDIS_PUBLISHED_PORT": str(free_port()),
            "POSTGRES_PUBLISHED_PORT": str(free_port()),
            "TICKSTOCKPL_METRICS_PUBLISHED_PORT": str(free_port()),
            "PROMETHEUS_PUBLISHED_PORT": str(free_port()),
            **{key: value for key, value in producer_settings.items() if key == "TICKSTOCKPL_SOURCE"},
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return cls(name=name, env_file=env_file, env=env, client=docker.from_env(timeout=60))

    def port(self, variable: str) -> int:
        return int(self.env[variable])

    def cli(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        """`tickstockpl ARGS` (what `make ARGS` runs) for this project."""
        return subprocess.run(
            [str(BIN / "tickstockpl"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    # --- the Docker API's view -------------------------------------------------------------------

    def containers(self) -> list[Any]:
        return list(self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.name}"}))

    def networks(self) -> list[Any]:
        return list(self.client.networks.list(filters={"label": f"{PROJECT_LABEL}={self.name}"}))

    def container(self, service: str) -> Any:
        found = [c for c in self.containers() if c.labels.get("com.docker.compose.service") == service]
        assert len(found) == 1, f"{service}: {[c.name for c in found]}"
        return found[0]

    def state(self, service: str) -> dict[str, Any]:
        container = self.container(service)
        container.reload()
        state: dict[str, Any] = container.attrs["State"]
        return state

    def healthy(self, service: str) -> bool:
        state = self.state(service)
        return bool(state["Running"] and state.get("Health", {}).get("Status") == "healthy")

    def supervisorctl(self, *args: str) -> tuple[int, str]:
        """supervisorctl inside the producer container, on supervisord's socket."""
        code, output = self.container("producer").exec_run(
            ["supervisorctl", "-s", "unix:///app/var/supervisor.sock", *args]
        )
        return int(code), output.decode(errors="replace")

    # --- the published ports ---------------------------------------------------------------------

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port("REDIS_PUBLISHED_PORT"), socket_timeout=10)

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """A query as app_readwrite through the published PostgreSQL port."""
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.port("POSTGRES_PUBLISHED_PORT"),
            dbname="tickstock",
            user="app_readwrite",
            password=self.env["POSTGRES_PASSWORD"],
            connect_timeout=5,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        finally:
            conn.close()

    def published_rows(self) -> list[tuple[str, int]]:
        """(flow_id, row count) of every PATTERN_PUBLISHED row the producer wrote."""
        return published_rows(self.sql)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port('TICKSTOCKPL_METRICS_PUBLISHED_PORT')}/metrics"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.port('PROMETHEUS_PUBLISHED_PORT')}"
