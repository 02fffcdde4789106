"""`tickstockpl replay` end to end on generated files of millions of bars, against the detector's own
speed measured in the same run, and its memory at two file sizes.

    .venv/bin/python -m bench.bench_replay

1. Baseline: the detector's throughput as bench_detector measures `detector_bars_per_s`
   (StreamingEngine.process on boundaries of SYMBOLS bars held in memory, after a warm-up, the default
   candlesticks; best of REPEATS), and the whole default set (+ the four named patterns). Each by the
   wall clock and by CPU time: on a shared machine the CPU figures are the steadier comparison.
2. `replay_bars_per_s`: the CLI as a fresh process (`tickstockpl replay FILE --json`, imports, parsing,
   the time-ordered merge, the engine, the summary) on a file of BARS bars (SYMBOLS symbols, one bar a
   minute, our layout in time order), with the same candlesticks (`--patterns`) and the feed's own
   timeframe only (TICKSTOCKPL_TIMEFRAMES=none), so the ratio compares like with like; then with the
   whole default set against that set's engine speed; and, for information, with the default
   timeframes and combos (5m, 15m, 1h, 1d: more engine work than the baseline does).
3. `replay_rss_mb`: the CLI's peak RSS (VmHWM) on that file and on one twice its size: flat, because
   memory follows the number of symbols, not of bars.
4. For information: a Massive flat file of BARS bars, gzipped and listed ticker by ticker (as Massive
   does), which the replay must sort on disk before it can go in time order.
The generated files live in a temporary directory and are removed at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from bench.bar_data import SYMBOLS, generate, run_cli
from bench.bench_detector import BOUNDARIES, WARMUP, make_market
from bench.common import print_table, record
from tickstockpl.bars import Bar
from tickstockpl.patterns import DEFAULT_CANDLES, PatternSet, StreamingEngine
from tickstockpl.settings import Settings

MINUTES = 1_000  # x SYMBOLS = 2,000,000 bars
BARS = MINUTES * SYMBOLS
CANDLES = ",".join(DEFAULT_CANDLES)
REPEATS = 3


def engine_rates(pset: PatternSet, data: list[list[Bar]]) -> tuple[float, float]:
    """bars/s of the engine over in-memory boundaries after the warm-up, as bench_detector's
    time_engine measures it, by the wall clock and by this process's CPU time; best of REPEATS."""
    bars = len(data[0]) * (len(data) - WARMUP)
    wall, cpu = [], []
    for _ in range(REPEATS):
        engine = StreamingEngine(pset, capacity=len(data[0]))
        for boundary in data[:WARMUP]:
            engine.process(boundary)
        started, started_cpu = time.perf_counter(), time.process_time()
        for boundary in data[WARMUP:]:
            engine.process(boundary)
        wall.append(bars / (time.perf_counter() - started))
        cpu.append(bars / (time.process_time() - started_cpu))
    return max(wall), max(cpu)


FEED_ONLY = Settings(timeframes=(), combo_timeframes=())  # the baseline's work: the feed's own bars


def replay(path: Path, *patterns: str, settings: Settings | None = FEED_ONLY) -> dict[str, float]:
    run = run_cli(settings, "replay", str(path), "--json", *patterns)
    report = json.loads(run["stdout"])
    bars = report["bars"]
    return {**run, "bars": bars, "rate": bars / run["wall_s"], "cpu_rate": bars / run["cpu_s"]}


def main() -> None:
    print(f"{os.cpu_count()} cores; generating files of {BARS:,} and {2 * BARS:,} bars ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as directory:
        started = time.perf_counter()
        files = generate(Path(directory), MINUTES)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
        small, large, flat = files.plain, files.doubled, files.massive
        data = make_market(SYMBOLS, WARMUP + BOUNDARIES)
        (candle_rate, candle_cpu), (full_rate, full_cpu) = (
            engine_rates(PatternSet(custom=()), data),
            engine_rates(PatternSet(), data),
        )
        del data
        candles = replay(small, "--patterns", CANDLES)
        full = replay(small)
        timeframes = replay(small, settings=None)  # the defaults, as a user runs it
        double = replay(large, "--patterns", CANDLES)
        massive = replay(flat, "--patterns", CANDLES)
        sizes_mb = {path: path.stat().st_size / 1e6 for path in (small, large, flat)}
    for run in (candles, full, timeframes, double, massive):
        assert run["bars"] in (BARS, 2 * BARS), run
    print_table(
        f"Replay end to end (fresh process) against the detector's engine, {SYMBOLS:,} symbols",
        ["run", "bars", "bars/s", "x baseline", "bars/CPU s", "x baseline (CPU)", "peak RSS MB"],
        [
            [
                "detector, default candlesticks (baseline)",
                SYMBOLS * BOUNDARIES,
                candle_rate,
                1.0,
                candle_cpu,
                1.0,
                "-",
            ],
            [
                "replay CLI, same candlesticks (headline)",
                candles["bars"],
                candles["rate"],
                candles["rate"] / candle_rate,
                candles["cpu_rate"],
                candles["cpu_rate"] / candle_cpu,
                candles["peak_rss_mb"],
            ],
            [
                "detector, whole default set (baseline)",
                SYMBOLS * BOUNDARIES,
                full_rate,
                1.0,
                full_cpu,
                1.0,
                "-",
            ],
            [
                "replay CLI, whole default set",
                full["bars"],
                full["rate"],
                full["rate"] / full_rate,
                full["cpu_rate"],
                full["cpu_rate"] / full_cpu,
                full["peak_rss_mb"],
            ],
            [
                "replay CLI, whole default set, default timeframes and combos",
                timeframes["bars"],
                timeframes["rate"],
                timeframes["rate"] / full_rate,
                timeframes["cpu_rate"],
                timeframes["cpu_rate"] / full_cpu,
                timeframes["peak_rss_mb"],
            ],
            [
                "replay CLI, candlesticks, file twice as big",
                double["bars"],
                double["rate"],
                double["rate"] / candle_rate,
                double["cpu_rate"],
                double["cpu_rate"] / candle_cpu,
                double["peak_rss_mb"],
            ],
            [
                "replay CLI, candlesticks, Massive flat file (gz, by ticker)",
                massive["bars"],
                massive["rate"],
                massive["rate"] / candle_rate,
                massive["cpu_rate"],
                massive["cpu_rate"] / candle_cpu,
                massive["peak_rss_mb"],
            ],
        ],  # fmt: skip
    )
    print(
        f"files: {sizes_mb[small]:,.0f} MB and {sizes_mb[large]:,.0f} MB of CSV, "
        f"{sizes_mb[flat]:,.0f} MB gzipped; peak RSS {candles['peak_rss_mb']:.0f} MB at "
        f"{candles['bars']:,} bars, {double['peak_rss_mb']:.0f} MB at {double['bars']:,} bars"
    )
    record(
        {
            "replay_bars_per_s": candles["rate"],
            "replay_detector_baseline_bars_per_s": candle_rate,
            "replay_vs_detector": candles["rate"] / candle_rate,
            "replay_vs_detector_cpu": candles["cpu_rate"] / candle_cpu,
            "replay_default_set_bars_per_s": full["rate"],
            "replay_default_timeframes_bars_per_s": timeframes["rate"],
            "replay_massive_gz_bars_per_s": massive["rate"],
            "replay_rss_mb": candles["peak_rss_mb"],
            "replay_rss_mb_2x": double["peak_rss_mb"],
        }
    )


if __name__ == "__main__":
    main()
