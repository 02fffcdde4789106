"""Detector throughput against TA-Lib's own streaming API, the 10,000-symbol boundary, and RSS.

    .venv/bin/python -m bench.bench_detector

1. Throughput: SYMBOLS synthetic symbols; after a warm-up, BOUNDARIES boundaries of one bar per symbol.
   The detector (StreamingEngine.process on the whole boundary: validation, windows, every pattern)
   against `talib.stream` handles (one per symbol and candlestick, `update` per bar) over the same
   bars, for the same candlesticks; the signals of the two are compared and must be identical. The
   detector's headline figure runs the whole set (candlesticks and the four named patterns), which
   is more work than the baseline does.
2. In a fresh child process: 10,000 symbols warmed up, then the time to judge one bar for each at a
   boundary (median of several), the time to also build their contract events, and the RSS.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
from talib import stream

from bench.common import print_table, record
from tickstockpl.bars import Bar
from tickstockpl.patterns import ALL_CANDLES, PatternSet, StreamingEngine, signal_to_event
from tickstockpl.patterns.candles import FUNCTION_FOR, NEUTRAL_CANDLES
from tickstockpl.sources.synthetic import SyntheticMarket

SYMBOLS = 2_000
WARMUP = 40  # boundaries before timing (every pattern's warm-up is below this)
BOUNDARIES = 60
BIG = 10_000
BIG_TIMED = 7


def make_market(symbols: int, boundaries: int) -> list[list[Bar]]:
    market = SyntheticMarket([f"S{i:05d}" for i in range(symbols)], seed=11, start=0)
    return [market.step() for _ in range(boundaries)]


def time_engine(pset: PatternSet, data: list[list[Bar]]) -> tuple[float, set[tuple[str, int, str, str]]]:
    engine = StreamingEngine(pset, capacity=len(data[0]))
    for boundary in data[:WARMUP]:
        engine.process(boundary)
    found: set[tuple[str, int, str, str]] = set()
    started = time.perf_counter()
    for boundary in data[WARMUP:]:
        for s in engine.process(boundary):
            found.add((s.symbol, s.start, s.pattern, s.direction))
    return time.perf_counter() - started, found


def time_talib_stream(
    pset: PatternSet, data: list[list[Bar]]
) -> tuple[float, set[tuple[str, int, str, str]]]:
    """One handle per (symbol, candlestick), opened on the warm-up bars, then `update` per bar."""
    handles: list[list[tuple[str, Any]]] = []
    for column in range(len(data[0])):
        hist = [np.array([b[column][f] for b in data[:WARMUP]]) for f in (3, 4, 5, 6)]
        handles.append([(name, getattr(stream, FUNCTION_FOR[name])(*hist).update) for name in pset.candles])
    found: set[tuple[str, int, str, str]] = set()
    started = time.perf_counter()
    for boundary in data[WARMUP:]:
        for bar, symbol_handles in zip(boundary, handles, strict=True):
            o, h, low, c = bar.open, bar.high, bar.low, bar.close
            for name, update in symbol_handles:
                value = update(o, h, low, c)
                if value:
                    found.add((bar.symbol, bar.start, name, _direction(name, value)))
    return time.perf_counter() - started, found


def _direction(name: str, value: int) -> str:
    if name in NEUTRAL_CANDLES:
        return "neutral"
    return "bullish" if value > 0 else "bearish"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child_big() -> None:
    """The 10,000-symbol boundary, in a process holding only the detector's state."""
    data = make_market(BIG, WARMUP + BIG_TIMED)
    engine = StreamingEngine(capacity=BIG)
    for boundary in data[:WARMUP]:
        engine.process(boundary)
    detect_ms, event_ms, signals = [], [], []
    for boundary in data[WARMUP:]:
        started = time.perf_counter()
        found = engine.process(boundary)
        middle = time.perf_counter()
        for signal in found:
            signal_to_event(signal)
        ended = time.perf_counter()
        detect_ms.append((middle - started) * 1000)
        event_ms.append((ended - middle) * 1000)
        signals.append(len(found))
    del data
    print(
        json.dumps(
            {
                "detect_ms": statistics.median(detect_ms),
                "events_ms": statistics.median(event_ms),
                "signals": statistics.median(signals),
                "rss_mb": rss_mb(),
            }
        )
    )


def main() -> None:
    data = make_market(SYMBOLS, WARMUP + BOUNDARIES)
    bars = SYMBOLS * BOUNDARIES
    full = PatternSet()
    candles_only = PatternSet(custom=())
    full_s, _ = time_engine(full, data)
    candle_s, candle_found = time_engine(candles_only, data)
    talib_s, talib_found = time_talib_stream(candles_only, data)
    every = PatternSet(candles=ALL_CANDLES, custom=())
    every_s, every_found = time_engine(every, data)
    every_talib_s, every_talib_found = time_talib_stream(every, data)
    identical = candle_found == talib_found and every_found == every_talib_found
    rows = [
        ["talib.stream handles (baseline)", len(candles_only.candles), bars / talib_s, 1.0, len(talib_found)],
        [
            "detector, same candlesticks",
            len(candles_only.candles),
            bars / candle_s,
            talib_s / candle_s,
            len(candle_found),
        ],
        ["detector, whole set (+4 named)", len(full.names), bars / full_s, talib_s / full_s, "-"],
        ["talib.stream, all 61 candlesticks", 61, bars / every_talib_s, 1.0, len(every_talib_found)],
        ["detector, all 61 candlesticks", 61, bars / every_s, every_talib_s / every_s, len(every_found)],
    ]
    print_table(
        f"Throughput, {SYMBOLS:,} symbols x {BOUNDARIES} boundaries (one core)",
        ["run", "patterns", "bars/s", "x baseline", "signals"],
        rows,
    )
    print(f"signals identical to talib.stream: {'yes' if identical else 'NO'}")
    child = subprocess.run(
        [sys.executable, "-m", "bench.bench_detector", "--child-big"],
        capture_output=True,
        text=True,
        check=True,
    )
    big = json.loads(child.stdout.strip().splitlines()[-1])
    print_table(
        f"One boundary of {BIG:,} symbols (median of {BIG_TIMED}), fresh process",
        ["measure", "value"],
        [
            ["detect: bars in -> signals (ms)", big["detect_ms"]],
            ["build contract events for them (ms)", big["events_ms"]],
            ["signals per boundary", big["signals"]],
            ["RSS (MB)", big["rss_mb"]],
        ],
    )
    if not identical:
        raise SystemExit("signals differ from talib.stream: figures not recorded")
    record(
        {
            "detector_bars_per_s": bars / full_s,
            "talib_stream_bars_per_s": bars / talib_s,
            "boundary_10k_symbols_ms": big["detect_ms"],
            "detector_rss_mb_10k": big["rss_mb"],
        }
    )


if __name__ == "__main__":
    if "--child-big" in sys.argv:
        child_big()
    else:
        main()
