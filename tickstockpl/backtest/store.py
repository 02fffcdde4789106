"""`historical_bars` in PostgreSQL: idempotent upserts from the loader, range reads for backtests.

The only module of the backtester that talks to PostgreSQL, through the door in stores.py: errors
leave it sorted into PostgresUnavailable (retry later) or AuditConfigError (an operator must act).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from tickstockpl.backtest.engine import History
from tickstockpl.backtest.history import Series, day_bounds
from tickstockpl.errors import AuditConfigError, AuditDataError, PostgresUnavailable
from tickstockpl.settings import Settings
from tickstockpl.stores import PgConnection, execute_values, postgres_connection, postgres_errors

_UPSERT_SQL = """
INSERT INTO historical_bars (symbol, timeframe, bar_start, open, high, low, close, volume)
VALUES %s
ON CONFLICT (symbol, timeframe, bar_start) DO UPDATE
SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume
WHERE (historical_bars.open, historical_bars.high, historical_bars.low, historical_bars.close,
       historical_bars.volume)
      IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume)
"""
_ROW_TEMPLATE = "(%s, %s, to_timestamp(%s), %s, %s, %s, %s, %s)"
_COUNTS_SQL = """
SELECT symbol, count(*) FROM historical_bars
WHERE symbol = ANY(%s) AND timeframe = %s AND bar_start >= to_timestamp(%s) AND bar_start < to_timestamp(%s)
GROUP BY symbol
"""
_SYMBOLS_SQL = """
SELECT symbol FROM historical_bars
WHERE timeframe = %s AND bar_start >= to_timestamp(%s) AND bar_start < to_timestamp(%s)
GROUP BY symbol ORDER BY symbol
"""
_COLUMNS = "extract(epoch FROM bar_start)::bigint, open, high, low, close, volume"
_LOAD_SQL = f"""
(SELECT {_COLUMNS} FROM historical_bars
 WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s AND bar_start < to_timestamp(%(begin)s)
 ORDER BY bar_start DESC LIMIT %(warmup)s)
UNION ALL
(SELECT {_COLUMNS} FROM historical_bars
 WHERE symbol = %(symbol)s AND timeframe = %(timeframe)s
   AND bar_start >= to_timestamp(%(begin)s) AND bar_start < to_timestamp(%(end)s))
ORDER BY 1
"""


class PostgresHistory:
    """A lazily (re)connected HistorySource and loader over `historical_bars`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: PgConnection | None = None

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        try:
            if self._conn is None or self._conn.closed:
                # Transactions of their own, and no statement timeout: loading years of bars may take a while.
                self._conn = postgres_connection(self._settings, autocommit=False, statement_timeout_ms=0)
            with postgres_errors(), self._conn, self._conn.cursor() as cur:  # commits, or rolls back on error
                yield cur
        except (PostgresUnavailable, AuditConfigError, AuditDataError):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def upsert(self, series: Series, batch: int = 2000, on_batch: Callable[[int], None] | None = None) -> int:
        """Insert or update every bar of a series, one transaction per batch; rows actually changed."""
        changed = 0
        for lo in range(0, len(series.times), batch):
            rows = _rows(series, lo, lo + batch)
            with self._cursor() as cur:
                execute_values(cur, _UPSERT_SQL, rows, template=_ROW_TEMPLATE, page_size=batch)
                changed += cur.rowcount
            if on_batch is not None:
                on_batch(len(rows))
        return changed

    def bar_counts(
        self, symbols: Iterable[str], timeframe: str, start: dt.date, end: dt.date
    ) -> dict[str, int]:
        begin, stop = day_bounds(start, end)
        with self._cursor() as cur:
            cur.execute(_COUNTS_SQL, (list(symbols), timeframe, begin, stop))
            return {symbol: int(count) for symbol, count in cur.fetchall()}

    def symbols_with_bars(self, timeframe: str, start: dt.date, end: dt.date) -> list[str]:
        begin, stop = day_bounds(start, end)
        with self._cursor() as cur:
            cur.execute(_SYMBOLS_SQL, (timeframe, begin, stop))
            return [symbol for (symbol,) in cur.fetchall()]

    def load(self, symbol: str, timeframe: str, start: dt.date, end: dt.date, warmup: int) -> History:
        begin, stop = day_bounds(start, end)
        params = {"symbol": symbol, "timeframe": timeframe, "begin": begin, "end": stop, "warmup": warmup}
        with self._cursor() as cur:
            cur.execute(_LOAD_SQL, params)
            rows = cur.fetchall()
        data = np.array(rows, dtype=np.float64).reshape(len(rows), 6)
        times = data[:, 0].astype(np.int64)
        first = int(np.searchsorted(times, begin))
        o, h, low, c, v = (np.ascontiguousarray(data[:, i]) for i in range(1, 6))
        return History(symbol, times, o, h, low, c, v, first=first)


def _rows(series: Series, lo: int, hi: int) -> list[tuple[Any, ...]]:
    columns = (series.times, series.open, series.high, series.low, series.close, series.volume)
    return [
        (series.symbol, series.timeframe, t, o, h, low, c, v)
        for t, o, h, low, c, v in zip(*(col[lo:hi].tolist() for col in columns), strict=True)
    ]
