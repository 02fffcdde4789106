"""Backtests of the detector's patterns over stored history (issue 7; docs/backtesting.md).

`parse_job` checks a job as TickStockAppV2 sends it; `run_job` runs it against a HistorySource
(`PostgresHistory` or `MemoryHistory`) with progress and cancel hooks; `price`, `allocate` (or
`simulate` for one symbol) and `summarize` are the pure engine and metrics underneath.
"""

from tickstockpl.backtest.engine import Book, History, Simulation, Trade, allocate, price, simulate
from tickstockpl.backtest.history import HistorySource, MemoryHistory, read_csv
from tickstockpl.backtest.jobs import Job, JobError, Parameters, job_id_of, parse_job
from tickstockpl.backtest.metrics import summarize
from tickstockpl.backtest.runner import Cancelled, Outcome, run_job
from tickstockpl.backtest.signals import Signal, detect, known_patterns

__all__ = [
    "Book",
    "Cancelled",
    "History",
    "HistorySource",
    "Job",
    "JobError",
    "MemoryHistory",
    "Outcome",
    "Parameters",
    "Signal",
    "Simulation",
    "Trade",
    "allocate",
    "detect",
    "job_id_of",
    "known_patterns",
    "parse_job",
    "price",
    "read_csv",
    "run_job",
    "simulate",
    "summarize",
]
