"""For the backtest integration tests: real bars, the real service, a listener like the consumer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.support import poll
from tickstockpl import contract
from tickstockpl.backtest.history import read_csv
from tickstockpl.backtest.store import PostgresHistory
from tickstockpl.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DAILY = ROOT / "data" / "daily_us_equities_2000_2013.csv"
DEADLINE_S = 60.0


def load_daily(settings: Settings) -> int:
    """The real daily file into historical_bars, through the loader's own upsert."""
    store = PostgresHistory(settings)
    try:
        series, _ = read_csv(DAILY)
        return sum(store.upsert(s) for s in series)
    finally:
        store.close()


def consumer_job(job_id: str, **changes: Any) -> dict[str, Any]:
    """A job exactly as TickStockAppV2's backtest_job_manager publishes it (contract §3.1)."""
    job = {
        "type": "backtest_job",
        "job_id": job_id,
        "user_id": "anonymous",
        "symbols": ["AAPL", "MSFT", "GOOG", "IBM", "FB"],
        "start_date": "2008-01-01",
        "end_date": "2012-12-31",
        "patterns": ["Hammer", "Doji", "Engulfing", "ShootingStar"],
        "parameters": {
            "initial_capital": 100000,
            "commission_rate": 0.001,
            "slippage_rate": 0.0005,
            "max_position_size": 0.1,
            "stop_loss_pct": 0.05,
            "take_profit_pct": 0.10,
        },
        "timestamp": time.time(),
        "source": "tickstock_appv2",
    }
    job.update(changes)
    return job


def job_id(n: int) -> str:
    """backtest_<epoch seconds>_<8 hex>, not a UUID, as the consumer makes them."""
    return f"backtest_{int(time.time())}_{n:08x}"


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    poll(condition, timeout_s, what)


class Listener:
    """Subscribes to the progress and results channels, as the consumer's subscriber does."""

    def __init__(self, client: redis.Redis) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(contract.CHANNEL_BACKTEST_PROGRESS, contract.CHANNEL_BACKTEST_RESULTS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.05)
            if message and message["type"] == "message":
                channel = message["channel"].decode()
                self.messages.append((channel, json.loads(message["data"])))

    def progress(self, job: str) -> list[dict[str, Any]]:
        return [
            m
            for c, m in list(self.messages)
            if c == contract.CHANNEL_BACKTEST_PROGRESS and m["job_id"] == job
        ]

    def results(self, job: str) -> list[dict[str, Any]]:
        return [
            m for c, m in list(self.messages) if c == contract.CHANNEL_BACKTEST_RESULTS and m["job_id"] == job
        ]

    def order(self, job: str) -> list[str]:
        """'p' and 'r' in arrival order, for one job."""
        kinds = {contract.CHANNEL_BACKTEST_PROGRESS: "p", contract.CHANNEL_BACKTEST_RESULTS: "r"}
        return [kinds[c] for c, m in list(self.messages) if m.get("job_id") == job]

    def wait_result(self, job: str) -> dict[str, Any]:
        wait_for(lambda: bool(self.results(job)), f"the result of {job}")
        return self.results(job)[0]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._pubsub.close()


class Service:
    """`python -m tickstockpl.services.backtester` as a real process, its output kept in a log file."""

    def __init__(self, settings: Settings, log_path: Path, throttle_s: float = 0.0) -> None:
        self.log_path = log_path
        env = {**os.environ, **settings.to_env(), "TICKSTOCKPL_BACKTEST_THROTTLE": str(throttle_s)}
        self._log = open(log_path, "a", encoding="utf-8")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickstockpl.services.backtester"],
            env=env,
            cwd=ROOT / "tests",  # not the repository root: its .env must not leak in
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def wait_subscribed(self, client: redis.Redis) -> None:
        def subscribed() -> bool:
            assert self.proc.poll() is None, f"backtester exited early:\n{self.log()}"
            counts = dict(
                client.pubsub_numsub(contract.CHANNEL_BACKTEST_JOBS, contract.CHANNEL_BACKTEST_CANCEL)
            )
            return all(count >= 1 for count in counts.values())

        wait_for(subscribed, "the backtester to subscribe")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=DEADLINE_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return code


def publish_job(client: redis.Redis, job: dict[str, Any] | str) -> None:
    client.publish(contract.CHANNEL_BACKTEST_JOBS, job if isinstance(job, str) else json.dumps(job))


def publish_cancel(client: redis.Redis, job: str) -> None:
    cancel = {"type": "cancel_job", "job_id": job, "timestamp": time.time(), "source": "tickstock_appv2"}
    client.publish(contract.CHANNEL_BACKTEST_CANCEL, json.dumps(cancel))


def browser_metrics(message: dict[str, Any]) -> list[dict[str, Any]]:
    """What TickStockAppV2's browser shows for a result message, once per Socket.IO path.

    Read as `web/static/js/core/tickstockpl-integration.js` (2fedaed) does: the subscriber forwards
    the whole message as `event.data`, the broadcaster as `event_data.data` (contract §2.2);
    `handleBacktestResult` passes `(data.event_data || data.event).data` to `updateBacktestResults`,
    which shows `results.win_rate || 0`, `results.roi || 0`, `results.sharpe_ratio || 0` (and the
    issue adds `max_drawdown`) read from that object itself, not from its `results`.
    """
    envelope = {
        "event_type": "backtest_result",
        "source": message.get("source", "unknown"),
        "timestamp": message.get("timestamp"),
        "data": message,
        "channel": contract.CHANNEL_BACKTEST_RESULTS,
    }
    shown = []
    for socket_payload in ({"type": "backtest_result", "event": envelope}, {"event_data": envelope}):
        event_data = socket_payload.get("event_data") or socket_payload.get("event") or {}
        results = event_data.get("data") or {}
        shown.append({name: results.get(name) or 0 for name in contract.BACKTEST_RESULT_FIELDS})
    return shown


def assert_valid_result(result: dict[str, Any]) -> None:
    """Appendix B item 13 for a result message."""
    assert isinstance(result["job_id"], str) and result["status"] in {"completed", "failed", "cancelled"}
    assert isinstance(result["results"], dict)
    for key in contract.BACKTEST_RESULT_FIELDS:
        assert type(result["results"][key]) in (int, float), key
    assert 0 <= result["results"]["win_rate"] <= 1 and 0 <= result["results"]["max_drawdown"] <= 1
    for key in contract.BACKTEST_RESULT_FIELDS:  # and at the top level, for the browser (issue 17)
        assert result[key] == result["results"][key], key
