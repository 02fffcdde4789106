"""Detector throughput against TA-Lib's own streaming API, the 10,000-symbol boundary, and RSS.

    .venv/bin/python -m bench.bench_detector

1. Throughput: SYMBOLS synthetic symbols; after a warm-up, BOUNDARIES boundaries of one bar per symbol.
   The detector (StreamingEngine.process on the whole boundary: validation, windows, patterns, signals)
   against `talib.stream` handles (one per symbol and candlestick, `update` per bar) over the same
   bars. Apples to apples: `detector_bars_per_s` runs exactly the baseline's patterns (the default
   candlesticks) and the signals of the two are compared in the run and must be identical; the whole
   default set (+ the four named patterns) and all 61 candlesticks are printed for information.
   The timeframes (TICKSTOCKPL_TIMEFRAMES, default 5m, 15m, 1h, 1d, with the default combos) are
   timed on a market laid on XNYS session minutes whose timed boundaries end at a session's close
   (so every timeframe closes in them), against the whole default set on the same bars.
    The detector's figures include what it does beyond the baseline: the indicators every event
    carries (patterns/indicators.py), carried for every bar and computed for every signal.
2. In a fresh child process: 10,000 symbols warmed up, then one boundary end to end (median of
   several): bars in -> signals -> contract events for every signal (no minimum confidence: the most
   events), which is `boundary_10k_symbols_ms`; the default published stream is shown next to it.
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
from tickstockpl.patterns import ALL_CANDLES, EventBuilder, PatternSet, StreamingEngine, publishable
from tickstockpl.patterns.candles import FUNCTION_FOR, NEUTRAL_CANDLES
from tickstockpl.patterns.sessions import SessionCalendar
from tickstockpl.patterns.timeframes import engine_for
from tickstockpl.settings import Settings
from tickstockpl.sources.synthetic import SyntheticMarket

SYMBOLS = 2_000
WARMUP = 40  # boundaries before timing (every pattern's warm-up is below this)
BOUNDARIES = 60
BIG = 10_000
BIG_TIMED = 7
ROUNDS = 3  # timeframes: alternated runs of each engine


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


def time_timeframes() -> tuple[float, float, int]:
    """(whole default set, the same with the default timeframes and combos) in seconds over the timed
    boundaries of a session-laid market ending at a close (best of ROUNDS), and the higher-timeframe
    signals."""
    calendar = SessionCalendar()
    close = int(calendar.closes[-300])  # a session well inside the calendar
    market = SyntheticMarket(
        [f"S{i:05d}" for i in range(SYMBOLS)],
        seed=11,
        start=close - 60 * (WARMUP + BOUNDARIES),
        sessions=calendar,
    )
    data = [market.step() for _ in range(WARMUP + BOUNDARIES)]
    settings = Settings()
    best = [float("inf"), float("inf")]
    extra = 0
    for _ in range(ROUNDS):  # alternated, best of each: a shared machine's load shifts between runs
        for kind in range(2):
            engine = (
                engine_for(settings.timeframes, settings.combo_timeframes, calendar)
                if kind
                else StreamingEngine()
            )
            for boundary in data[:WARMUP]:
                engine.process(boundary)
            started = time.perf_counter()
            found = [s for boundary in data[WARMUP:] for s in engine.process(boundary)]
            best[kind] = min(best[kind], time.perf_counter() - started)
            extra = sum(1 for s in found if s.timeframe != 60)
    return best[0], best[1], extra


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
    builder = EventBuilder()
    minimum = Settings().min_confidence
    for boundary in data[:WARMUP]:
        builder.build(engine.process(boundary))  # the builder learns the symbols as the detector's does
    detect_ms, event_ms, total_ms, published_ms, signals, published = [], [], [], [], [], []
    for boundary in data[WARMUP:]:
        started = time.perf_counter()
        found = engine.process(boundary)
        middle = time.perf_counter()
        events = builder.build(found)
        ended = time.perf_counter()
        kept = builder.build(publishable(found, minimum))
        filtered = time.perf_counter()
        assert len(events) == len(found)
        detect_ms.append((middle - started) * 1000)
        event_ms.append((ended - middle) * 1000)
        total_ms.append((ended - started) * 1000)
        published_ms.append((middle - started + filtered - ended) * 1000)
        signals.append(len(found))
        published.append(len(kept))
    del data
    print(
        json.dumps(
            {
                "detect_ms": statistics.median(detect_ms),
                "events_ms": statistics.median(event_ms),
                "total_ms": statistics.median(total_ms),
                "published_ms": statistics.median(published_ms),
                "signals": statistics.median(signals),
                "published": statistics.median(published),
                "min_confidence": minimum,
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
    plain_s, frames_s, frame_signals = time_timeframes()
    rows = [
        ["talib.stream handles (baseline)", len(candles_only.candles), bars / talib_s, 1.0, len(talib_found)],
        [
            "detector, same candlesticks (headline)",
            len(candles_only.candles),
            bars / candle_s,
            talib_s / candle_s,
            len(candle_found),
        ],
        ["detector, whole default set (+4 named)", len(full.names), bars / full_s, talib_s / full_s, "-"],
        [
            "default set, session-laid bars (ends at a close)",
            len(full.names),
            bars / plain_s,
            talib_s / plain_s,
            "-",
        ],
        [
            "  + timeframes 5m,15m,1h,1d and combos",
            len(full.names),
            bars / frames_s,
            talib_s / frames_s,
            f"+{frame_signals:,}",
        ],
        ["talib.stream, all 61 candlesticks", 61, bars / every_talib_s, 1.0, len(every_talib_found)],
        ["detector, all 61 candlesticks", 61, bars / every_s, every_talib_s / every_s, len(every_found)],
    ]
    print_table(
        f"Throughput, {SYMBOLS:,} symbols x {BOUNDARIES} boundaries (one core)",
        ["run", "patterns", "bars/s", "x its talib.stream", "signals"],
        rows,
    )
    print(
        f"signals identical to talib.stream (same bars, pattern, direction): {'yes' if identical else 'NO'}"
    )
    print(f"the timeframes cost: {frames_s / plain_s:.3f}x the time of the feed's own timeframe alone")
    child = subprocess.run(
        [sys.executable, "-m", "bench.bench_detector", "--child-big"],
        capture_output=True,
        text=True,
        check=True,
    )
    big = json.loads(child.stdout.strip().splitlines()[-1])
    print_table(
        f"One boundary of {BIG:,} symbols, whole default set (median of {BIG_TIMED}), fresh process",
        ["measure", "value"],
        [
            ["detect: bars in -> signals (ms)", big["detect_ms"]],
            ["contract events for every signal (ms)", big["events_ms"]],
            ["end to end: bars in -> events ready to enqueue (ms)", big["total_ms"]],
            ["signals per boundary", big["signals"]],
            [
                f"end to end, published stream only (confidence >= {big['min_confidence']}) (ms)",
                big["published_ms"],
            ],
            ["events published per boundary at that minimum", big["published"]],
            ["RSS (MB)", big["rss_mb"]],
        ],
    )
    if not identical:
        raise SystemExit("signals differ from talib.stream: figures not recorded")
    record(
        {
            "detector_bars_per_s": bars / candle_s,
            "talib_stream_bars_per_s": bars / talib_s,
            "boundary_10k_symbols_ms": big["total_ms"],
            "detector_rss_mb_10k": big["rss_mb"],
            "detector_timeframes_bars_per_s": bars / frames_s,
            "detector_timeframes_cost_ratio": frames_s / plain_s,
        }
    )


if __name__ == "__main__":
    if "--child-big" in sys.argv:
        child_big()
    else:
        main()
