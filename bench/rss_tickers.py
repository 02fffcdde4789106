"""The detector's memory under a feed of ever-new tickers (issue #13, finding 5).

Starts a private redis-server and `python -m tickstockpl.services.detector` on the tick feed, publishes
one tick each for N distinct tickers (paced, so the subscriber's output buffer never overflows), waits
until the detector has handled them, and prints its resident memory (VmRSS) and peak (VmHWM) before
and after. Run it against other code with PYTHONPATH=<checkout> (the child inherits it).

    .venv/bin/python -m bench.rss_tickers [N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from tickstockpl import contract
from tickstockpl.local_servers import LocalRedis, wait_for

BATCH = 10_000


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def handled(client: redis.Redis) -> int:
    """Ticks the detector has counted: bars it received plus ticks it rejected (both in bars_received)."""
    return int(client.hget(contract.KEY_STATS, "bars_received") or 0)


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = LocalRedis(Path(directory), appendonly=False).start()
        client = redis.Redis(host=server.host, port=server.port)
        env = {
            **os.environ,
            "REDIS_HOST": server.host,
            "REDIS_PORT": str(server.port),
            "TICKSTOCKPL_SOURCE": "ticks",
            "TICKSTOCKPL_MIN_CONFIDENCE": "0",
        }
        log = open(Path(directory) / "detector.log", "w")  # closed below
        detector = subprocess.Popen(
            [sys.executable, "-m", "tickstockpl.services.detector"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            channel = contract.CHANNEL_RAW_TICKS
            wait_for(lambda: dict(client.pubsub_numsub(channel))[channel.encode()] >= 1, 30, "the detector")
            time.sleep(2.0)  # settle after imports
            idle = memory_mb(detector.pid)
            stamp = time.time() - 90
            started = time.monotonic()
            for first in range(0, count, BATCH):
                pipe = client.pipeline(transaction=False)
                for n in range(first, min(count, first + BATCH)):
                    pipe.publish(channel, json.dumps({"ticker": f"T{n}", "price": 10.0, "timestamp": stamp}))
                pipe.execute()
                time.sleep(0.3)
            last, stable_since = -1, time.monotonic()
            while time.monotonic() - stable_since < 10 and time.monotonic() - started < 600:
                now = handled(client)
                if now != last:
                    last, stable_since = now, time.monotonic()
                time.sleep(0.5)
            after = memory_mb(detector.pid)
            stats = {k.decode(): v.decode() for k, v in client.hgetall(contract.KEY_STATS).items()}
            print(f"distinct tickers published: {count:,}")
            print(f"detector RSS idle: {idle[0]:.0f} MB; after: {after[0]:.0f} MB (peak {after[1]:.0f} MB)")
            print(f"running: {detector.poll() is None}; handled in {time.monotonic() - started - 10:.0f} s")
            print("stats:", {k: v for k, v in sorted(stats.items()) if "time" not in k})
        finally:
            detector.kill()
            detector.wait()
            log.close()
            client.close()
            server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000)
