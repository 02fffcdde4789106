"""Helpers shared by the relay tests (no tests here): events, a subscriber, the audit rows, processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from tests.conftest import execute
from tests.support import poll, run_python
from tickstockpl import contract
from tickstockpl.relay import deadletters
from tickstockpl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def make_events(count: int, prefix: str = "T", **extra: Any) -> list[dict[str, Any]]:
    """`count` valid pattern events with distinct flow_ids."""
    return [
        contract.build_pattern_event(
            symbol=f"{prefix}{index % 7}",
            pattern=contract.REQUIREMENTS_PATTERNS[index % 4],
            confidence=0.5 + (index % 50) / 100,
            tier="intraday",
            current_price=100.0 + index,
            price_change=0.5,
            extra=extra or None,
        )
        for index in range(count)
    ]


def flow_ids(events: list[dict[str, Any]]) -> set[str]:
    return {event["data"]["flow_id"] for event in events}


class Subscriber:
    """Collects every message on the pattern channel in a thread, as the consumer would."""

    def __init__(self, client: redis.Redis) -> None:
        self.messages: list[dict[str, Any]] = []
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(contract.CHANNEL_PATTERNS)
        poll(lambda: self._pubsub.get_message(timeout=0.1) is not None, 5, "subscribe confirmation")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message and message["type"] == "message":
                self.messages.append(json.loads(message["data"]))

    def counts(self) -> Counter[str]:
        return Counter(message["data"]["flow_id"] for message in list(self.messages))

    def wait_for_flows(self, expected: set[str], timeout_s: float = 30) -> None:
        poll(lambda: expected <= set(self.counts()), timeout_s, f"{len(expected)} flows published")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pubsub.close()


def audit_rows(settings: Settings) -> Counter[str]:
    """PATTERN_PUBLISHED rows per flow_id."""
    rows = execute(
        settings.postgres_dsn,
        "SELECT flow_id::text, count(*) FROM integration_events "
        "WHERE checkpoint = 'PATTERN_PUBLISHED' AND source_system = 'TickStockPL' GROUP BY flow_id",
    )
    return Counter({flow_id: count for flow_id, count in rows})


def stream_flow_ids(client: redis.Redis) -> Counter[str]:
    """flow_ids in the replay stream (every publish XADDs there)."""
    entries = client.xrange(contract.KEY_REPLAY_STREAM)
    return Counter(json.loads(fields[b"event"])["data"]["flow_id"] for _, fields in entries)


def queues_empty(client: redis.Redis) -> bool:
    return client.llen(contract.KEY_OUTBOX) == 0 and client.llen(contract.KEY_PROCESSING) == 0


def stats(client: redis.Redis) -> dict[str, str]:
    return {key.decode(): value.decode() for key, value in client.hgetall(contract.KEY_STATS).items()}


def dead_letters(client: redis.Redis) -> list[deadletters.DeadLetter]:
    return deadletters.dead_letters(client)


def relay_env(settings: Settings, **extra: str) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), **extra}


def run_relay(
    settings: Settings, *args: str, timeout_s: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m tickstockpl.services.relay ...` to completion."""
    return run_python(settings, "-m", "tickstockpl.services.relay", *args, timeout_s=timeout_s, **env)


class RelayProcess:
    """A long-running relay process whose output is collected as it comes."""

    def __init__(self, settings: Settings, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickstockpl.services.relay"],
            env=relay_env(settings, **env),
            cwd=ROOT / "tests",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_output(self, text: str, timeout_s: float = 20) -> None:
        poll(lambda: text in self.output, timeout_s, f"{text!r} in the relay's output")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout_s: float = 30) -> tuple[int, str]:
        """SIGTERM (once) and wait for the exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 30) -> tuple[int, str]:
        """Wait for the exit without signalling: (exit code, output)."""
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=timeout_s)
        return code, self.output

    def kill(self) -> None:
        """Teardown: make sure the process is gone and its pipe closed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
