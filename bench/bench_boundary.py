"""The minute-boundary burst, as a trader sees it: from the boundary's bars to the last event received.

    .venv/bin/python -m bench.bench_boundary

The pipeline as supervisord runs it, on fresh servers per density (redis-server with its AOF,
PostgreSQL with fsync and synchronous_commit on, db/init.sql, the producer's own audit role):

- the detector process: `tickstockpl.services.detector` with SYMBOLS synthetic symbols, each
  boundary handed over at once on the benchmark's cue (bench/boundary_detector.py says why). The
  detector stamps each event with the time its boundary's batch reached it
  (`data.bar_received_at`, this host's clock): the boundary instant, also the start of the relay's
  boundary→publish histogram;
- the relay process, started as supervisord.conf starts it, and a subscriber process that notes
  when each event arrived (bench/boundary_subscriber.py, same clock);
- WARMUP boundaries released flat out (every pattern's windows full, the event rate steady; their
  events are dropped before the relay starts), then MEASURED boundaries, each once the previous
  burst is published and acked and the pipeline has idled IDLE_S, as it has between two minute
  boundaries in production.

Per boundary: boundary → first and → last event received; per event: boundary → received. Then, in
the same run on the same servers, the floor of bench/boundary_floor.py on the same bars: (a)
detection alone, (b) the contract's minimum (one set-based audit call committed, one PUBLISH
pipeline). At the default minimum confidence and at 0. p99 is nearest-rank: of 30 boundaries, the
largest.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from bench import boundary_floor
from bench.boundary_subscriber import IDLE_S, Subscriber
from bench.common import ROOT, percentile, print_table, record, start_durable_stores
from tickstockpl import contract
from tickstockpl.settings import Settings
from tickstockpl.stores import connect_postgres

SYMBOLS = 10_000
WARMUP = 40  # boundaries before measuring (the longest pattern warm-up is 32 bars; the rate is steady by 40)
MEASURED = 30
SEED_GOAL_MS = 100.0  # the integration document: flows under 100 ms
GOAL_RATIO = 1.5  # last event within 1.5x the floor at p99 (issue 16)
DEFAULT = Settings()
POLL_S = 0.02  # the benchmark reads the stats hash this often while a burst is in flight


@dataclass
class Pipeline:
    """The supervised pipeline's figures for one density, seconds."""

    counts: dict[int, int]  # events per measured boundary (by index from the first boundary)
    first: list[float]  # per measured boundary: boundary → first event received
    last: list[float]  # ... → last event received
    detect: list[float]  # ... → events built (the envelope timestamp), in the detector process
    events: list[float]  # per measured event: boundary → received
    release_lag: float  # largest gap between the cue and the detector's stamp
    detector_cpu_s: float
    relay_cpu_s: float
    relay: RelaySide
    met: list[tuple[int, int, int, int]]  # per measured burst: StoreEvents.read's growth


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process(module: str, settings: Settings, log: Path, **options: object) -> subprocess.Popen[bytes]:
    env = {**settings.to_env(), "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"}
    with log.open("ab") as out:
        return subprocess.Popen(  # type: ignore[call-overload]
            [sys.executable, "-m", *module.split()],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            **options,
        )


def _stats(client: redis.Redis) -> dict[str, float]:
    return {key.decode(): float(value) for key, value in client.hgetall(contract.KEY_STATS).items()}


@dataclass
class RelaySide:
    """The relay's own figures (its stats hash) over the measured bursts."""

    batches: int
    batch_mean_s: float  # take → finish, per batch
    published: int
    boundary_p99: str  # the bucket of its boundary→publish histogram that holds p99

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float]) -> RelaySide:
        def delta(name: str) -> float:
            return after.get(name, 0.0) - before.get(name, 0.0)

        batches = int(delta(contract.stat_field(contract.STAT_BATCH_BUCKET, "+Inf")))
        total = delta(contract.stat_field(contract.STAT_BOUNDARY_BUCKET, "+Inf"))
        bucket, lower = "-", 0.0
        for le in contract.STAT_HISTOGRAM_BUCKETS_S:
            if total and delta(contract.stat_field(contract.STAT_BOUNDARY_BUCKET, le)) >= 0.99 * total:
                bucket = f"{lower * 1000:g}-{le * 1000:g} ms"
                break
            lower = le
        else:
            bucket = f"> {lower * 1000:g} ms" if total else "-"
        mean = delta(contract.STAT_BATCH_SUM) / batches if batches else float("nan")
        return cls(batches, mean, int(total), bucket)


@dataclass(frozen=True)
class Progress:
    """What the stats hash says: bars judged, events the detector meant to publish, enqueued, published."""

    bars: int
    wanted: int
    enqueued: int
    published: int

    @classmethod
    def read(cls, client: redis.Redis) -> Progress:
        stats = {name: int(value) for name, value in _stats(client).items()}
        signals = sum(v for k, v in stats.items() if k.startswith(contract.STAT_DETECTED_BY + ":"))
        return cls(
            stats.get(contract.STAT_BARS_RECEIVED, 0),
            signals - stats.get(contract.STAT_SIGNALS_BELOW_MIN_CONFIDENCE, 0),
            stats.get(contract.STAT_PATTERNS_DETECTED, 0),
            stats.get(contract.STAT_PATTERNS_PUBLISHED, 0),
        )


class StoreEvents:
    """What the stores do besides our commands, that a burst may meet: Redis forks (AOF rewrites),
    PostgreSQL checkpoints (both counted as each begins) and the sequential scans of
    integration_events with the rows they read (an audit write should find existing rows by index)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.conn = connect_postgres(settings.postgres_dsn)

    def read(self) -> tuple[int, int, int, int]:
        forks = int(self.client.info("stats")["total_forks"])
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),"
                " coalesce(seq_scan, 0), coalesce(seq_tup_read, 0)"
                " FROM pg_stat_user_tables WHERE relname = 'integration_events'"
            )
            row = cur.fetchone() or (0, 0, 0)
        return forks, int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        self.conn.close()


def _rewrite_aof(client: redis.Redis) -> None:
    """Have Redis rewrite its AOF now, and wait until it has (one may be running already)."""
    requested = False
    while True:
        state = client.info("persistence")
        if state["aof_rewrite_in_progress"] or state["aof_rewrite_scheduled"]:
            time.sleep(POLL_S)
        elif requested:
            return
        else:
            try:
                client.bgrewriteaof()
                requested = True
            except redis.ResponseError:  # one started meanwhile: wait for it, then ask again
                time.sleep(POLL_S)


def _probe_event() -> str:
    """One valid event without a boundary stamp: the relay has connected and loaded its scripts."""
    return contract.encode(
        contract.build_pattern_event(symbol="PROBE", pattern="Doji", confidence=0.5, tier="intraday")
    )


@dataclass
class Run:
    """What one pipeline run leaves for the analysis."""

    received: list[tuple[float, ...]]  # every message: received, bar_received_at, timestamp, bar_start
    releases: list[float]  # when each measured boundary was cued
    cpu: tuple[float, float]  # CPU seconds of the detector and the relay
    relay: RelaySide
    warmup_events: int  # what the detector meant to publish in the warm-up
    met: list[tuple[int, int, int, int]]  # per measured burst: StoreEvents.read's growth


def run_pipeline(settings: Settings, subscriber: Subscriber, log: Path) -> Run:
    """Warm up, then release the measured boundaries one by one.

    The warm-up's events are enqueued, then dropped before the relay starts (at minimum
    confidence 0 they are 150,000, a minute of relaying that measures nothing); Redis then rewrites
    its AOF, so that no rewrite of their 100 MB falls into the measured bursts.
    """
    client = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    stores = StoreEvents(client, settings)
    detector = _process("bench.boundary_detector", settings, log, stdin=subprocess.PIPE)
    relay: subprocess.Popen[bytes] | None = None
    assert detector.stdin is not None
    releases: list[float] = []

    def wait(done: Callable[[Progress], bool], timeout_s: float) -> Progress:
        deadline = time.monotonic() + timeout_s
        while not done(progress := Progress.read(client)):
            stopped = detector.poll() is not None or (relay is not None and relay.poll() is not None)
            if time.monotonic() > deadline or stopped:
                raise RuntimeError(f"the pipeline stopped short:\n{log.read_text()[-3000:]}")
            time.sleep(POLL_S)
        return progress

    try:
        detector.stdin.write(b"\n" * WARMUP)
        detector.stdin.flush()
        warm = wait(lambda p: p.bars == WARMUP * SYMBOLS and p.enqueued == p.wanted, 300)
        client.delete(contract.KEY_OUTBOX)
        _rewrite_aof(client)
        relay = _process("tickstockpl.supervised tickstockpl.services.relay", settings, log)
        client.lpush(contract.KEY_OUTBOX, _probe_event())
        base = wait(lambda p: p.published == 1, 60)
        before = _stats(client)
        background = [stores.read()]
        for k in range(1, MEASURED + 1):
            time.sleep(IDLE_S)
            releases.append(time.time())
            detector.stdin.write(b"\n")
            detector.stdin.flush()
            bars = (WARMUP + k) * SYMBOLS
            wait(
                lambda p, bars=bars: (
                    p.bars == bars and p.published - base.published >= p.wanted - warm.wanted
                ),
                60,
            )
            background.append(stores.read())
        cpu = (_cpu_s(detector.pid), _cpu_s(relay.pid))
        relay_side = RelaySide.between(before, _stats(client))
        detector.stdin.close()  # the source ends: the detector exits 0
        detector.wait(30)
        received = subscriber.collect()
    finally:
        if not detector.stdin.closed:
            detector.stdin.close()  # a detector waiting for its cue reads EOF and stops
        for process in (detector, relay):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
        stores.close()
        client.close()
    met = [
        (b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3])
        for a, b in zip(background, background[1:], strict=False)
    ]
    return Run(received, releases, cpu, relay_side, warm.wanted, met)


def analyse(run: Run, floor_counts: Sequence[int]) -> Pipeline:
    """Per boundary and per event figures, after checking these are the floor's bursts exactly."""
    received, releases, warmup_events = run.received, run.releases, run.warmup_events
    if warmup_events != sum(floor_counts[:WARMUP]):
        raise RuntimeError(
            f"warm-up: the detector meant {warmup_events} events, the floor {sum(floor_counts[:WARMUP])}"
        )
    by_boundary: dict[int, list[tuple[float, ...]]] = defaultdict(list)
    for row in received:
        if row[3] == row[3]:  # not NaN: the relay's probe has no bar
            by_boundary[int(row[3]) // DEFAULT.bar_seconds].append(row)
    counts = {k: len(rows) for k, rows in by_boundary.items()}
    expected = {k: floor_counts[k] for k in range(WARMUP, WARMUP + MEASURED)}
    if counts != expected:
        wrong = {
            k: (counts.get(k), expected.get(k))
            for k in counts.keys() | expected.keys()
            if counts.get(k) != expected.get(k)
        }
        raise RuntimeError(f"not the floor's bursts (boundary: (pipeline, floor) events): {wrong}")
    result = Pipeline(counts, [], [], [], [], 0.0, *run.cpu, run.relay, run.met)
    for k, released in zip(range(WARMUP, WARMUP + MEASURED), releases, strict=True):
        rows = by_boundary[k]
        stamps = {row[1] for row in rows}
        if len(stamps) != 1:
            raise RuntimeError(f"boundary {k}: {len(stamps)} different boundary stamps")
        boundary = stamps.pop()
        result.release_lag = max(result.release_lag, boundary - released)
        arrivals = [row[0] - boundary for row in rows]
        result.first.append(min(arrivals))
        result.last.append(max(arrivals))
        result.detect.append(max(row[2] for row in rows) - boundary)
        result.events.extend(arrivals)
    return result


def density(
    directory: Path, min_confidence: float
) -> tuple[Pipeline, boundary_floor.Floor, tuple[float, float]]:
    """One density on fresh servers: the pipeline, then the floor on the same bars."""
    redis_server, postgres, base = start_durable_stores(directory)
    settings = base.replace(
        source="synthetic",
        symbols=tuple(f"S{i:05d}" for i in range(SYMBOLS)),
        min_confidence=min_confidence,
    )
    subscriber = Subscriber.start(settings.redis_host, settings.redis_port, contract.CHANNEL_PATTERNS)
    measured = range(WARMUP, WARMUP + MEASURED)
    try:
        started = time.perf_counter()
        run = run_pipeline(settings, subscriber, directory / "services.log")
        between = time.perf_counter()
        floor = boundary_floor.measure(settings, subscriber, WARMUP + MEASURED, measured, min_confidence)
        pipeline = analyse(run, floor.counts)
        timing = (between - started, time.perf_counter() - between)
        return pipeline, floor, timing
    finally:
        subscriber.stop()
        redis_server.stop(kill=True)
        postgres.stop()


def ms(values: Sequence[float]) -> list[float]:
    return [percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000, max(values) * 1000]


def report(name: str, conf: float, pipeline: Pipeline, floor: boundary_floor.Floor) -> dict[str, float]:
    measured = range(WARMUP, WARMUP + MEASURED)
    sizes = [pipeline.counts[k] for k in measured]
    total = floor.total(measured)
    print_table(
        f"{name}: minimum confidence {conf:g}, {SYMBOLS:,} symbols, {MEASURED} boundaries "
        f"({min(sizes):,}-{max(sizes):,} events each, median {statistics.median(sizes):,.0f})",
        ["from the boundary to ...", "p50 ms", "p99 ms", "max ms"],
        [
            ["pipeline: events built (detector process)", *ms(pipeline.detect)],
            ["pipeline: first event received", *ms(pipeline.first)],
            ["pipeline: last event received", *ms(pipeline.last)],
            ["pipeline: each event received (per event)", *ms(pipeline.events)],
            ["floor (a): events ready (detection alone)", *ms([floor.detect[k] for k in measured])],
            ["floor (b): rows committed (after (a))", *ms(floor.audit)],
            ["floor (b): PUBLISH pipeline returned", *ms(floor.publish)],
            ["floor (b): first event received", *ms(floor.first)],
            ["floor (b): last event received", *ms(floor.last)],
            ["floor (a) + (b): last event received", *ms(total)],
        ],
    )
    last, floor_p99 = percentile(pipeline.last, 0.99) * 1000, percentile(total, 0.99) * 1000
    print(
        f"last event p99 {last:.0f} ms = {last / floor_p99:.2f}x the floor's {floor_p99:.0f} ms"
        f" (goal <= {GOAL_RATIO}x);"
        f" {last / SEED_GOAL_MS:.1f}x the seed's {SEED_GOAL_MS:.0f} ms; os.cpu_count() = {os.cpu_count()}"
    )
    print(
        f"cue -> the detector's boundary stamp: at most {pipeline.release_lag * 1000:.1f} ms; CPU over the"
        f" pipeline's run (warm-up included): detector {pipeline.detector_cpu_s:.1f} s,"
        f" relay {pipeline.relay_cpu_s:.1f} s"
    )
    median = statistics.median(pipeline.last)
    slow = {k for k, last in enumerate(pipeline.last) if last > 2 * median}
    forks, points = (
        [sum(m[i] for k, m in enumerate(pipeline.met) if (k in slow) == is_slow) for is_slow in (True, False)]
        for i in (0, 1)
    )
    print(
        f"bursts slower than twice the median ({median * 1000:.0f} ms): {len(slow)}; begun during those /"
        f" the other {MEASURED - len(slow)}: Redis forks (AOF rewrites) {forks[0]} / {forks[1]},"
        f" PostgreSQL checkpoints {points[0]} / {points[1]}; sequential scans of integration_events"
        f" during the bursts: {sum(m[2] for m in pipeline.met):,}, reading"
        f" {sum(m[3] for m in pipeline.met):,} rows"
    )
    print("last event per burst, in order (ms):", " ".join(f"{last * 1000:.0f}" for last in pipeline.last))
    relay = pipeline.relay
    print(
        f"relay's own figures over the {MEASURED} bursts: {relay.batches} batches"
        f" ({relay.batches / MEASURED:.1f} a burst), take -> finish {relay.batch_mean_s * 1000:.0f} ms"
        f" on average; its boundary -> publish histogram: {relay.published:,} events, p99 in"
        f" {relay.boundary_p99}"
    )
    suffix = "" if conf == DEFAULT.min_confidence else "_conf0"
    return {
        f"boundary_last_event_p99_ms{suffix}": last,
        f"boundary_floor_ms{suffix}": floor_p99,
        f"boundary_all_events_p99_ms{suffix}": percentile(pipeline.events, 0.99) * 1000,
    }


def main() -> None:
    figures: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-boundary-") as tmp:
        Path(tmp).chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
        for name, conf in (("default", DEFAULT.min_confidence), ("everything", 0.0)):
            directory = Path(tmp) / name
            directory.mkdir()
            directory.chmod(0o755)
            pipeline, floor, timing = density(directory, conf)
            figures.update(report(name, conf, pipeline, floor))
            print(f"took: pipeline {timing[0]:.0f} s (warm-up included), floor {timing[1]:.0f} s")
    print(f"\nbench_boundary took {time.perf_counter() - started:.0f} s")
    record(figures)


if __name__ == "__main__":
    main()
