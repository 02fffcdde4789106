"""`tickstockpl tail` as a real process: one readable line per event, --json, --count, reconnects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import redis

from tests.integration.stack_helpers import ROOT, fast
from tests.support import poll, run_cli
from tickstockpl import contract
from tickstockpl.commands.tail import format_line
from tickstockpl.local_servers import free_port
from tickstockpl.services import heartbeat as heartbeat_service
from tickstockpl.settings import Settings


def start_tail(settings: Settings, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tickstockpl.cli", "tail", *args],
        env={**os.environ, **settings.to_env()},
        cwd=ROOT / "tests",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def listening(client: redis.Redis, channel: str = contract.CHANNEL_PATTERNS) -> bool:
    return dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) >= 1


def finish(process: subprocess.Popen[str], timeout_s: float = 30) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout_s)
    finally:
        process.kill()
    assert "Traceback" not in out + err, out + err
    return process.returncode, out, err


def test_one_readable_line_per_event(settings: Settings, redis_client: redis.Redis) -> None:
    tail = start_tail(settings, "--count", "4")
    poll(lambda: listening(redis_client), 15, "tail to subscribe")
    published = run_cli(
        settings, "publish-test", "--symbol", "NVDA", "--pattern", "Support_Test", "--confidence", "0.876"
    )
    assert published.returncode == 0, published.stdout
    flow_id = published.stdout.split("flow_id=")[1].split()[0]
    assert heartbeat_service.run(fast(settings), burst=True) == 0  # one system_health event
    progress = contract.build_backtest_progress("backtest_1758300000_ab12cd34", 0.45, current_symbol="AAPL")
    redis_client.publish(contract.CHANNEL_BACKTEST_PROGRESS, json.dumps(progress))
    result = contract.build_backtest_result(
        "backtest_1758300000_ab12cd34", "completed", {"win_rate": 0.55, "roi": 0.12, "max_drawdown": 0.08}
    )
    redis_client.publish(contract.CHANNEL_BACKTEST_RESULTS, json.dumps(result))
    code, out, err = finish(tail)
    assert code == 0, out + err
    lines = out.splitlines()
    assert len(lines) == 4, out
    pattern, health_line, progress_line, result_line = lines
    assert " pattern " in pattern and "NVDA" in pattern and "Support_Test" in pattern
    assert "0.88" in pattern and f"flow {flow_id[:8]}" in pattern and "out of contract" not in pattern
    assert " health " in health_line and "healthy" in health_line and "postgres ok" in health_line
    assert "progress" in progress_line and "45.0%" in progress_line and "AAPL" in progress_line
    assert "completed" in result_line and "win_rate 0.550" in result_line
    assert "listening on tickstock.events.patterns" in err


def test_json_lines_carry_the_channel_and_the_message(settings: Settings, redis_client: redis.Redis) -> None:
    tail = start_tail(settings, "--json", "--count", "2", "--channel", contract.CHANNEL_PATTERNS)
    poll(lambda: listening(redis_client), 15, "tail to subscribe")
    event = contract.build_pattern_event(symbol="AAPL", pattern="Volume_Spike", confidence=0.9)
    redis_client.publish(contract.CHANNEL_PATTERNS, contract.encode(event))
    redis_client.publish(contract.CHANNEL_PATTERNS, "{not json")
    code, out, _ = finish(tail)
    assert code == 0
    first, second = (json.loads(line) for line in out.splitlines())
    assert first == {"channel": contract.CHANNEL_PATTERNS, "message": event}
    assert second == {"channel": contract.CHANNEL_PATTERNS, "message": "{not json"}


def test_garbage_and_out_of_contract_events_are_shown_not_fatal(
    settings: Settings, redis_client: redis.Redis
) -> None:
    tail = start_tail(settings, "--count", "3")
    poll(lambda: listening(redis_client), 15, "tail to subscribe")
    redis_client.publish(contract.CHANNEL_PATTERNS, b"\xff not json")
    redis_client.publish(contract.CHANNEL_PATTERNS, json.dumps([1, 2]))
    bad: dict[str, Any] = {"event_type": "pattern_detected", "source": "TickStockPL", "timestamp": 1.5}
    bad["data"] = {"symbol": "AAPL", "pattern_name": "Doji", "confidence": 85, "flow_id": "test-flow"}
    redis_client.publish(contract.CHANNEL_PATTERNS, json.dumps(bad))
    code, out, _ = finish(tail)
    assert code == 0
    garbage, array, out_of_contract = out.splitlines()
    assert "not JSON" in garbage and "not a JSON object" in array
    assert "AAPL" in out_of_contract and "out of contract: data.pattern: is required" in out_of_contract


def test_survives_a_redis_restart(settings: Settings, redis_client: redis.Redis, redis_server: Any) -> None:
    tail = start_tail(settings, "--count", "1")
    poll(lambda: listening(redis_client), 15, "tail to subscribe")
    redis_server.stop()
    try:
        assert tail.poll() is None
    finally:
        redis_server.start()
    client = redis.Redis(host=redis_server.host, port=redis_server.port, socket_timeout=5)
    try:
        poll(lambda: listening(client), 30, "tail to subscribe again")
        client.publish(
            contract.CHANNEL_PATTERNS,
            contract.encode(
                contract.build_pattern_event(symbol="MSFT", pattern="Price_Breakout", confidence=0.7)
            ),
        )
    finally:
        client.close()
    code, out, err = finish(tail)
    assert code == 0 and "MSFT" in out, out + err


def test_redis_unreachable_is_one_line(settings: Settings) -> None:
    result = run_cli(settings.replace(redis_port=free_port()), "tail", "--count", "1")
    assert result.returncode == 69
    assert len(result.stdout.strip().splitlines()) == 1 and "unreachable" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_timeout_without_events(settings: Settings) -> None:
    result = run_cli(settings, "tail", "--count", "1", "--timeout", "0.5")
    assert result.returncode == 1 and "timed out" in result.stderr and result.stdout == ""


def test_format_line_never_raises_on_odd_shapes() -> None:
    odd = [b"", b"null", b'{"data": 5}', b'{"components": [1]}', b'{"timestamp": "x"}']
    for channel in (*contract.PRODUCER_CHANNELS, "elsewhere"):
        for payload in odd:
            assert isinstance(format_line(channel, payload), str)
