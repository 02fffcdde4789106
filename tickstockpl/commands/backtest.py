"""`tickstockpl backtest --symbols AAPL,MSFT --patterns Hammer,Doji --from 2005-01-01 --to 2010-12-31`.

The service's engine from the command line: bars from `historical_bars` (or `--csv FILE` straight from a
data file), a progress bar, then the results tables. `--json` prints the `results` object the service
would publish instead.
"""

from __future__ import annotations

import argparse
import json

from tickstockpl import contract
from tickstockpl.backtest.display import ProgressBar, results_report
from tickstockpl.backtest.history import HistorySource, MemoryHistory
from tickstockpl.backtest.jobs import DAILY, JobError, Parameters, parse_job
from tickstockpl.backtest.runner import run_job
from tickstockpl.backtest.store import PostgresHistory
from tickstockpl.commands.common import store_error_exit
from tickstockpl.errors import AuditConfigError, StoreUnavailable
from tickstockpl.exitcodes import RET_FAILED, RET_OK, RET_USAGE
from tickstockpl.settings import Settings

DEFAULTS = Parameters()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", required=True, help="comma-separated tickers, e.g. AAPL,MSFT")
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


def _job_message(args: argparse.Namespace) -> str:
    """The same message TickStockAppV2 would publish, so the CLI and the service parse one format."""
    names = [*Parameters.__dataclass_fields__, "timeframe"]
    return json.dumps(
        {
            "type": "backtest_job",
            "job_id": "cli",
            "symbols": [s for s in args.symbols.split(",") if s.strip()],
            "patterns": [p.strip() for p in args.patterns.split(",") if p.strip()],
            "start_date": args.start,
            "end_date": args.end,
            "parameters": {name: getattr(args, name) for name in names},
        }
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        job = parse_job(_job_message(args))
    except JobError as exc:
        print(f"backtest: {exc}")
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
    bar = ProgressBar("backtest")
    try:
        outcome = run_job(job, source, lambda fraction, symbol: bar.update(fraction, symbol or ""))
        bar.done(f"{outcome.bars:,} bars")
    except JobError as exc:
        print(f"backtest: {exc}")
        return RET_FAILED
    except (StoreUnavailable, AuditConfigError) as exc:
        return store_error_exit("backtest", exc, settings)
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(contract.encode(outcome.results))
    else:
        print(f"\n{', '.join(job.symbols)}  {', '.join(job.patterns)}  {job.start} .. {job.end}\n")
        print(results_report(outcome.results))
    return RET_OK
