"""Price history for backtests: reading the data files, and a source that serves bars by date range.

Dates in jobs are UTC days: `start_date` begins at 00:00 UTC and `end_date` is included whole. The
bars before `start_date` that the detector needs to warm up are served too, marked by `History.first`,
so a signal on the first day of the range is the one the live detector would have sent.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from tickstockpl.backtest.engine import History
from tickstockpl.bars import DAY_SECONDS, REASONS, check_arrays, timeframe_label

_LABEL = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": DAY_SECONDS}
COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")


class Series(NamedTuple):
    """All bars of one (symbol, timeframe) from a file: valid, sorted, unique times."""

    symbol: str
    timeframe: str
    times: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


class HistorySource(Protocol):
    """Where a backtest reads bars: Postgres (store.PostgresHistory) or files (MemoryHistory)."""

    def bar_counts(
        self, symbols: Iterable[str], timeframe: str, start: dt.date, end: dt.date
    ) -> dict[str, int]: ...

    def load(self, symbol: str, timeframe: str, start: dt.date, end: dt.date, warmup: int) -> History: ...

    def symbols_with_bars(self, timeframe: str, start: dt.date, end: dt.date) -> list[str]:
        """Every symbol with `timeframe` bars in the range, sorted (the command line's `--symbols ALL`)."""
        ...


def timeframe_seconds(label: str) -> int:
    """ "1d" -> 86400, "1h" -> 3600, "5m" -> 300; ValueError for anything else."""
    match = _LABEL.match(label)
    if not match:
        raise ValueError(f"timeframe {label!r} is not like 1d, 1h, 5m or 30s")
    return int(match.group(1)) * _UNIT[match.group(2)]


def day_bounds(start: dt.date, end: dt.date) -> tuple[int, int]:
    """[start 00:00 UTC, the day after end 00:00 UTC) in epoch seconds."""
    begin = dt.datetime.combine(start, dt.time(), dt.UTC)
    stop = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    return int(begin.timestamp()), int(stop.timestamp())


def parse_time(text: str) -> int:
    """A date (UTC midnight) or an ISO 8601 time with offset (naive means UTC), as epoch seconds."""
    value = dt.datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return int(value.timestamp())


def read_csv(path: str | Path, timeframe: str | None = None) -> tuple[list[Series], Counter[str]]:
    """Every series in a `timestamp,symbol,open,high,low,close,volume` file, and rejects by reason.

    The timeframe, unless given, is the smallest gap between two bars (see `_infer_timeframe`).
    """
    rows: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    rejected: Counter[str] = Counter()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for record in reader:
            try:
                values = tuple(float(record[name]) for name in COLUMNS[2:])
                rows[record["symbol"].strip().upper()].append((parse_time(record["timestamp"]), *values))
            except (TypeError, ValueError, AttributeError):
                rejected["missing_field"] += 1
    series = [_series(symbol, np.array(data), rejected) for symbol, data in rows.items()]
    series = [s for s in series if len(s.times)]
    label = timeframe or _infer_timeframe(series)
    return [s._replace(timeframe=label) for s in series], rejected


def _series(symbol: str, data: np.ndarray, rejected: Counter[str]) -> Series:
    data = data[np.argsort(data[:, 0], kind="stable")]
    codes = check_arrays(data[:, 1], data[:, 2], data[:, 3], data[:, 4], data[:, 5])
    for code, number in Counter(codes[codes > 0].tolist()).items():
        rejected[REASONS[code - 1]] += number
    data = data[codes == 0]
    unique = np.ones(len(data), bool)
    unique[:-1] = data[1:, 0] != data[:-1, 0]  # keep the last of equal times
    if not unique.all():
        rejected["duplicate"] += int((~unique).sum())
    data = data[unique]
    return Series(symbol, "", data[:, 0].astype(np.int64), *(data[:, i].copy() for i in range(1, 6)))


def _infer_timeframe(series: Iterable[Series]) -> str:
    """The smallest gap between bars, except that any gap of a day or more means daily bars (a sparse
    daily file has no two consecutive days); weekly data needs an explicit timeframe."""
    gaps = [int(np.diff(s.times).min()) for s in series if len(s.times) > 1]
    smallest = min(gaps, default=DAY_SECONDS)
    return timeframe_label(min(smallest, DAY_SECONDS))


class MemoryHistory:
    """A HistorySource over series held in memory (from `read_csv`): the CLI's --csv and the bench."""

    def __init__(self, series: Iterable[Series]) -> None:
        self._series: Mapping[tuple[str, str], Series] = {(s.symbol, s.timeframe): s for s in series}

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], timeframe: str | None = None) -> MemoryHistory:
        return cls(s for path in paths for s in read_csv(path, timeframe)[0])

    def _range(self, series: Series, start: dt.date, end: dt.date) -> tuple[int, int]:
        begin, stop = day_bounds(start, end)
        return int(np.searchsorted(series.times, begin)), int(np.searchsorted(series.times, stop))

    def bar_counts(
        self, symbols: Iterable[str], timeframe: str, start: dt.date, end: dt.date
    ) -> dict[str, int]:
        counts = {}
        for symbol in symbols:
            series = self._series.get((symbol, timeframe))
            if series is not None:
                lo, hi = self._range(series, start, end)
                counts[symbol] = hi - lo
        return counts

    def symbols_with_bars(self, timeframe: str, start: dt.date, end: dt.date) -> list[str]:
        symbols = sorted(symbol for symbol, label in self._series if label == timeframe)
        counts = self.bar_counts(symbols, timeframe, start, end)
        return [symbol for symbol in symbols if counts.get(symbol)]

    def load(self, symbol: str, timeframe: str, start: dt.date, end: dt.date, warmup: int) -> History:
        series = self._series[(symbol, timeframe)]
        lo, hi = self._range(series, start, end)
        begin = max(0, lo - warmup)
        part = slice(begin, hi)
        return History(
            symbol,
            series.times[part],
            series.open[part],
            series.high[part],
            series.low[part],
            series.close[part],
            series.volume[part],
            first=lo - begin,
        )
