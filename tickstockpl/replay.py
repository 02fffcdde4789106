"""`tickstockpl replay PATH... [--json] [--publish [--min-confidence C]] [--speed N] [--timeframe S]`:
real market data through the detector.

PATH is a CSV or CSV.gz file (ours, or a Massive flat file: the header tells), a directory of them, or
a glob; every file is merged into one feed in time order, with memory bounded by the number of symbols
(sources/time_order.py), so years of the whole market replay in a few hundred MB. The engine is the
detector's own (services/detector.py). On a terminal a progress bar shows bars/s and the time left;
piped, nothing but the result. The result (replay_report.py) is a summary for people, or one JSON
object with `--json`. With --publish the events whose confidence reaches TICKSTOCKPL_MIN_CONFIDENCE
(or --min-confidence) are handed to `outbox.enqueue`, exactly as the detector does, and the relay
takes it from there. A file with no usable row is an error (exit 64): a replay that finds nothing
must not look like one that found no pattern.
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import attrgetter
from typing import Any, TextIO

from tqdm import tqdm

from tickstockpl import outbox
from tickstockpl.backtest.signals import known_patterns, pattern_set
from tickstockpl.errors import TickStockPLError
from tickstockpl.exitcodes import RET_OK, RET_UNAVAILABLE, RET_USAGE
from tickstockpl.patterns import EventBuilder, PatternSet, StreamingEngine, publishable
from tickstockpl.patterns.sessions import SessionCalendar
from tickstockpl.patterns.timeframes import engine_for
from tickstockpl.replay_report import ReplayResult, json_report, text_report
from tickstockpl.settings import Settings
from tickstockpl.sources.bar_files import sizes
from tickstockpl.sources.csv_replay import CsvReplaySource
from tickstockpl.stores import redis_client

PUBLISH_BATCH = 500
PATTERN_OF, SYMBOL_OF = attrgetter("pattern"), attrgetter("symbol")
COLLECT_EVERY_BARS = 1_000_000  # a full garbage collection this often while automatic ones are off


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="PATH",
        help="CSV or CSV.gz file (timestamp,symbol,open,high,low,close,volume, or a Massive flat file), "
        "directory of them, or glob",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
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
        "--timeframe", type=int, default=None, help="bar length in seconds (default: inferred per file)"
    )
    parser.add_argument(
        "--patterns", help="comma-separated patterns to run (default: the detector's whole default set)"
    )
    parser.add_argument("--top", type=int, default=10, help="symbols listed in the summary (default 10)")


class Progress:
    """A tqdm bar on a terminal, in bytes of the files (compressed size for gzip) so the time left is
    right from the start, with bars/s and patterns beside it; nothing at all when not a terminal."""

    def __init__(self, source: CsvReplaySource, out: TextIO) -> None:
        self.enabled = out.isatty()
        total = sizes(source.files)
        self.bar = tqdm(
            total=total,
            file=out,
            disable=not self.enabled,
            unit="B",
            unit_scale=True,
            leave=False,
            dynamic_ncols=True,
            bar_format="{percentage:3.0f}%|{bar}| {elapsed} elapsed, {remaining} left{postfix}",
            mininterval=0.2,
        )
        self._started = time.monotonic()
        self._last = 0.0

    def advance(self, input_bytes: float) -> None:
        """The feed loaded bars that stand for this many bytes of the files."""
        if self.enabled:
            self.bar.update(input_bytes)

    def show(self, bars: int, signals: int) -> None:
        now = time.monotonic()
        if self.enabled and now - self._last >= 0.2:
            self._last = now
            rate = bars / max(now - self._started, 1e-9)
            self.bar.set_postfix_str(
                f"{bars:,} bars, {rate:,.0f} bars/s, {signals:,} patterns", refresh=False
            )

    def close(self) -> None:
        self.bar.close()


@contextmanager
def collections_paused() -> Iterator[None]:
    """Automatic garbage collection off for the run (a replay allocates millions of short-lived bars,
    none in a cycle, and the collector would rescan the live ones again and again); `COLLECT_EVERY_BARS`
    full collections keep anything cyclic from piling up."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def replay(
    files: Sequence[str],
    *,
    speed: float = 0.0,
    timeframe: int | None = None,
    pset: PatternSet | None = None,
    publish_to: Any = None,
    min_confidence: float = 0.0,
    out: TextIO = sys.stdout,
    stop: threading.Event | None = None,
    settings: Settings | None = None,
) -> ReplayResult:
    """Run the files through a fresh engine; with `publish_to` (a Redis client) enqueue the events of
    the signals whose confidence is at least `min_confidence` (`by_pattern` has every signal). With
    `settings`, its timeframes and combos are judged too, as the detector does; without, the files' own."""
    started = time.monotonic()
    source = CsvReplaySource(files, speed=speed, timeframe=timeframe)
    result = ReplayResult(files=[str(path) for path in source.files], publish=publish_to is not None)
    if publish_to is not None:
        result.min_confidence = min_confidence
    result.empty_files = [str(path) for path in source.feed.empty]
    if result.empty_files:
        result.rejected = Counter(source.rejected)
        return result
    calendar = SessionCalendar(settings.session_calendar if settings else "XNYS")
    engine = (
        engine_for(
            settings.timeframes,
            settings.combo_timeframes,
            calendar,
            pset,
            rs_bars=settings.rs_bars,
            rs_benchmark=settings.rs_benchmark,
        )
        if settings
        else StreamingEngine(pset)
    )
    builder = EventBuilder(calendar)
    pending: list[dict[str, Any]] = []
    progress = Progress(source, out)
    source.feed.on_progress = progress.advance
    next_collection = COLLECT_EVERY_BARS
    try:
        with collections_paused():
            for batch in source.batches(stop or threading.Event()):
                signals = engine.process(batch)
                result.bars += len(batch)
                if signals:
                    result.by_pattern.update(map(PATTERN_OF, signals))
                    result.by_symbol.update(map(SYMBOL_OF, signals))
                    if publish_to is not None:
                        published = publishable(signals, min_confidence)
                        result.held_back += len(signals) - len(published)
                        pending.extend(builder.build(published))
                        if len(pending) >= PUBLISH_BATCH:
                            result.published += outbox.enqueue(publish_to, pending)
                            pending = []
                progress.show(result.bars, result.signals)
                if result.bars >= next_collection:
                    gc.collect()
                    next_collection = result.bars + COLLECT_EVERY_BARS
        if publish_to is not None and pending:
            result.published += outbox.enqueue(publish_to, pending)
    finally:
        progress.close()
    result.rejected = engine.rejected + source.rejected
    result.accepted = engine.accepted
    result.symbols = len(source.feed.symbols.names)
    result.series = engine.series + engine.evicted
    result.rows = sum(file.rows_read for file in source.feed.files)
    result.late = source.feed.late
    result.elapsed_s = time.monotonic() - started
    return result


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The `replay` subcommand; returns an exit code."""
    minimum = settings.min_confidence if args.min_confidence is None else args.min_confidence
    if not 0.0 <= minimum <= 1.0:
        print(f"replay: --min-confidence must be within 0-1, got {minimum}")
        return RET_USAGE
    try:
        pset = _patterns(args.patterns)
    except ValueError as exc:
        print(f"replay: {exc}")
        return RET_USAGE
    client = redis_client(settings) if args.publish else None
    try:
        result = replay(
            args.files,
            speed=args.speed,
            timeframe=args.timeframe,
            pset=pset,
            publish_to=client,
            min_confidence=minimum,
            settings=settings,
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
    print(json_report(result) if args.json else text_report(result, top=max(0, args.top)))
    if not result.empty_files and not result.accepted:
        print(f"replay: no usable rows in {', '.join(args.files)}")
    return RET_USAGE if result.empty_files or not result.accepted else RET_OK


def _patterns(names: str | None) -> PatternSet | None:
    """The PatternSet of `--patterns` (the detector's default set without it)."""
    if names is None:
        return None
    wanted = tuple(name.strip() for name in names.split(",") if name.strip())
    unknown = sorted(set(wanted) - known_patterns())
    if not wanted or unknown:
        raise ValueError(
            f"unknown pattern(s) {', '.join(repr(n) for n in unknown) or '(none given)'}; "
            f"known: {', '.join(sorted(known_patterns()))}"
        )
    return pattern_set(wanted)
