"""Helpers for the heartbeat, doctor and tail tests: the real processes, a fake consumer, polling.

Nothing here is mocked: the heartbeat runs as `python -m tickstockpl.services.heartbeat` (or its real
`run()` loop in a thread), and the fake consumer writes its rows through the real `log_integration_event`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import redis

from tickstockpl import contract
from tickstockpl.services import heartbeat as heartbeat_service
from tickstockpl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def fast(settings: Settings, **changes: Any) -> Settings:
    """Heartbeat intervals short enough for tests; the same ratios as production where it matters."""
    values: dict[str, Any] = {
        "heartbeat_interval_s": 0.2,
        "heartbeat_ttl_s": 5,
        "alive_row_interval_s": 1.5,
        "health_interval_s": 60.0,
    }
    values.update(changes)
    return settings.replace(**values)


class HeartbeatProcess:
    """`python -m tickstockpl.services.heartbeat` with the given settings; stdout kept in a temp file."""

    def __init__(self, settings: Settings) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="heartbeat-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tickstockpl.services.heartbeat"],
            env={**os.environ, **settings.to_env()},
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout_s: float = 30) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(timeout=30)

    def close(self) -> None:
        self.kill()
        self._log.close()
        os.unlink(self._log.name)


class HeartbeatThread:
    """The real `run()` loop in a thread, stopped through its Event (as SIGTERM would)."""

    def __init__(self, settings: Settings) -> None:
        self.stop_event = threading.Event()
        self.result: int | None = None
        self._thread = threading.Thread(target=self._run, args=(settings,), daemon=True)
        self._thread.start()

    def _run(self, settings: Settings) -> None:
        self.result = heartbeat_service.run(settings, self.stop_event)

    def stop(self, timeout_s: float = 30) -> int | None:
        self.stop_event.set()
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "heartbeat run() did not stop"
        return self.result


class FakeConsumer:
    """TickStockAppV2's subscriber as contract §2.3 describes it, for the patterns it receives.

    Subscribes to the four producer channels (as the consumer does); for each message on
    tickstock.events.patterns it writes EVENT_RECEIVED (channel, symbol, data.pattern, confidence,
    details {"source": envelope source}) and then EVENT_PARSED (no channel, pattern or pattern_name,
    confidence default 0), each in its own transaction, through log_integration_event as
    source_system 'TickStockAppV2' with the message's flow_id.
    """

    _SQL = "SELECT log_integration_event(%s::uuid, %s, %s, %s, %s, %s, %s, %s::numeric, NULL, %s::jsonb)"

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.handled: list[dict[str, Any]] = []
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(*contract.PRODUCER_CHANNELS)
        for _ in contract.PRODUCER_CHANNELS:
            self._pubsub.get_message(timeout=5)  # the subscribe confirmations
        self._conn = psycopg2.connect(settings.postgres_dsn)
        self._conn.autocommit = True  # one transaction per row, as the consumer's logger does
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message and message["type"] == "message":
                channel = message["channel"].decode()
                if channel == contract.CHANNEL_PATTERNS:
                    self._log(json.loads(message["data"]))

    def _log(self, event: dict[str, Any]) -> None:
        data = event.get("data", event)
        flow_id = event.get("flow_id") or data.get("flow_id")
        symbol, confidence = data.get("symbol"), data.get("confidence")
        with self._conn.cursor() as cursor:
            cursor.execute(
                self._SQL,
                (
                    flow_id,
                    contract.EVENT_PATTERN_DETECTED,
                    contract.CONSUMER_SOURCE_SYSTEM,
                    contract.CHECKPOINT_EVENT_RECEIVED,
                    contract.CHANNEL_PATTERNS,
                    symbol,
                    data.get("pattern"),
                    confidence,
                    json.dumps({"source": event.get("source", "unknown")}),
                ),
            )
            pattern = data.get("pattern") or data.get("pattern_name")
            if symbol and pattern:
                cursor.execute(
                    self._SQL,
                    (
                        flow_id,
                        contract.EVENT_PATTERN_DETECTED,
                        contract.CONSUMER_SOURCE_SYSTEM,
                        contract.CHECKPOINT_EVENT_PARSED,
                        None,
                        symbol,
                        pattern,
                        confidence or 0,
                        None,
                    ),
                )
        self.handled.append(event)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._pubsub.close()
        self._conn.close()
