"""Backtest throughput over the real daily data, against the pandas vectorized reference.

    .venv/bin/python -m bench.bench_backtest

The job: every symbol of data/daily_us_equities_2000_2013.csv (12,154 bars), the eleven candlesticks
TickStockAppV2's UI offers, the whole range, the UI's default parameters. Bars are read from the file
once, outside the timing (the service reads them from PostgreSQL; that cost is not measured here).

1. `backtest_bars_per_s`: the whole job as the service runs it (`run_job`: the detector's
   history_signals, the engine, the metrics and breakdowns), bars in range per second.
2. The engine alone (price each symbol's candidates, allocate the shared capital, metrics) against
   the baseline measured in the same run: the independent pandas/numpy reference
   (bench/backtest_reference.py) over the same signals. Their results are compared, and must agree,
   before any figure is printed.
Each figure is the median of REPEATS runs.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.backtest_reference import reference_backtest
from bench.common import print_table, record
from tickstockpl import contract
from tickstockpl.backtest import MemoryHistory, allocate, detect, metrics, parse_job, price, run_job
from tickstockpl.backtest.signals import warmup_bars

DAILY = Path(__file__).resolve().parents[1] / "data" / "daily_us_equities_2000_2013.csv"
SYMBOLS = ["AAPL", "FB", "GOOG", "IBM", "MSFT"]
PATTERNS = list(contract.UI_CANDLESTICK_PATTERNS)
START, END = dt.date(2000, 1, 1), dt.date(2013, 12, 31)
REPEATS = 15


def median_seconds(work: Callable[[], object]) -> float:
    work()  # warm caches and imports
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    source = MemoryHistory.from_files([DAILY])
    job = parse_job(
        json.dumps(
            {
                "job_id": "backtest_0_bench000",
                "symbols": SYMBOLS,
                "patterns": PATTERNS,
                "start_date": str(START),
                "end_date": str(END),
            }
        )
    )
    params = job.parameters
    histories = {s: source.load(s, "1d", START, END, warmup_bars(job.patterns)) for s in SYMBOLS}
    signals = {
        s: detect(h.open, h.high, h.low, h.close, h.volume, job.patterns) for s, h in histories.items()
    }
    timeline = np.unique(np.concatenate([h.times[h.first :] for h in histories.values()]))
    bars = sum(h.bars_in_range for h in histories.values())

    def engine_only() -> dict[str, object]:
        trades = allocate([price(histories[s], signals[s], params) for s in SYMBOLS], params).trades
        return metrics.summarize(trades, timeline, params.initial_capital, 86_400)

    def reference() -> dict[str, object]:
        return reference_backtest(histories, signals, params)[0]

    ours, theirs = engine_only(), reference()
    for key in ("total_trades", "winning_trades", "win_rate", "roi", "max_drawdown", "sharpe_ratio"):
        assert np.isclose(float(ours[key]), float(theirs[key]), rtol=1e-9), key
    outcome = run_job(job, source)
    assert outcome.results["total_trades"] == ours["total_trades"]

    full_s = median_seconds(lambda: run_job(job, source))
    engine_s = median_seconds(engine_only)
    reference_s = median_seconds(reference)
    rows = [
        ("run_job: detect + engine + metrics", full_s * 1e3, bars / full_s, "-"),
        (
            "engine: price + allocate + metrics",
            engine_s * 1e3,
            bars / engine_s,
            f"{reference_s / engine_s:.1f}x",
        ),
        ("baseline: pandas vectorized reference", reference_s * 1e3, bars / reference_s, "1.0x"),
    ]
    print(
        f"{bars:,} daily bars, {len(SYMBOLS)} symbols, {len(PATTERNS)} patterns, "
        f"{sum(len(v) for v in signals.values()):,} signals, {outcome.results['total_trades']} trades; "
        f"median of {REPEATS}"
    )
    print_table("Backtest throughput", ("run", "ms", "bars/s", "vs baseline"), rows)
    record(
        {
            "backtest_bars_per_s": bars / full_s,
            "backtest_engine_bars_per_s": bars / engine_s,
            "backtest_reference_bars_per_s": bars / reference_s,
        }
    )


if __name__ == "__main__":
    main()
