"""Sharded detectors on the real data (issue 14, item 4): two detector processes, each told its shard
as supervisord tells it, publish exactly what one detector publishes: the same (symbol, timeframe,
bar, pattern) set, none twice, no symbol missed; each shard's own series in its own gauge.

The CSV source replays two of the real files (data/README.md) flat out; the relay then publishes what
the detectors put in the outbox, and the replay stream holds every publish."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from collections import Counter
from pathlib import Path

import redis

from tests.support import ROOT, poll
from tickstockpl import contract, health
from tickstockpl.exitcodes import RET_OK
from tickstockpl.services import relay
from tickstockpl.settings import Settings
from tickstockpl.sharding import shard_of
from tickstockpl.sources.csv_replay import load_csv
from tickstockpl.stack.supervisord import Supervisord

DATA = ROOT / "data"
FILES = tuple(
    str(DATA / name)
    for name in ("daily_us_equities_2000_2013.csv", "minute_aapl_2026.csv")  # (hourly: AAPL again)
)
Published = tuple[str, str, int, str, str]  # symbol, timeframe, bar_start, pattern, tier (combo or not)


def run_detectors(settings: Settings, shards: int) -> None:
    """`shards` detector processes at once, as supervisord runs them (TICKSTOCKPL_SHARD_INDEX each)."""
    env = {**os.environ, **settings.replace(detector_shards=shards).to_env(), "TICKSTOCKPL_ENV_FILE": ""}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tickstockpl.services.detector"],
            env={**env, "TICKSTOCKPL_SHARD_INDEX": str(index)},
            cwd=ROOT / "tests",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(shards)
    ]
    for index, process in enumerate(processes):
        output, _ = process.communicate(timeout=300)
        assert process.returncode == RET_OK, output
        assert f"(shard {index} of {shards})" in output


def published(settings: Settings, client: redis.Redis, shards: int) -> Counter[Published]:
    """Detect with `shards` processes, publish with the relay; what reached the replay stream."""
    client.flushall()
    run_detectors(settings, shards)
    assert relay.run(settings, burst=True) == RET_OK
    events = [json.loads(fields[b"event"])["data"] for _, fields in client.xrange(contract.KEY_REPLAY_STREAM)]
    assert client.llen(contract.KEY_OUTBOX) == 0 and client.llen(contract.KEY_DEAD_LETTERS) == 0
    return Counter((e["symbol"], e["timeframe"], e["bar_start"], e["pattern"], e["tier"]) for e in events)


def stats(client: redis.Redis) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(contract.KEY_STATS).items()}


def test_two_shards_publish_exactly_what_one_detector_publishes(
    settings: Settings, redis_client: redis.Redis
) -> None:
    replay = settings.replace(
        source="csv", csv_files=FILES, speed=0.0, min_confidence=0.0, replay_stream_maxlen=1_000_000
    )
    one = published(replay, redis_client, 1)
    one_stats = stats(redis_client)
    two = published(replay, redis_client, 2)
    two_stats = stats(redis_client)

    bars = [bar for path in FILES for bar in load_csv(path)]
    symbols = {bar.symbol for bar in bars}
    assert len(one) > 5_000 and {symbol for symbol, *_ in one} == symbols  # every symbol publishes
    assert max(one.values()) == 1 and max(two.values()) == 1  # nothing published twice
    assert two == one
    assert two_stats["bars_received"] == one_stats["bars_received"] == str(len(bars))
    assert two_stats["patterns_published"] == one_stats["patterns_published"] == str(len(one))
    # Each shard held only its own series (of the feed and of every timeframe made from it): together
    # exactly what the one detector held, each some of them.
    series = {(bar.symbol, bar.timeframe) for bar in bars}
    held = [int(two_stats[f"series_tracked:{index}"]) for index in range(2)]
    for index in range(2):
        owned = sum(1 for symbol, _ in series if shard_of(symbol, 2) == index)
        assert owned > 0 and held[index] >= owned
        assert float(two_stats[f"shard_last_bar_time:{index}"]) > 0
    assert sum(held) == int(one_stats["series_tracked:0"]) >= len(series)


def test_a_detector_told_an_impossible_shard_exits_misconfigured(settings: Settings) -> None:
    env = {**os.environ, **settings.to_env(), "TICKSTOCKPL_ENV_FILE": "", "TICKSTOCKPL_SHARD_INDEX": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "tickstockpl.services.detector"],
        env={**env, "TICKSTOCKPL_DETECTOR_SHARDS": "2"},
        cwd=Path(ROOT / "tests"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78
    assert "TICKSTOCKPL_SHARD_INDEX=2 is not a shard of 2" in result.stdout + result.stderr


def test_supervisord_runs_two_detector_shards_and_programwatch_reports_each(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The real supervisord.conf with TICKSTOCKPL_DETECTOR_SHARDS=2, as `make up` starts it."""
    # No timeframes: one series a symbol, so each shard's count is exact.
    live = settings.replace(detector_shards=2, speed=0.0, bar_seconds=60, timeframes=())
    daemon = Supervisord(tmp_path / "var", ROOT, live.detector_processes)
    env = {
        **os.environ,
        **live.to_env(),
        "TICKSTOCKPL_VAR": str(tmp_path / "var"),
        "TICKSTOCKPL_PYTHON": sys.executable,
        "TICKSTOCKPL_AUTOSTART": "false",
        "TICKSTOCKPL_SERVICE_USER": pwd.getpwuid(os.geteuid()).pw_name,
        "TICKSTOCKPL_ENV_FILE": "",
    }
    daemon.start(env)
    try:
        for name in live.detector_processes:  # only the detectors: the test drains nothing
            daemon.call("startProcess", f"tickstockpl:{name}", False)

        def both_progress() -> bool:
            fields = stats(redis_client)
            return all(f"shard_last_bar_time:{index}" in fields for index in range(2))

        poll(both_progress, 120, "both shards to detect")

        def detectors_reported() -> dict[str, str]:
            return {
                name: state.state
                for name, state in health.read_programs(redis_client).items()
                if name.startswith("tickstockpl:detector")
            }

        running = {"tickstockpl:detector-0": "RUNNING", "tickstockpl:detector-1": "RUNNING"}
        poll(lambda: detectors_reported() == running, 60, f"programwatch to report {running}")
        others = [f"{name} is STOPPED" for name in daemon.processes()[2:]]  # relay, heartbeat, ...
        poll(lambda: daemon.not_ready() == others, 60, "`up`'s readiness check to pass both detectors")
    finally:
        daemon.shutdown(60)
    fields = stats(redis_client)
    symbols = {0: 0, 1: 0}
    for symbol in live.symbols:
        symbols[shard_of(symbol, 2)] += 1
    assert {index: int(fields[f"series_tracked:{index}"]) for index in range(2)} == symbols
