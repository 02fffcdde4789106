"""`historical_bars` loaded at the database's speed: binary COPY into a staging table, then one
set-based upsert per batch of rows.

The file is read in chunks (sources/bar_files.py: ours or Massive's flat files, plain or gzip), each
chunk checked with the detector's own `check_arrays` and copied in PostgreSQL's binary COPY format,
built by numpy in one go: no row becomes a Python object. The staging tables are TEMP tables (the
loading role needs TEMPORARY on the database, which db/init.sql grants app_readwrite), so they need
no DDL rights, leave nothing behind and write no WAL. Every `flush_rows` rows (and at the end of a
file) one statement moves them into historical_bars:
- the same idempotency as before: keyed by (symbol, timeframe, bar_start), a row whose values are
  unchanged is not touched, a changed one is updated in place, and loading a file twice changes
  nothing;
- a bar given twice in one batch is written once, the last one read winning (counted `duplicate`).
Memory is a chunk's worth on our side, whatever the file's size.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tickstockpl.bars import BAD_SYMBOL, DUPLICATE, REASONS, check_arrays, timeframe_label
from tickstockpl.contract import MAX_SYMBOL_LEN
from tickstockpl.errors import AuditConfigError, AuditDataError, PostgresUnavailable
from tickstockpl.settings import Settings
from tickstockpl.sources.bar_files import Chunk, ChunkReader, infer_timeframe
from tickstockpl.stores import (
    PgConnection,
    PgCursor,
    close_quietly,
    copy_from,
    execute_values,
    postgres_connection,
    postgres_errors,
)

FLUSH_ROWS = 1_000_000  # staged rows per upsert: one sort and one statement for that many
_POSTGRES_EPOCH = 946_684_800  # 2000-01-01 UTC, where binary timestamptz counts microseconds from
_STAGING = "tickstockpl_staging_bars"
_SYMBOLS = "tickstockpl_staging_symbols"
_SETUP_SQL = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (
    symbol INTEGER NOT NULL, bar_start TIMESTAMPTZ NOT NULL,
    open DOUBLE PRECISION NOT NULL, high DOUBLE PRECISION NOT NULL, low DOUBLE PRECISION NOT NULL,
    close DOUBLE PRECISION NOT NULL, volume DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {_SYMBOLS} (code INTEGER PRIMARY KEY, symbol VARCHAR(20) NOT NULL);
TRUNCATE {_SYMBOLS};
"""
_COPY_SQL = f"COPY {_STAGING} FROM STDIN (FORMAT binary)"
# The newest row per key wins (seq); one statement reports the distinct keys and the rows written.
_UPSERT_SQL = f"""
WITH latest AS (
    SELECT DISTINCT ON (symbol, bar_start) symbol, bar_start, open, high, low, close, volume
    FROM {_STAGING} ORDER BY symbol, bar_start, seq DESC
), written AS (
    INSERT INTO historical_bars (symbol, timeframe, bar_start, open, high, low, close, volume)
    SELECT s.symbol, %(timeframe)s, l.bar_start, l.open, l.high, l.low, l.close, l.volume
    FROM latest l JOIN {_SYMBOLS} s ON s.code = l.symbol
    ON CONFLICT (symbol, timeframe, bar_start) DO UPDATE
    SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
        close = EXCLUDED.close, volume = EXCLUDED.volume
    WHERE (historical_bars.open, historical_bars.high, historical_bars.low, historical_bars.close,
           historical_bars.volume)
          IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume)
    RETURNING 1
)
SELECT (SELECT count(*) FROM {_STAGING}), (SELECT count(*) FROM latest), (SELECT count(*) FROM written)
"""
# PostgreSQL's binary COPY: a signature, flags and extension length; per row a field count and, per
# field, its length and big-endian value; a trailer of -1.
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
_FIELDS = (("symbol", ">i4"), ("bar_start", ">i8")) + tuple(
    (name, ">f8") for name in ("open", "high", "low", "close", "volume")
)
_ROW = np.dtype(
    [("fields", ">i2")]
    + [item for name, kind in (*_FIELDS, ("seq", ">i8")) for item in ((f"{name}_len", ">i4"), (name, kind))]
)


@dataclass
class FileLoad:
    """What loading one file did."""

    path: Path
    timeframe: str = ""
    rows: int = 0  # data rows read
    bars: int = 0  # distinct bars written or found unchanged
    changed: int = 0  # rows inserted or updated
    symbols: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class HistoryLoader:
    """One connection, the TEMP staging tables, and the per-file load loop."""

    def __init__(self, settings: Settings, flush_rows: int = FLUSH_ROWS) -> None:
        self._settings = settings
        self._flush_rows = flush_rows
        self._conn: PgConnection | None = None
        self._codes: dict[str, int] = {}  # symbol -> code in the staging symbols table
        self._new_symbols: list[tuple[int, str]] = []
        self._seq = 0

    def close(self) -> None:
        close_quietly(self._conn)
        self._conn = None

    def _connection(self) -> PgConnection:
        if self._conn is None or self._conn.closed:
            # No statement timeout: one upsert may move a million rows.
            self._conn = postgres_connection(self._settings, autocommit=False, statement_timeout_ms=0)
            self._codes, self._new_symbols = {}, []
            with postgres_errors(), self._conn, self._conn.cursor() as cur:
                cur.execute(_SETUP_SQL)
        return self._conn

    def load(
        self, path: Path, timeframe: int | None = None, on_progress: Callable[[int], None] | None = None
    ) -> FileLoad:
        """Load one file; `on_progress` is told the bytes of it read so far."""
        done = FileLoad(path)
        reader = ChunkReader(path, done.rejected)
        conn = self._connection()
        seen: set[int] = set()
        staged = 0
        try:
            with postgres_errors():
                cur = conn.cursor()
                for chunk in reader:
                    if not done.timeframe:
                        done.timeframe = timeframe_label(timeframe or infer_timeframe(chunk))
                    payload, count, codes = self._binary(chunk, done.rejected)
                    seen.update(codes)
                    self._stage_symbols(cur)
                    copy_from(cur, _COPY_SQL, io.BytesIO(payload))
                    staged += count
                    if staged >= self._flush_rows:
                        self._upsert(cur, done)
                        conn.commit()
                        staged = 0
                    if on_progress is not None:
                        on_progress(reader.position)
                if staged:
                    self._upsert(cur, done)
                conn.commit()
        except (PostgresUnavailable, AuditConfigError, AuditDataError):
            self.close()
            raise
        done.rows, done.symbols = reader.rows_read, len(seen)
        return done

    def _binary(self, chunk: Chunk, rejected: Counter[str]) -> tuple[bytes, int, set[int]]:
        """The chunk's valid bars as binary COPY data, how many, and their symbol codes."""
        names = [name.upper() for name in chunk.names]  # historical_bars keeps symbols upper-case
        too_long = np.array([len(name) > MAX_SYMBOL_LEN for name in names], dtype=bool)[chunk.codes]
        reasons = check_arrays(*chunk.values)
        reasons[(reasons == 0) & too_long] = REASONS.index(BAD_SYMBOL) + 1
        for code, count in zip(*np.unique(reasons[reasons > 0], return_counts=True), strict=True):
            rejected[REASONS[int(code) - 1]] += int(count)
        keep = np.flatnonzero(reasons == 0)
        used = np.unique(chunk.codes[keep]).tolist()  # symbols of rejected rows are never staged
        table = np.zeros(len(names), dtype=np.int32)
        table[used] = [self._code(names[index]) for index in used]
        codes = table[chunk.codes[keep]]
        rows = np.empty(len(keep), dtype=_ROW)
        rows["fields"] = len(_FIELDS) + 1
        for name, kind in _FIELDS:
            rows[f"{name}_len"] = np.dtype(kind).itemsize
        rows["seq_len"] = 8
        rows["symbol"] = codes
        rows["bar_start"] = (chunk.starts[keep] - _POSTGRES_EPOCH) * 1_000_000
        for index, name in enumerate(("open", "high", "low", "close", "volume")):
            rows[name] = chunk.values[index][keep]
        rows["seq"] = np.arange(self._seq, self._seq + len(keep))
        self._seq += len(keep)
        return _HEADER + rows.tobytes() + _TRAILER, len(keep), set(np.unique(codes).tolist())

    def _code(self, symbol: str) -> int:
        code = self._codes.get(symbol)
        if code is None:
            code = self._codes[symbol] = len(self._codes)
            self._new_symbols.append((code, symbol))
        return code

    def _stage_symbols(self, cur: PgCursor) -> None:
        if self._new_symbols:
            sql = f"INSERT INTO {_SYMBOLS} (code, symbol) VALUES %s"
            execute_values(cur, sql, self._new_symbols, template="(%s, %s)", page_size=10_000)
            self._new_symbols = []

    def _upsert(self, cur: PgCursor, done: FileLoad) -> None:
        cur.execute("SET LOCAL work_mem = '256MB'")  # the batch's sort, in memory
        cur.execute(_UPSERT_SQL, {"timeframe": done.timeframe})
        counts = cur.fetchone()
        assert counts is not None  # the statement always returns its one row
        staged, distinct, written = counts
        done.bars += int(distinct)
        done.changed += int(written)
        if staged > distinct:
            done.rejected[DUPLICATE] += int(staged - distinct)
