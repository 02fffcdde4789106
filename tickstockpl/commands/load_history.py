"""`tickstockpl load-history FILE...`: bars from the data files into `historical_bars`, for backtests.

Upserts keyed by (symbol, timeframe, bar_start), so running it twice changes nothing; malformed rows
are counted by reason and skipped. Prints a progress bar, then per series what was written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tickstockpl.backtest.display import ProgressBar
from tickstockpl.backtest.history import Series, read_csv, timeframe_seconds
from tickstockpl.backtest.store import PostgresHistory
from tickstockpl.commands.common import store_error_exit
from tickstockpl.errors import AuditConfigError, StoreUnavailable
from tickstockpl.exitcodes import RET_OK, RET_USAGE
from tickstockpl.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="CSV: timestamp,symbol,open,high,low,close,volume"
    )
    parser.add_argument(
        "--timeframe", help="bar length label such as 1d, 1h, 1m (default: inferred per file)"
    )
    parser.add_argument("--batch", type=int, default=2000, help="rows per transaction (default 2000)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.timeframe:
        try:
            timeframe_seconds(args.timeframe)
        except ValueError as exc:
            print(f"load-history: {exc}")
            return RET_USAGE
    series: list[tuple[Path, Series]] = []
    for name in args.files:
        path = Path(name)
        try:
            found, rejected = read_csv(path, args.timeframe)
        except (OSError, ValueError) as exc:
            print(f"load-history: cannot read {path}: {exc}")
            return RET_USAGE
        series.extend((path, s) for s in found)
        if rejected:
            print(f"{path}: skipped {sum(rejected.values())} row(s): {dict(sorted(rejected.items()))}")
    total = sum(len(s.times) for _, s in series)
    if not total:
        print("load-history: no valid bars in the given file(s)")
        return RET_USAGE
    store = PostgresHistory(settings)
    bar = ProgressBar("loading")
    done = 0
    lines: list[str] = []
    try:
        for path, item in series:

            def advance(rows: int, symbol: str = item.symbol) -> None:
                nonlocal done
                done += rows
                bar.update(done / total, f"{done:,}/{total:,} bars ({symbol})")

            changed = store.upsert(item, batch=max(1, args.batch), on_batch=advance)
            what = f"{item.symbol} {item.timeframe}: {len(item.times):,} bars, {changed:,} new or changed"
            lines.append(f"  {path.name}: {what}")
        bar.done(f"{total:,}/{total:,} bars")
    except (StoreUnavailable, AuditConfigError) as exc:
        print()  # end the progress bar's line
        return store_error_exit("load-history", exc, settings)
    finally:
        store.close()
    print("\n".join(lines))
    print(f"loaded {total:,} bars of {len(series)} series into historical_bars")
    return RET_OK
