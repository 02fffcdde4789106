"""Helpers for the end-to-end tests: start a whole supervised stack on fresh servers, and look at it
only through its public surfaces (the channel, integration_events, the heartbeat key, /metrics,
supervisorctl).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.support import poll
from tickstockpl import contract
from tickstockpl.local_servers import free_port
from tickstockpl.settings import Settings
from tickstockpl.stack.embedded import EmbeddedStack

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def stack_settings(**overrides: Any) -> Settings:
    """Settings for a stack on free ports: nothing listens there, so the stack starts its own stores."""
    base = Settings(
        redis_host="127.0.0.1",
        redis_port=free_port(),
        postgres_host="127.0.0.1",
        postgres_port=free_port(),
        postgres_password=secrets.token_urlsafe(12),
        metrics_port=free_port(),
        heartbeat_interval_s=1.0,
        alive_row_interval_s=5.0,
        health_interval_s=5.0,
        speed=600.0,
        stack_mode="embedded",
    )
    return base.replace(**overrides)


def descendants(pid: int) -> set[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def rss_kb(pid: int) -> int:
    """Resident memory of `pid` and every process below it (the supervised wrapper and its service)."""
    total = 0
    for each in descendants(pid):
        try:
            lines = Path(f"/proc/{each}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
    return total


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and every process below it."""
    ticks = 0
    for each in descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (a var directory, say)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and alive(int(entry.name)):
                found.append(f"{entry.name}: {cmdline}")
    return found


def published_rows(sql: Callable[[str, Any], list[tuple[Any, ...]]]) -> list[tuple[str, int]]:
    """(flow_id, row count) of every PATTERN_PUBLISHED row the producer wrote, read through `sql`."""
    return [
        (str(flow_id), int(count))
        for flow_id, count in sql(
            "SELECT flow_id, count(*) FROM integration_events"
            " WHERE checkpoint = %s AND source_system = %s GROUP BY flow_id",
            (contract.CHECKPOINT_PATTERN_PUBLISHED, contract.SOURCE_SYSTEM),
        )
    ]


@dataclass
class RunningStack:
    """A stack started by a test, and the public surfaces to look at it."""

    stack: EmbeddedStack
    settings: Settings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = self.stack.settings

    @property
    def var_dir(self) -> Path:
        return self.stack.var_dir

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        ctl_conf = str(self.stack.supervisord.ctl_conf)
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", ctl_conf, *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def status(self) -> dict[str, tuple[str, int]]:
        """Program name -> (state, pid) from `supervisorctl status`."""
        result: dict[str, tuple[str, int]] = {}
        for line in self.supervisorctl("status").stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else 0
                result[parts[0]] = (parts[1], pid)
        return result

    def process_info(self) -> dict[str, tuple[str, int, int]]:
        """Program name -> (state, pid, start time) from supervisord's XML-RPC getAllProcessInfo."""
        return {
            f"{info['group']}:{info['name']}": (str(info["statename"]), int(info["pid"]), int(info["start"]))
            for info in self.stack.supervisord.process_info()
        }

    def doctor(self) -> subprocess.CompletedProcess[str]:
        """`tickstockpl doctor --expect-running` in the stack's own environment, as `up` runs it."""
        return subprocess.run(
            [sys.executable, "-m", "tickstockpl.cli", "doctor", "--expect-running"],
            env=self.stack.environment(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    def stats(self) -> dict[str, str]:
        """The stack-wide counters the processes keep in Redis (what the exporter and doctor read)."""
        client = self.redis()
        try:
            raw: dict[bytes, bytes] = client.hgetall(contract.KEY_STATS)  # type: ignore[assignment]
            return {key.decode(): value.decode() for key, value in raw.items()}
        finally:
            client.close()

    def log_text(self) -> str:
        """stack.log and its rotated files, oldest first."""
        log_file = self.stack.supervisord.log_file
        rotated = [p for p in log_file.parent.glob(log_file.name + ".*") if p.suffix[1:].isdigit()]
        files = sorted(rotated, key=lambda p: int(p.suffix[1:]), reverse=True) + [log_file]
        return "".join(path.read_text(encoding="utf-8", errors="replace") for path in files if path.is_file())

    def redis(self) -> redis.Redis:
        return redis.Redis(host=self.settings.redis_host, port=self.settings.redis_port, socket_timeout=10)

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.settings.postgres_dsn)
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
        return f"http://{self.settings.metrics_host}:{self.settings.metrics_port}/metrics"

    def metrics(self) -> Samples:
        return scrape(self.metrics_url)

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))

    def metric_sum(self, name: str) -> float:
        return sum(value for (sample, _), value in self.metrics().items() if sample == name)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@contextmanager
def running_stack(var_dir: Path, settings: Settings) -> Iterator[RunningStack]:
    """Start the embedded stack (as `make up` does) and stop it afterwards, checking nothing is left."""
    var_dir.mkdir(parents=True, exist_ok=True)
    var_dir.chmod(0o755)
    stack = EmbeddedStack(settings=settings, var_dir=var_dir, env_file=None, durable=False)
    try:
        stack.up(timeout_s=180)
        yield RunningStack(stack)
    finally:
        pid = stack.supervisord.pid()
        started = descendants(pid) if pid else set()
        stack.down()
        poll(lambda: not [p for p in started if alive(p)], 60, "every process the stack started to exit")


def prometheus_get(base: str, path: str, **params: str) -> Any:
    """The `data` of a Prometheus HTTP API answer (asserting its status is success)."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def prometheus_query(base: str, expr: str) -> list[dict[str, Any]]:
    """The series an instant query returns; none while the server does not answer yet."""
    try:
        result: list[dict[str, Any]] = prometheus_get(base, "/api/v1/query", query=expr)["result"]
    except OSError:
        return []
    return result


class Subscriber:
    """Collects every message on a channel (the consumer's view); `messages` reads what has arrived."""

    def __init__(self, client: redis.Redis, channel: str = contract.CHANNEL_PATTERNS) -> None:
        self._received: list[bytes] = []
        self._client = client  # a collected client closes its pool, and with it our connection
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel)
        # The subscribe confirmation is read (and skipped) by the first get_message.
        first = self._pubsub.get_message(timeout=5)
        if first is not None and first["type"] == "message":
            self._received.append(first["data"])

    @property
    def messages(self) -> list[bytes]:
        while (message := self._pubsub.get_message(timeout=0.01)) is not None:
            if message["type"] == "message":
                self._received.append(message["data"])
        return list(self._received)

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
