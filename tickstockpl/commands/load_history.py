"""`tickstockpl load-history PATH...`: bars from data files into `historical_bars`, for backtests.

PATH is a CSV or CSV.gz file (ours, or a Massive flat file: the header tells), a directory of them, or
a glob. Each file streams through PostgreSQL's binary COPY into a staging table and one set-based
upsert (backtest/bulk_load.py) keyed by (symbol, timeframe, bar_start): running it twice changes
nothing, a corrected bar is updated in place. Rows that cannot be bars are counted by reason and
skipped. Prints a progress bar, then per file what was written. A file with no usable row is an
error (exit 64), after the others are loaded. A load cut short (PostgreSQL gone) keeps the batches it
committed; running it again completes it.
"""

from __future__ import annotations

import argparse
import time

from tickstockpl.backtest.bulk_load import FLUSH_ROWS, FileLoad, HistoryLoader
from tickstockpl.backtest.display import ProgressBar
from tickstockpl.backtest.history import timeframe_seconds
from tickstockpl.commands.common import store_error_exit
from tickstockpl.errors import AuditConfigError, AuditDataError, StoreUnavailable
from tickstockpl.exitcodes import RET_OK, RET_USAGE
from tickstockpl.settings import Settings
from tickstockpl.sources.bar_files import expand, first_bar_start, sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="PATH",
        help="CSV or CSV.gz file (timestamp,symbol,open,high,low,close,volume, or a Massive flat file), "
        "directory of them, or glob",
    )
    parser.add_argument(
        "--timeframe", help="bar length label such as 1d, 1h, 1m (default: inferred per file)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=FLUSH_ROWS,
        help=f"rows per upsert and transaction (default {FLUSH_ROWS:,})",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    timeframe = None
    try:
        if args.timeframe:
            timeframe = timeframe_seconds(args.timeframe)
        paths = expand(args.files)
        empty = [path for path in paths if first_bar_start(path) is None]  # headers checked too
    except (OSError, ValueError) as exc:
        print(f"load-history: cannot read {exc}" if isinstance(exc, OSError) else f"load-history: {exc}")
        return RET_USAGE
    if len(empty) == len(paths):
        print("load-history: no valid bars in the given file(s)")
        return RET_USAGE
    loader = HistoryLoader(settings, flush_rows=max(1, args.batch))
    total, done_bytes, loads = sizes(paths), 0, []
    bar = ProgressBar("loading")
    started = time.monotonic()
    try:
        for path in paths:
            if path in empty:
                continue

            def advance(position: int, before: int = done_bytes, name: str = path.name) -> None:
                bar.update((before + position) / max(total, 1), name)

            loads.append(loader.load(path, timeframe, advance))
            done_bytes += path.stat().st_size
        bar.done(f"{sum(load.rows for load in loads):,} rows")
    except (StoreUnavailable, AuditConfigError, AuditDataError) as exc:
        print()  # end the progress bar's line
        return store_error_exit("load-history", exc, settings)
    except (OSError, ValueError) as exc:
        print(f"\nload-history: {exc}")
        return RET_USAGE
    finally:
        loader.close()
    print(report(loads, time.monotonic() - started))
    unusable = [str(path) for path in empty] + [str(load.path) for load in loads if not load.bars]
    for name in unusable:
        print(f"load-history: no usable bar in {name}")
    return RET_USAGE if unusable else RET_OK


def report(loads: list[FileLoad], elapsed_s: float) -> str:
    """Per file what was written, then the totals and the rejects by reason."""
    lines = []
    for load in loads:
        what = f"{load.bars:,} bars ({load.timeframe}, {load.symbols:,} symbols)"
        what += f", {load.changed:,} new or changed"
        skipped = f"; skipped {load.rejected.total():,} row(s): {_reasons(load)}" if load.rejected else ""
        lines.append(f"  {load.path.name}: {what}{skipped}")
    rows, bars = sum(load.rows for load in loads), sum(load.bars for load in loads)
    changed = sum(load.changed for load in loads)
    rate = f", {rows / elapsed_s:,.0f} rows/s" if elapsed_s > 0 else ""
    lines.append(
        f"loaded {bars:,} bars of {len(loads)} file(s) into historical_bars ({changed:,} new or changed) "
        f"in {elapsed_s:,.1f} s{rate}"
    )
    return "\n".join(lines)


def _reasons(load: FileLoad) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(load.rejected.items()))
