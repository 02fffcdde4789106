"""The tick feed end to end: ticks on `tickstock.data.raw` -> minute bars -> patterns -> outbox.

    .venv/bin/python -m bench.bench_ticks

Starts its own redis-server. SYMBOLS symbols trade TICKS_PER_MINUTE ticks each per minute for MINUTES
minutes (a random walk, so patterns fire), then one tick each of the next minute, which closes the
last bars. This process publishes them, pipelined, as fast as Redis takes them; the detectors read
them as they come. Redis's pub/sub output-buffer limit is lifted for the run: a subscriber that falls
behind keeps its backlog here instead of being disconnected (docs/scaling.md), so what is timed is
the detector's own speed. Every figure is measured in this run, on this machine (its core count is
printed next to them: publisher, Redis and detectors share the cores):

- baseline `tick_subscriber_per_s`: a process that only subscribes and counts the messages with the
  same client (redis-py) the tick source uses: the ceiling of one subscriber on this machine;
- `ticks_per_s`: one detector process (`python -m tickstockpl.services.detector`, source `ticks`):
  JSON checks, aggregation, the pattern engine at each minute boundary, events onto the outbox. The
  clock stops when the stats hash counts every bar (the source hands bars over every 0.5 s);
- `ticks_per_s_2_shards`: two detector processes, shards 0 and 1 of 2: each hears every tick and
  keeps its own symbols' (sharding.py); against `ticks_per_s` measured just before.
- the CPU each detector process spent per tick of the feed (`/proc`, from the first PUBLISH to the
  last bar: start-up left out): what one core can carry once it has a core to itself,
  `ticks_cpu_us_per_tick` (one detector) and `ticks_cpu_us_per_tick_per_shard` (each of two).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from bench.common import print_table, record
from tickstockpl import contract
from tickstockpl.local_servers import LocalRedis
from tickstockpl.settings import Settings

SYMBOLS = 500
MINUTES = 20
TICKS_PER_MINUTE = 20
PIPELINE = 1_000  # PUBLISHes per round trip
TIMEOUT_S = 300.0


def make_ticks(start: int) -> list[bytes]:
    """Time-ordered ticks: every symbol's ticks of minute 0, then minute 1, ...; the last minute's bars
    are closed by one tick per symbol in the minute after."""
    rng = np.random.default_rng(7)
    symbols = [f"S{index:04d}" for index in range(SYMBOLS)]
    price = rng.uniform(20, 500, SYMBOLS)
    ticks = []
    for minute in range(MINUTES + 1):
        per_minute = TICKS_PER_MINUTE if minute < MINUTES else 1
        for step in range(per_minute):
            price = np.round(price * np.exp(rng.normal(0, 0.002, SYMBOLS)), 2)
            at = start + minute * 60 + step * (59 / per_minute)
            volumes = rng.integers(1, 500, SYMBOLS).tolist()
            for symbol, value, volume in zip(symbols, price.tolist(), volumes, strict=True):
                message = {"ticker": symbol, "price": value, "volume": volume, "timestamp": at}
                ticks.append(json.dumps({**message, "event_type": "tick"}).encode())
    return ticks


def publish(client: redis.Redis, ticks: list[bytes]) -> float:
    """Publish every tick; the monotonic time of the first PUBLISH."""
    started = time.monotonic()
    for lo in range(0, len(ticks), PIPELINE):
        pipe = client.pipeline(transaction=False)
        for raw in ticks[lo : lo + PIPELINE]:
            pipe.publish(contract.CHANNEL_RAW_TICKS, raw)
        pipe.execute()
    return started


def wait_for_subscribers(client: redis.Redis, count: int) -> None:
    deadline = time.monotonic() + 60
    while client.pubsub_numsub(contract.CHANNEL_RAW_TICKS)[0][1] < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} subscriber(s) never appeared")
        time.sleep(0.05)


def _counter(host: str, port: int, expected: int, done: multiprocessing.connection.Connection) -> None:
    """The baseline subscriber: count messages, report the monotonic time of the last."""
    client = redis.Redis(host=host, port=port)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(contract.CHANNEL_RAW_TICKS)
    seen = 0
    while seen < expected:
        message = pubsub.get_message(timeout=1.0)
        if message is not None and message["type"] == "message":
            seen += 1
    done.send(time.monotonic())


def bench_subscriber(settings: Settings, client: redis.Redis, ticks: list[bytes]) -> float:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.Process(
        target=_counter, args=(settings.redis_host, settings.redis_port, len(ticks), sender)
    )
    child.start()
    wait_for_subscribers(client, 1)
    started = publish(client, ticks)
    if not receiver.poll(TIMEOUT_S):
        raise RuntimeError("the baseline subscriber did not see every tick")
    finished: float = receiver.recv()
    child.join(10)
    return len(ticks) / (finished - started)


def detector_processes(settings: Settings, shards: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        **settings.replace(source="ticks", detector_shards=shards).to_env(),
        "TICKSTOCKPL_ENV_FILE": "",
        "TICKSTOCKPL_LOG_LEVEL": "WARNING",
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tickstockpl.services.detector"],
            env={**env, "TICKSTOCKPL_SHARD_INDEX": str(index)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for index in range(shards)
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_detectors(
    settings: Settings, client: redis.Redis, ticks: list[bytes], shards: int
) -> tuple[float, float]:
    """Ticks per second through `shards` detector processes, first PUBLISH to the last bar counted;
    and each process's CPU microseconds per tick of the feed (their mean)."""
    client.flushall()
    processes = detector_processes(settings, shards)
    try:
        wait_for_subscribers(client, shards)
        cpu_before = sum(cpu_seconds(process.pid) for process in processes)
        started = publish(client, ticks)
        expected = SYMBOLS * MINUTES
        deadline = time.monotonic() + TIMEOUT_S
        while int(client.hget(contract.KEY_STATS, contract.STAT_BARS_RECEIVED) or 0) < expected:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                raise RuntimeError(f"the detector(s) did not count {expected} bars")
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        cpu = (sum(cpu_seconds(process.pid) for process in processes) - cpu_before) / shards
        rejected = int(client.hget(contract.KEY_STATS, contract.STAT_BARS_REJECTED) or 0)
        disconnects = int(client.hget(contract.KEY_STATS, contract.STAT_TICK_FEED_DISCONNECTS) or 0)
        if rejected or disconnects:
            raise RuntimeError(f"{rejected} rejects, {disconnects} disconnects: not a clean run")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
    return len(ticks) / elapsed, cpu / len(ticks) * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ticks-") as directory:
        server = LocalRedis(Path(directory) / "redis", appendonly=False).start()
        settings = Settings(redis_host=server.host, redis_port=server.port)
        client = redis.Redis(host=server.host, port=server.port)
        try:
            client.config_set("client-output-buffer-limit", "pubsub 0 0 0")  # keep the backlog
            figures = run_all(settings, client)
        finally:
            client.close()
            server.stop()
    record(figures)


def run_all(settings: Settings, client: redis.Redis) -> dict[str, float]:
    ticks = make_ticks((int(time.time()) // 60 - 120) * 60)  # two hours ago: inside the tick window
    cores = os.cpu_count() or 1
    baseline = bench_subscriber(settings, client, ticks)
    one, one_cpu = bench_detectors(settings, client, ticks, 1)
    two, shard_cpu = bench_detectors(settings, client, ticks, 2)
    print_table(
        f"Tick feed: {len(ticks):,} ticks ({SYMBOLS} symbols x {MINUTES} min), {cores} CPU cores"
        " shared by the publisher, Redis and the detectors",
        ["figure", "ticks/s", "ratio", "against"],
        [
            ["tick_subscriber_per_s (baseline)", baseline, 1.0, ""],
            ["ticks_per_s (1 detector process)", one, one / baseline, "the bare subscriber"],
            ["ticks_per_s_2_shards", two, two / one, "ticks_per_s"],
        ],
    )
    print_table(
        "CPU per tick of the feed, per detector process (start-up left out)",
        ["process", "CPU us/tick", "ticks/s a core carries", "ratio"],
        [
            ["one detector", one_cpu, 1e6 / one_cpu, 1.0],
            ["each of 2 shards", shard_cpu, 1e6 / shard_cpu, one_cpu / shard_cpu],
        ],
    )
    return {
        "tick_subscriber_per_s": baseline,
        "ticks_per_s": one,
        "ticks_per_s_2_shards": two,
        "ticks_bench_cpu_count": cores,
        "ticks_cpu_us_per_tick": one_cpu,
        "ticks_cpu_us_per_tick_per_shard": shard_cpu,
    }


if __name__ == "__main__":
    main()
