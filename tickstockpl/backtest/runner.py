"""Run one backtest: for each symbol, load bars, detect, price the candidates; then share the capital.

Shared by the service and the CLI. It knows no store and no channel: bars come from a HistorySource,
progress goes to a callback, and `keep_going()` is asked between steps so a cancel (or SIGTERM) stops
the work within one symbol. Loading and detecting is nearly all the work, so progress counts symbols;
the allocation over the shared timeline (engine.allocate) runs once all are priced, and each symbol's
bars are dropped once priced, so memory holds one symbol's bars at a time, plus the priced candidates
and the distinct bar times of the run (Timeline), whatever the number of symbols.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from tickstockpl.backtest import metrics
from tickstockpl.backtest.engine import Book, Trade, allocate, price
from tickstockpl.backtest.history import HistorySource, timeframe_seconds
from tickstockpl.backtest.jobs import Job, JobError
from tickstockpl.backtest.signals import detect, warmup_bars
from tickstockpl.errors import TickStockPLError

ProgressCallback = Callable[[float, str | None], None]


class Cancelled(TickStockPLError):
    """`keep_going()` said stop: cancelled by the user, or the service is shutting down."""


class Timeline:
    """The distinct bar times of every symbol so far, merged in chunks: bounded by the run's distinct
    times (a year of minutes: ~100,000), not by symbols x bars, and no re-sort per symbol."""

    MERGE_AT = 2_000_000  # pending times before a merge

    def __init__(self) -> None:
        self._merged = np.empty(0, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0

    def add(self, times: np.ndarray) -> None:
        self._pending.append(times)
        self._pending_size += len(times)
        if self._pending_size >= self.MERGE_AT:
            self._merge()

    def times(self) -> np.ndarray:
        self._merge()
        return self._merged

    def _merge(self) -> None:
        if self._pending:
            self._merged = np.unique(np.concatenate([self._merged, *self._pending]))
            self._pending, self._pending_size = [], 0


class Outcome(NamedTuple):
    results: dict[str, Any]  # the `results` object of the result message
    trades: list[Trade]
    bars: int  # bars processed, warm-up included


def run_job(
    job: Job,
    source: HistorySource,
    on_progress: ProgressCallback | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> Outcome:
    """Backtest a validated job. JobError if no symbol has bars in range; Cancelled if told to stop."""
    report = on_progress or (lambda fraction, symbol: None)
    should_go = keep_going or (lambda: True)
    try:
        seconds = timeframe_seconds(job.timeframe)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    counts = source.bar_counts(job.symbols, job.timeframe, job.start, job.end)
    present = [symbol for symbol in job.symbols if counts.get(symbol, 0) > 0]
    missing = [symbol for symbol in job.symbols if symbol not in present]
    if not present:
        raise JobError(
            f"no {job.timeframe} bars for {', '.join(job.symbols)} between {job.start} and {job.end}"
            " (load them with `tickstockpl load-history`)"
        )
    warmup = warmup_bars(job.patterns)
    books: list[Book] = []
    timeline = Timeline()
    bars = bars_in_range = 0
    for number, symbol in enumerate(present):
        report(number / len(present), symbol)
        if not should_go():
            raise Cancelled(job.job_id)
        history = source.load(symbol, job.timeframe, job.start, job.end, warmup)
        found = detect(history.open, history.high, history.low, history.close, history.volume, job.patterns)
        books.append(price(history, found, job.parameters))
        timeline.add(history.times[history.first :])
        bars += len(history)
        bars_in_range += history.bars_in_range
    if not should_go():
        raise Cancelled(job.job_id)
    run = allocate(books, job.parameters)
    trades: list[Trade] = run.trades
    capital = job.parameters.initial_capital
    results = metrics.summarize(trades, timeline.times(), capital, seconds)
    results.update(
        duration_days=job.duration_days,
        symbols_tested=len(present),
        symbols_without_data=missing,
        bars_tested=bars_in_range,
        signals=run.signals,
        neutral_signals=run.neutral,
        skipped_signals=run.skipped,
        unfunded_signals=run.unfunded,
        by_pattern=metrics.breakdown(trades, "pattern", job.patterns, capital),
        by_symbol=metrics.breakdown(trades, "symbol", present, capital),
    )
    report(1.0, None)
    return Outcome(results, trades, bars)
