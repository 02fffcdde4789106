"""`tickstockpl replay FILE... [--speed N] [--publish [--min-confidence C]] [--timeframe S]`: real data
through the detector.

The same StreamingEngine as tickstockpl/services/detector.py, fed by CsvReplaySource. Progress goes to stdout
(a line redrawn in place on a terminal, a line per 10 % otherwise: the consumer's launcher never reads
stderr), then a table of every pattern detected, by name and symbol. With --publish the events whose
confidence reaches TICKSTOCKPL_MIN_CONFIDENCE (or --min-confidence) are handed to `outbox.enqueue`,
exactly as the detector does, and the relay takes it from there.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from tickstockpl import outbox
from tickstockpl.errors import TickStockPLError
from tickstockpl.exitcodes import RET_OK, RET_UNAVAILABLE, RET_USAGE
from tickstockpl.patterns import EventBuilder, StreamingEngine, publishable
from tickstockpl.patterns.indicators import DEFAULT_RS_BARS
from tickstockpl.settings import Settings
from tickstockpl.sources.csv_replay import CsvReplaySource
from tickstockpl.stores import redis_client

PUBLISH_BATCH = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="CSV: timestamp,symbol,open,high,low,close,volume"
    )
    parser.add_argument(
        "--speed", type=float, default=0.0, help="x real time (60 = a minute per second); 0 = flat out"
    )
    parser.add_argument("--publish", action="store_true", help="enqueue the events for the relay to publish")
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="publish only signals with this confidence or more (default: TICKSTOCKPL_MIN_CONFIDENCE)",
    )
    parser.add_argument(
        "--timeframe", type=int, default=None, help="bar length in seconds (default: inferred)"
    )


@dataclass
class ReplayResult:
    bars: int = 0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (pattern, symbol) -> signals
    rejected: Counter[str] = field(default_factory=Counter)
    published: int = 0
    held_back: int = 0  # detected, but below the minimum confidence for publishing


class Progress:
    """A progress line on stdout: redrawn in place on a terminal, every 10 % otherwise."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = max(total, 1)
        self.out = out
        self.tty = out.isatty()
        self._last_draw = 0.0
        self._last_decile = -1

    def update(self, done: int, signals: int) -> None:
        share = done / self.total
        text = (
            f"[{'#' * int(share * 30):<30}] {share:4.0%} {done:,}/{self.total:,} bars, {signals:,} patterns"
        )
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or done >= self.total:
                self.out.write("\r" + text)
                self.out.flush()
                self._last_draw = now
        elif int(share * 10) > self._last_decile:
            self._last_decile = int(share * 10)
            print(text, file=self.out, flush=True)

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")


def replay(
    files: Sequence[str],
    *,
    speed: float = 0.0,
    timeframe: int | None = None,
    publish_to: Any = None,
    min_confidence: float = 0.0,
    out: TextIO = sys.stdout,
    stop: threading.Event | None = None,
    rs_bars: int = DEFAULT_RS_BARS,
    rs_benchmark: str = "",
) -> ReplayResult:
    """Run the files through a fresh engine; with `publish_to` (a Redis client) enqueue the events of
    the signals whose confidence is at least `min_confidence` (`counts` has every signal).
    `rs_bars` and `rs_benchmark`: the relative strength's settings, as the detector takes them."""
    source = CsvReplaySource(files, speed=speed, timeframe=timeframe)
    engine = StreamingEngine(rs_bars=rs_bars, rs_benchmark=rs_benchmark)
    builder = EventBuilder()
    result = ReplayResult()
    progress = Progress(len(source.bars), out)
    pending: list[dict[str, Any]] = []
    signals_seen = 0
    for batch in source.batches(stop or threading.Event()):
        signals = engine.process(batch)
        result.bars += len(batch)
        signals_seen += len(signals)
        result.counts.update((s.pattern, s.symbol) for s in signals)
        if publish_to is not None:
            published = publishable(signals, min_confidence)
            result.held_back += len(signals) - len(published)
            pending.extend(builder.build(published))
            if len(pending) >= PUBLISH_BATCH:
                result.published += outbox.enqueue(publish_to, pending)
                pending = []
        progress.update(result.bars, signals_seen)
    if publish_to is not None and pending:
        result.published += outbox.enqueue(publish_to, pending)
    progress.finish()
    result.rejected = engine.rejected + source.rejected
    return result


def summary_table(counts: Counter[tuple[str, str]]) -> str:
    """Patterns by name (rows, most frequent first) and symbol (columns), with totals."""
    symbols = sorted({symbol for _, symbol in counts})
    per_pattern: Counter[str] = Counter()
    for (pattern, _), n in counts.items():
        per_pattern[pattern] += n
    header = ["pattern", *symbols, "total"]
    rows = [
        [pattern, *(f"{counts[(pattern, s)]:,}" for s in symbols), f"{total:,}"]
        for pattern, total in sorted(per_pattern.items(), key=lambda item: (-item[1], item[0]))
    ]
    rows.append(
        ["total", *(f"{sum(counts[(p, s)] for p in per_pattern):,}" for s in symbols), f"{counts.total():,}"]
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, row in enumerate([header, *rows]):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0 or index == len(rows) - 1:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The `replay` subcommand; returns an exit code."""
    minimum = settings.min_confidence if args.min_confidence is None else args.min_confidence
    if not 0.0 <= minimum <= 1.0:
        print(f"replay: --min-confidence must be within 0-1, got {minimum}")
        return RET_USAGE
    client = redis_client(settings) if args.publish else None
    try:
        result = replay(
            args.files,
            speed=args.speed,
            timeframe=args.timeframe,
            publish_to=client,
            min_confidence=minimum,
            rs_bars=settings.rs_bars,
            rs_benchmark=settings.rs_benchmark,
        )
    except (OSError, ValueError) as exc:
        print(f"replay: {exc}")
        return RET_USAGE
    except TickStockPLError as exc:
        print(f"replay: cannot publish: {exc}")
        return RET_UNAVAILABLE
    finally:
        if client is not None:
            client.close()
    print(f"\n{result.bars:,} bars, {result.counts.total():,} patterns")
    if result.counts:
        print(summary_table(result.counts))
    if result.rejected:
        print(
            "rejected bars: " + ", ".join(f"{reason} {n:,}" for reason, n in sorted(result.rejected.items()))
        )
    if args.publish:
        print(
            f"published: {result.published:,} events enqueued for the relay; {result.held_back:,} below "
            f"the minimum confidence {minimum:.2f} held back"
        )
    return RET_OK
