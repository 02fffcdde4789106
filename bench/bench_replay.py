"""`tickstockpl replay` end to end on generated files of millions of bars, against the detector's own
speed measured in the same run, and its memory at two file sizes.

    .venv/bin/python -m bench.bench_replay

1. Baseline: the detector's throughput exactly as bench_detector measures it (`detector_bars_per_s`:
   StreamingEngine.process on boundaries of SYMBOLS bars held in memory, the default candlesticks),
   and the whole default set (+ the four named patterns) for information.
2. `replay_bars_per_s`: the CLI as a fresh process (`tickstockpl replay FILE --json`, imports, parsing,
   the time-ordered merge, the engine, the summary) on a file of BARS bars (SYMBOLS symbols, one bar a
   minute, our layout in time order), with the same candlesticks (`--patterns`), so the ratio compares
   like with like; then with the whole default set against that set's engine speed.
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
from bench.bench_detector import BOUNDARIES, WARMUP, make_market, time_engine
from bench.common import print_table, record
from tickstockpl.patterns import DEFAULT_CANDLES, PatternSet

MINUTES = 1_000  # x SYMBOLS = 2,000,000 bars
BARS = MINUTES * SYMBOLS
CANDLES = ",".join(DEFAULT_CANDLES)


def detector_rates() -> tuple[float, float]:
    """bars/s of the engine over in-memory boundaries: the default candlesticks, the whole set."""
    data = make_market(SYMBOLS, WARMUP + BOUNDARIES)
    bars = SYMBOLS * BOUNDARIES
    candle_s, _ = time_engine(PatternSet(custom=()), data)
    full_s, _ = time_engine(PatternSet(), data)
    return bars / candle_s, bars / full_s


def replay(path: Path, *patterns: str) -> dict[str, float]:
    run = run_cli(None, "replay", str(path), "--json", *patterns)
    report = json.loads(run["stdout"])
    return {
        **run,
        "bars": report["bars"],
        "patterns": report["patterns"],
        "rate": report["bars"] / run["wall_s"],
    }


def main() -> None:
    print(f"{os.cpu_count()} cores; generating files of {BARS:,} and {2 * BARS:,} bars ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as directory:
        started = time.perf_counter()
        files = generate(Path(directory), MINUTES)
        print(f"generated in {time.perf_counter() - started:.1f} s", flush=True)
        small, large, flat = files.plain, files.doubled, files.massive
        candle_rate, full_rate = detector_rates()
        candles = replay(small, "--patterns", CANDLES)
        full = replay(small)
        double = replay(large, "--patterns", CANDLES)
        massive = replay(flat, "--patterns", CANDLES)
        sizes_mb = {path: path.stat().st_size / 1e6 for path in (small, large, flat)}
    for run in (candles, full, double, massive):
        assert run["bars"] in (BARS, 2 * BARS), run
    print_table(
        f"Replay end to end (fresh process) against the detector's engine, {SYMBOLS:,} symbols",
        ["run", "bars", "bars/s", "x baseline", "CPU s", "peak RSS MB"],
        [
            ["detector, default candlesticks (baseline)", SYMBOLS * BOUNDARIES, candle_rate, 1.0, "-", "-"],
            [
                "replay CLI, same candlesticks (headline)",
                candles["bars"],
                candles["rate"],
                candles["rate"] / candle_rate,
                candles["cpu_s"],
                candles["peak_rss_mb"],
            ],
            ["detector, whole default set (baseline)", SYMBOLS * BOUNDARIES, full_rate, 1.0, "-", "-"],
            [
                "replay CLI, whole default set",
                full["bars"],
                full["rate"],
                full["rate"] / full_rate,
                full["cpu_s"],
                full["peak_rss_mb"],
            ],
            [
                "replay CLI, candlesticks, file twice as big",
                double["bars"],
                double["rate"],
                double["rate"] / candle_rate,
                double["cpu_s"],
                double["peak_rss_mb"],
            ],
            [
                "replay CLI, candlesticks, Massive flat file (gz, by ticker)",
                massive["bars"],
                massive["rate"],
                massive["rate"] / candle_rate,
                massive["cpu_s"],
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
            "replay_default_set_bars_per_s": full["rate"],
            "replay_massive_gz_bars_per_s": massive["rate"],
            "replay_rss_mb": candles["peak_rss_mb"],
            "replay_rss_mb_2x": double["peak_rss_mb"],
        }
    )


if __name__ == "__main__":
    main()
