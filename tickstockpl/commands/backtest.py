"""`tickstockpl backtest --symbols AAPL,MSFT --patterns Hammer,Doji --from 2005-01-01 --to 2010-12-31`.

The service's engine from the command line: bars from `historical_bars` (or `--csv FILE` straight from a
data file), a progress bar, then the results tables. `--json` prints the `results` object the service
would publish instead.

At market scale (issue 14): `--symbols ALL` takes every symbol with bars in the range, `--symbols
@FILE` a list from a file, up to contract.BACKTEST_CLI_MAX_SYMBOLS (the job channel keeps
TickStockAppV2's 50), over any span. Bars stream from PostgreSQL one symbol at a time (the runner), and
the progress line says the symbol, bars so far, bars/s and the time left.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Iterable
from pathlib import Path

from tickstockpl import contract
from tickstockpl.backtest.display import ProgressBar, results_report
from tickstockpl.backtest.engine import History
from tickstockpl.backtest.history import HistorySource, MemoryHistory
from tickstockpl.backtest.jobs import CLI_LIMITS, DAILY, JobError, Parameters, parse_job
from tickstockpl.backtest.runner import run_job
from tickstockpl.backtest.store import PostgresHistory
from tickstockpl.commands.common import store_error_exit
from tickstockpl.errors import AuditConfigError, StoreUnavailable
from tickstockpl.exitcodes import RET_FAILED, RET_OK, RET_USAGE
from tickstockpl.settings import Settings

DEFAULTS = Parameters()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbols",
        required=True,
        help="comma-separated tickers (AAPL,MSFT), @FILE (tickers one per line or comma-separated),"
        " or ALL: every symbol with bars in the range",
    )
    parser.add_argument(
        "--patterns",
        required=True,
        help=f"comma-separated names, e.g. {','.join(contract.UI_CANDLESTICK_PATTERNS[:3])}",
    )
    parser.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD")
    parser.add_argument("--to", dest="end", required=True, metavar="YYYY-MM-DD")
    parser.add_argument(
        "--csv", action="append", metavar="FILE", help="read bars from this file, not PostgreSQL"
    )
    parser.add_argument("--timeframe", default=DAILY, help="bar length label (default 1d)")
    parser.add_argument("--json", action="store_true", help="print the results object as JSON")
    for name in (
        "initial_capital",
        "commission_rate",
        "slippage_rate",
        "max_position_size",
        "stop_loss_pct",
        "take_profit_pct",
    ):
        parser.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=float, default=getattr(DEFAULTS, name)
        )
    parser.add_argument(
        "--max-holding-bars", dest="max_holding_bars", type=int, default=DEFAULTS.max_holding_bars
    )


def _job_message(args: argparse.Namespace, symbols: list[str]) -> str:
    """The same message TickStockAppV2 would publish, so the CLI and the service parse one format."""
    names = [*Parameters.__dataclass_fields__, "timeframe"]
    return json.dumps(
        {
            "type": "backtest_job",
            "job_id": "cli",
            "symbols": symbols,
            "patterns": [p.strip() for p in args.patterns.split(",") if p.strip()],
            "start_date": args.start,
            "end_date": args.end,
            "parameters": {name: getattr(args, name) for name in names},
        }
    )


def _listed_symbols(text: str) -> list[str]:
    """`--symbols`: a comma-separated list, or @FILE holding one (commas or lines); ALL is resolved later."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8").replace("\n", ",")
    return [symbol.strip() for symbol in text.split(",") if symbol.strip()]


def _every_symbol(args: argparse.Namespace, source: HistorySource) -> list[str] | None:
    """`--symbols ALL`: the symbols with bars of the timeframe in the range; None if the dates are
    not dates (the job's own check then says what is wrong with them)."""
    try:
        start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    except ValueError:
        return None
    return source.symbols_with_bars(args.timeframe, start, end)


class CountingHistory:
    """A HistorySource that counts the bars it hands out, for the progress line."""

    def __init__(self, inner: HistorySource) -> None:
        self.inner = inner
        self.bars = 0

    def bar_counts(
        self, symbols: Iterable[str], timeframe: str, start: dt.date, end: dt.date
    ) -> dict[str, int]:
        return self.inner.bar_counts(symbols, timeframe, start, end)

    def symbols_with_bars(self, timeframe: str, start: dt.date, end: dt.date) -> list[str]:
        return self.inner.symbols_with_bars(timeframe, start, end)

    def load(self, symbol: str, timeframe: str, start: dt.date, end: dt.date, warmup: int) -> History:
        history = self.inner.load(symbol, timeframe, start, end, warmup)
        self.bars += len(history)
        return history


class Progress:
    """The progress line: the symbol being read, bars so far, bars/s and the time left."""

    def __init__(self, counted: CountingHistory) -> None:
        self.bar = ProgressBar("backtest")
        self.counted = counted
        self.started = time.monotonic()

    def __call__(self, fraction: float, symbol: str | None) -> None:
        elapsed = time.monotonic() - self.started
        bars = self.counted.bars
        note = f"{bars:,} bars"
        if elapsed > 0 and bars:
            note += f", {bars / elapsed:,.0f} bars/s"
        if 0 < fraction < 1:
            note += f", {_clock(elapsed * (1 - fraction) / fraction)} left"
        if symbol is not None:
            note = f"{symbol}: {note}"
        self.bar.update(fraction, note)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        listed = _listed_symbols(args.symbols)
    except OSError as exc:
        print(f"backtest: cannot read the symbols file: {exc}")
        return RET_USAGE
    source: HistorySource
    store: PostgresHistory | None = None
    if args.csv:
        try:
            source = MemoryHistory.from_files(args.csv, args.timeframe)
        except (OSError, ValueError) as exc:
            print(f"backtest: cannot read {', '.join(args.csv)}: {exc}")
            return RET_USAGE
    else:
        source = store = PostgresHistory(settings)
    try:
        return _run(args, settings, source, listed)
    except (StoreUnavailable, AuditConfigError) as exc:
        return store_error_exit("backtest", exc, settings)
    finally:
        if store is not None:
            store.close()


def _run(args: argparse.Namespace, settings: Settings, source: HistorySource, listed: list[str]) -> int:
    symbols: list[str] | None = listed
    if [symbol.upper() for symbol in listed] == ["ALL"]:
        symbols = _every_symbol(args, source)
        if symbols == []:
            print(
                f"backtest: no {args.timeframe} bars between {args.start} and {args.end}"
                " (load them with `tickstockpl load-history`)"
            )
            return RET_FAILED
    try:
        job = parse_job(_job_message(args, symbols or listed), CLI_LIMITS)
    except JobError as exc:
        print(f"backtest: {exc}")
        return RET_USAGE
    counted = CountingHistory(source)
    progress = Progress(counted)
    try:
        outcome = run_job(job, counted, progress)
        progress.bar.done(f"{outcome.bars:,} bars of {len(job.symbols):,} symbols")
    except JobError as exc:
        print(f"backtest: {exc}")
        return RET_FAILED
    if args.json:
        print(contract.encode(outcome.results))
    else:
        shown = ", ".join(job.symbols[:10]) + (
            f" and {len(job.symbols) - 10:,} more" if len(job.symbols) > 10 else ""
        )
        print(f"\n{shown}  {', '.join(job.patterns)}  {job.start} .. {job.end}\n")
        print(results_report(outcome.results))
    return RET_OK
