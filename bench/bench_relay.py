"""Relay throughput and enqueue→publish latency, next to the reference and the ceilings, in one run.

    .venv/bin/python -m bench.bench_relay

Starts its own redis-server and PostgreSQL in a temp dir and applies db/init.sql. PostgreSQL runs
with production's defaults (fsync and synchronous_commit on), unlike the test fixtures: the relay
may not rely on a commit that is not durable. Every figure below is measured in the same run:

- reference: the integration document's `publish_pattern` (section 1): a new PostgreSQL and Redis
  connection per event, one log_integration_event call, commit, PUBLISH (its prints left out);
- ceilings: pipelined PUBLISH alone, and batched audit inserts alone (one set-based
  log_integration_event call per batch of the relay's default size, as AuditLog.log_published
  does). The relay cannot beat the audit ceiling: its rows go through the same single connection,
  so the relay is also printed as a fraction of it;
- relay_patterns_per_s: the relay process draining a pre-filled outbox (audit rows, PUBLISH,
  XADD, ack), per batch size; the figure recorded is the default batch size's;
- latency at 1,000/s and 10,000/s offered load: a paced generator pushes valid events, encoded
  ahead and stamped with the envelope timestamp as they are pushed (at most one LPUSH a
  millisecond, as a detector pushes a bar's patterns together, so the generator's own CPU stays
  small); the relay runs as its own process, and a subscriber in a third process takes receipt
  time minus that timestamp;
- the latency floor: the same harness at the same load, in the same minute, with
  bench.latency_floor (move and PUBLISH, nothing else) in the relay's place. Its p99 is what the
  machine, Redis and the subscriber add by themselves: the baseline for the relay's p99.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import redis

from bench.common import print_table, record, start_durable_stores
from tickstockpl import contract, outbox
from tickstockpl.audit import AuditLog
from tickstockpl.local_servers import LocalPostgres, LocalRedis
from tickstockpl.publisher import Outgoing
from tickstockpl.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_EVENTS = 300
CEILING_EVENTS = 100_000
RELAY_EVENTS = 100_000
BATCH_SIZES = (250, 500, 1000, 2000)
LATENCY_SECONDS = 6.0
INSTRUCTION_EVENTS = 1_500  # records per callgrind drain step (a run takes about 20 s)
LATENCY_WARMUP_S = 1.0
PUSH_INTERVAL_S = 0.001  # the generator's pacing: one LPUSH of whatever is due, at most once a ms
DEFAULT_BATCH = Settings().relay_batch_size


def events(count: int, now: float | None = None) -> list[dict[str, Any]]:
    return [
        contract.build_pattern_event(
            symbol=("AAPL", "GOOGL", "MSFT", "TSLA", "NVDA")[index % 5],
            pattern=contract.REQUIREMENTS_PATTERNS[index % 4],
            confidence=0.8,
            tier="intraday",
            current_price=185.5,
            price_change=2.5,
            now=now,
        )
        for index in range(count)
    ]


def start_servers(directory: Path) -> tuple[LocalRedis, LocalPostgres, Settings]:
    """Fresh durable stores; the settings connect as app_readwrite, which may also TRUNCATE between phases."""
    return start_durable_stores(directory, role="app_readwrite")


def reset(settings: Settings) -> None:
    """Empty the table and Redis between phases, so each starts from the same state."""
    conn = psycopg2.connect(settings.postgres_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("TRUNCATE integration_events")
    conn.close()
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    client.flushall()
    client.close()


def rate(count: int, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


# --- the integration document's reference --------------------------------------------------------


def reference_publish_pattern(settings: Settings, event: dict[str, Any]) -> None:
    """Section 1's publish_pattern, as written: new connections for every event."""
    data = event["data"]
    conn = psycopg2.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        database=settings.postgres_db,
        user=settings.postgres_user,
        password=settings.postgres_password,
    )
    cursor = conn.cursor()
    cursor.execute(
        "SELECT log_integration_event(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            data["flow_id"],
            "pattern_detected",
            "TickStockPL",
            "PATTERN_PUBLISHED",
            "tickstock.events.patterns",
            data["symbol"],
            data["pattern"],
            data["confidence"],
            None,
            json.dumps({"tier": data["tier"], "timestamp": time.time()}),
        ),
    )
    conn.commit()
    cursor.close()
    conn.close()
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port, decode_responses=True)
    client.publish("tickstock.events.patterns", json.dumps(event))
    client.close()


def bench_reference(settings: Settings) -> float:
    batch = events(REFERENCE_EVENTS)
    return rate(len(batch), lambda: [reference_publish_pattern(settings, event) for event in batch])


# --- ceilings --------------------------------------------------------------------------------------


def bench_publish_ceiling(settings: Settings) -> float:
    payloads = [contract.encode(event).encode() for event in events(CEILING_EVENTS)]
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port)

    def work() -> None:
        for start in range(0, len(payloads), 500):
            pipe = client.pipeline(transaction=False)
            for payload in payloads[start : start + 500]:
                pipe.publish(contract.CHANNEL_PATTERNS, payload)
            pipe.execute()

    try:
        return rate(len(payloads), work)
    finally:
        client.close()


def bench_audit_ceiling(settings: Settings, *, skip_existing: bool) -> float:
    batch = [Outgoing.from_event(event).event for event in events(CEILING_EVENTS)]
    audit = AuditLog(settings)

    def work() -> None:
        for start in range(0, len(batch), DEFAULT_BATCH):
            audit.log_published(batch[start : start + DEFAULT_BATCH], skip_existing=skip_existing)

    try:
        return rate(len(batch), work)
    finally:
        audit.close()


# --- the relay ------------------------------------------------------------------------------------


def relay_process(settings: Settings, *args: str, wrapper: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """The relay as its own process; `wrapper` runs it under another program (callgrind)."""
    return subprocess.Popen(
        [*wrapper, sys.executable, "-m", "tickstockpl.services.relay", *args],
        env={**settings.to_env(), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
        cwd=ROOT / "bench",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def floor_process(settings: Settings, *args: str, wrapper: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """bench.latency_floor in the relay's place: move and PUBLISH only (see that module)."""
    return subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "bench.latency_floor",
            settings.redis_host,
            str(settings.redis_port),
            *args,
        ],
        env={**settings.to_env(), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def audit_floor_process(settings: Settings) -> subprocess.Popen[bytes]:
    """The floor with the contract's audit commit before each publish (latency_floor --audit)."""
    return floor_process(settings, "--audit")


def fill_outbox(settings: Settings, count: int) -> None:
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    batch = events(count)
    for start in range(0, count, 5_000):
        outbox.enqueue(client, batch[start : start + 5_000])
    client.close()


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_relay_drain(settings: Settings, batch_size: int) -> tuple[float, float]:
    """(events/s, relay CPU µs per event) draining a pre-filled outbox with the relay in --burst mode.

    Process start included. The CPU figure is the relay process's own (user + system), which other
    load on the machine barely moves, unlike events/s.
    """
    reset(settings)
    fill_outbox(settings, RELAY_EVENTS)
    started, cpu_before = time.perf_counter(), _children_cpu_s()
    process = relay_process(settings.replace(relay_batch_size=batch_size), "--burst")
    if process.wait(timeout=600) != 0:
        raise RuntimeError(f"relay exited with {process.returncode}")
    elapsed = time.perf_counter() - started
    cpu_us = (_children_cpu_s() - cpu_before) / RELAY_EVENTS * 1e6
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    published = int(client.hget(contract.KEY_STATS, contract.STAT_PATTERNS_PUBLISHED) or 0)
    client.close()
    if published != RELAY_EVENTS:
        raise RuntimeError(f"relay published {published} of {RELAY_EVENTS}")
    return RELAY_EVENTS / elapsed, cpu_us


def _instructions(
    settings: Settings, start: Callable[..., subprocess.Popen[bytes]], count: int, directory: Path
) -> int:
    """Instructions (callgrind) of one burst drain of `count` pre-filled records, every thread."""
    reset(settings)
    fill_outbox(settings, count)
    out = directory / f"callgrind.{count}.out"
    process = start(
        settings, "--burst", wrapper=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")
    )
    if process.wait(timeout=900) != 0:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def bench_instructions(settings: Settings) -> dict[str, float] | None:
    """Instructions per event of the relay and of the floor, draining the same records; None
    without valgrind.

    Counted, not timed: a noisy host moves them by a few percent where it moves CPU seconds by a
    third, so they are the way to see a CPU change. The difference between two drains
    (INSTRUCTION_EVENTS apart) leaves out start-up and connecting. Under callgrind the relay runs
    about 50x slower, so timing-driven work (WAL flushes every 5 ms) happens less often per event
    than at full speed, and varies a little: compare the figure with itself, across commits.
    """
    if shutil.which("valgrind") is None:
        return None
    counts = {}
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        for name, start in (("relay", relay_process), ("floor", floor_process)):
            small, large = (
                _instructions(settings, start, size, Path(tmp))
                for size in (INSTRUCTION_EVENTS, 2 * INSTRUCTION_EVENTS)
            )
            counts[name] = (large - small) / INSTRUCTION_EVENTS
    return counts


def _envelope_timestamp(payload: bytes) -> float:
    """The envelope's timestamp without parsing the whole message (the subscriber must keep up)."""
    start = payload.index(b'"timestamp":') + len(b'"timestamp":')
    end = payload.index(b",", start)
    return float(payload[start:end])


def _subscriber(host: str, port: int, ready: Any, results: multiprocessing.connection.Connection) -> None:
    """In its own process, so the generator's GIL never delays a receipt time."""
    client = redis.Redis(host=host, port=port)
    pubsub = client.pubsub()
    pubsub.subscribe(contract.CHANNEL_PATTERNS)
    pubsub.get_message(timeout=5)
    ready.set()
    latencies: list[float] = []
    while True:
        message = pubsub.get_message(timeout=1.0)
        if message is None:
            if results.poll():
                break
            continue
        if message["type"] == "message":
            received = time.time()
            if message["data"] == b"stop":
                continue
            latencies.append(received - _envelope_timestamp(message["data"]))
    results.recv()
    results.send(latencies)
    pubsub.close()
    client.close()


def _latency_histogram(client: redis.Redis) -> dict[float, int]:
    """The relay's own enqueue→publish histogram (cumulative counts by upper bound in seconds)."""
    stats = client.hgetall(contract.KEY_STATS)
    prefix = contract.stat_field(contract.STAT_LATENCY_BUCKET, "").encode()
    return {
        float(key[len(prefix) :].replace(b"+Inf", b"inf")): int(value)
        for key, value in stats.items()
        if key.startswith(prefix)
    }


def _relay_side(before: dict[float, int], after: dict[float, int]) -> tuple[float, str]:
    """(share ≤ 5 ms, the bucket that holds p99) of the relay's samples between two snapshots.

    The relay stamps its publish time, so this leaves out delivery to the subscriber and the
    subscriber's own scheduling: what the relay itself adds, in its histogram's resolution.
    """
    counts = {le: after.get(le, 0) - before.get(le, 0) for le in sorted(after)}
    total = counts.get(float("inf"), 0)
    if not total:
        return float("nan"), "-"
    lower = 0.0
    for le, count in counts.items():
        if count >= 0.99 * total:
            return counts.get(0.005, 0) / total, f"{lower * 1000:g}-{le * 1000:g} ms"
        lower = le
    return counts.get(0.005, 0) / total, "?"


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Latency:
    """One offered load: end to end at the subscriber, the relay's own share, and who used the CPU."""

    p50_ms: float
    p99_ms: float
    samples: int
    relay_within_5ms: float  # share of the relay's own enqueue→publish samples ≤ 5 ms
    relay_p99_bucket: str  # the relay histogram's bucket that holds its p99
    relay_cpu: float  # CPU of the relay process, in cores, while the load ran
    bench_cpu: float  # the generator and the subscriber together, in cores


def bench_latency(
    settings: Settings,
    offered_per_s: int,
    start: Callable[[Settings], subprocess.Popen[bytes]] = relay_process,
) -> Latency:
    """Enqueue→receipt at a paced offered load, with the relay's own figures beside it.

    `start` runs what moves the records: the relay, or floor_process for the latency floor (which
    keeps no histogram: its relay-side figures come out as not measured).
    """
    reset(settings)
    relay = start(settings)
    ready = multiprocessing.Event()
    parent, child = multiprocessing.Pipe()
    sub = multiprocessing.Process(
        target=_subscriber, args=(settings.redis_host, settings.redis_port, ready, child)
    )
    sub.start()
    ready.wait(10)
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    total = int(offered_per_s * (LATENCY_SECONDS + LATENCY_WARMUP_S))
    # Valid events encoded ahead with a placeholder timestamp, stamped as they are pushed: the
    # generator must not eat the CPU the relay is being measured on (enqueue's own validation is the
    # detector's cost, measured by its benchmark).
    prepared = [contract.encode(event).encode() for event in events(total, now=1.0)]
    placeholder = b'"timestamp":1.0,'
    if not all(payload.count(placeholder) == 1 for payload in prepared):
        raise RuntimeError("cannot find the envelope timestamp to stamp")
    # One probe first: the relay has started, connected to PostgreSQL and published before the clock runs.
    client.lpush(contract.KEY_OUTBOX, contract.encode(events(1)[0]))
    deadline = time.monotonic() + 30
    while not client.hget(contract.KEY_STATS, contract.STAT_PATTERNS_PUBLISHED):
        if time.monotonic() > deadline:
            raise RuntimeError("relay did not start")
        time.sleep(0.01)
    sent = 0
    warm: tuple[dict[float, int], float, float, float, float] | None = None
    started = time.perf_counter()
    while sent < total:
        elapsed = time.perf_counter() - started
        if warm is None and elapsed >= LATENCY_WARMUP_S:
            warm = (_latency_histogram(client), _cpu_s(relay.pid), _cpu_s(sub.pid), _own_cpu_s(), elapsed)
        due = min(total, int(elapsed * offered_per_s))
        if due > sent:
            stamp = b'"timestamp":' + repr(time.time()).encode() + b","
            client.lpush(
                contract.KEY_OUTBOX,
                *[payload.replace(placeholder, stamp, 1) for payload in prepared[sent:due]],
            )
            sent = due
        else:
            time.sleep(max(PUSH_INTERVAL_S, (sent + 1) / offered_per_s - elapsed))
    assert warm is not None
    seconds = time.perf_counter() - started - warm[4]
    relay_cpu = (_cpu_s(relay.pid) - warm[1]) / seconds
    bench_cpu = (_cpu_s(sub.pid) - warm[2] + _own_cpu_s() - warm[3]) / seconds
    deadline = time.monotonic() + 30
    while client.llen(contract.KEY_OUTBOX) or client.llen(contract.KEY_PROCESSING):
        if time.monotonic() > deadline:
            raise RuntimeError("relay did not keep up")
        time.sleep(0.05)
    time.sleep(0.5)  # let the last messages reach the subscriber
    parent.send("done")
    within_5ms, p99_bucket = _relay_side(warm[0], _latency_histogram(client))
    latencies = parent.recv()
    sub.join(10)
    relay.terminate()
    relay.wait(30)
    client.close()
    skip = 1 + int(offered_per_s * LATENCY_WARMUP_S)  # the probe, then the warm-up second
    samples = sorted(latencies[skip:])
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99) - 1] * 1000
    return Latency(p50, p99, len(samples), within_5ms, p99_bucket, relay_cpu, bench_cpu)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o755)
        redis_server, postgres, settings = start_servers(directory)
        try:
            figures = run_all(settings)
        finally:
            redis_server.stop(kill=True)
            postgres.stop()
    record(figures)


def run_all(settings: Settings) -> dict[str, float]:
    reference = bench_reference(settings)
    reset(settings)
    publish_ceiling = bench_publish_ceiling(settings)
    audit_ceiling = bench_audit_ceiling(settings, skip_existing=False)
    reset(settings)
    audit_skip = bench_audit_ceiling(settings, skip_existing=True)
    drains = {size: bench_relay_drain(settings, size) for size in BATCH_SIZES}
    instructions = bench_instructions(settings)
    relay_rate = drains[DEFAULT_BATCH][0] if DEFAULT_BATCH in drains else max(r for r, _ in drains.values())
    # Each load twice, the relay and then the floor in the same minute: the floor's tail is what the
    # machine adds by itself (a noisy host shows up in both).
    floor = "floor: move + PUBLISH only"
    audit_floor = "floor: one audit call per batch, committed, + PUBLISH"
    latencies = {
        (rate, what): bench_latency(settings, rate, start)
        for rate in (1_000, 10_000)
        for what, start in (
            ("relay", relay_process),
            (floor, floor_process),
            (audit_floor, audit_floor_process),
        )
    }
    at_1k, at_10k = latencies[1_000, "relay"], latencies[10_000, "relay"]
    floor_1k, floor_10k = latencies[1_000, floor], latencies[10_000, floor]
    audit_floor_1k, audit_floor_10k = latencies[1_000, audit_floor], latencies[10_000, audit_floor]
    p99_1k, p99_10k = at_1k.p99_ms, at_10k.p99_ms

    print_table(
        "Throughput (events/s; same servers, same run)",
        ["what", "events/s", "x reference", "relay CPU µs/event"],
        [
            ["reference publish_pattern (new connections per event)", reference, 1.0, ""],
            [
                "ceiling: pipelined PUBLISH alone (batches of 500)",
                publish_ceiling,
                publish_ceiling / reference,
                "",
            ],
            [
                f"ceiling: audit rows alone (one call per {DEFAULT_BATCH:,})",
                audit_ceiling,
                audit_ceiling / reference,
                "",
            ],
            [
                "audit rows, skipping existing flows (the relay's call)",
                audit_skip,
                audit_skip / reference,
                "",
            ],
            *[
                [
                    f"relay, batch {size}{' (default)' if size == DEFAULT_BATCH else ''}",
                    value,
                    value / reference,
                    cpu_us,
                ]
                for size, (value, cpu_us) in drains.items()
            ],
        ],
    )
    print_table(
        "Enqueue→publish latency (receipt at a subscriber minus the envelope timestamp; relay side: "
        "the relay's own histogram, publish time minus the envelope timestamp)",
        [
            "offered load",
            "moved by",
            "p50 ms",
            "p99 ms",
            "samples",
            "relay side ≤ 5 ms",
            "relay side p99 in",
            "relay CPU (cores)",
            "generator + subscriber CPU (cores)",
        ],
        [
            [
                f"{rate:,}/s",
                what,
                at.p50_ms,
                at.p99_ms,
                at.samples,
                "-" if math.isnan(at.relay_within_5ms) else f"{at.relay_within_5ms:.1%}",
                at.relay_p99_bucket,
                at.relay_cpu,
                at.bench_cpu,
            ]
            for (rate, what), at in latencies.items()
        ],
    )
    if instructions is None:
        print("\ninstructions per event: not counted (valgrind is not installed)")
    else:
        print(
            f"\ninstructions per event, draining {INSTRUCTION_EVENTS:,} records (callgrind: counted,"
            f" not timed): relay {instructions['relay']:,.0f},"
            f" floor {instructions['floor']:,.0f} ({instructions['relay'] / instructions['floor']:.1f}x)"
        )
    print(
        f"relay at batch {DEFAULT_BATCH:,}: {relay_rate:,.0f}/s"
        f" = {relay_rate / reference:,.0f}x the reference,"
        f" {relay_rate / audit_ceiling:.0%} of the audit ceiling ({audit_ceiling:,.0f}/s)"
        f" and {relay_rate / publish_ceiling:.0%} of the PUBLISH ceiling ({publish_ceiling:,.0f}/s)"
    )
    if audit_ceiling < 40_000:
        print("the audit ceiling itself is below the 40,000/s target on this machine in this run")
    print(
        f"p99 relay / floor: {p99_1k:.2f} / {floor_1k.p99_ms:.2f} ms at 1,000/s,"
        f" {p99_10k:.2f} / {floor_10k.p99_ms:.2f} ms at 10,000/s"
    )
    print(
        f"p99 relay / floor with the audit commit: {p99_1k:.2f} / {audit_floor_1k.p99_ms:.2f} ms at 1,000/s"
        f" ({p99_1k / audit_floor_1k.p99_ms:.1f}x), {p99_10k:.2f} / {audit_floor_10k.p99_ms:.2f} ms"
        f" at 10,000/s ({p99_10k / audit_floor_10k.p99_ms:.1f}x)"
    )
    if floor_10k.p99_ms > 5:
        print("the floor's own p99 at 10,000/s is above the 5 ms target on this machine in this run")
    print(
        f"targets (2 cores): relay >= 40,000/s ({relay_rate:,.0f}); p99 at 10,000/s <= 5 ms ({p99_10k:.2f})"
    )
    return {
        "relay_patterns_per_s": relay_rate,
        "relay_p99_ms_at_1k": p99_1k,
        "relay_p99_ms_at_10k": p99_10k,
        "reference_publish_per_s": reference,
        "ceiling_audit_per_s": audit_ceiling,
        "ceiling_publish_per_s": publish_ceiling,
        "floor_p99_ms_at_1k": floor_1k.p99_ms,
        "floor_p99_ms_at_10k": floor_10k.p99_ms,
        "floor_audit_p99_ms_at_1k": audit_floor_1k.p99_ms,
        "floor_audit_p99_ms_at_10k": audit_floor_10k.p99_ms,
        **(
            {f"{name}_instructions_per_event": value for name, value in instructions.items()}
            if instructions is not None
            else {}
        ),
    }


if __name__ == "__main__":
    main()
