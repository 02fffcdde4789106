"""Bar files on disk: CSV or gzipped CSV, in our layout or Massive's flat-file layout, read in chunks.

Two layouts, recognised by the header (column order free, names case-insensitive):
- ours (data/README.md): `timestamp,symbol,open,high,low,close,volume`; the timestamp is a date
  (a daily bar, taken to start at 00:00 UTC) or ISO 8601 (with an offset; naive means UTC);
- Massive's flat files (minute or day aggregates, one gzipped file per day for the whole market):
  `ticker,volume,open,close,high,low,window_start,transactions`; window_start in ns since the epoch.

A chunk is numpy columns, parsed by pandas' C reader, so a file of millions of rows costs a fraction of
a microsecond a row and a chunk's worth of memory, whatever the file's size. Rows that cannot be bars
are counted by reason (`MALFORMED_ROW`, `MISSING_FIELD`, `BAD_TIMESTAMP`, `BAD_SYMBOL`), never raised;
the value checks (prices, order, duplicates) stay with whoever consumes the bars (the engine, or
load-history's `check_arrays`), as for every other source.
"""

from __future__ import annotations

import csv
import glob
import gzip
import re
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from tickstockpl.bars import BAD_SYMBOL, DAY_SECONDS, MISSING_FIELD
from tickstockpl.contract import MAX_SYMBOL_LEN
from tickstockpl.inbound import BAD_TIMESTAMP

MALFORMED_ROW = "malformed_row"  # a line with more fields than the header (its fields are not guessed)
CHUNK_ROWS = 65_536
SUFFIXES = (".csv", ".csv.gz")
_GZIP_MAGIC = b"\x1f\x8b"
_VALUE_FIELDS = ("open", "high", "low", "close", "volume")
_SKIPPED = re.compile(r"Skipping line \d+")
_NS = 1_000_000_000
UNREADABLE = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError, OSError, EOFError, zlib.error)


class Layout(NamedTuple):
    """Which columns of a file hold the symbol, the bar's start and the values."""

    name: str
    symbol: str
    time: str
    values: tuple[str, str, str, str, str]  # open, high, low, close, volume
    header: str  # as the files usually spell it, for messages

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.symbol, self.time, *self.values)


PLAIN = Layout("plain", "symbol", "timestamp", _VALUE_FIELDS, "timestamp,symbol,open,high,low,close,volume")
MASSIVE = Layout(
    "massive", "ticker", "window_start", _VALUE_FIELDS, "ticker,volume,open,close,high,low,window_start"
)
LAYOUTS = (PLAIN, MASSIVE)


class Chunk(NamedTuple):
    """Rows of one file that parsed as bars: symbols (as codes into `names`), starts (epoch s), values."""

    codes: npt.NDArray[np.intp]  # per row, an index into names
    names: list[str]  # the chunk's distinct symbols
    starts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # shape (5, n): open, high, low, close, volume
    date_only: bool  # every timestamp was a bare date (ours): daily bars, whatever the gaps

    def __len__(self) -> int:
        return len(self.starts)


def expand(specs: Iterable[str | Path]) -> list[Path]:
    """Files named by paths, directories (their *.csv and *.csv.gz) and globs, each once, in order given
    (a directory's or glob's files sorted by name). FileNotFoundError for anything that names none."""
    found: dict[Path, None] = {}
    for spec in specs:
        text = str(spec)
        path = Path(text)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        elif path.is_file():
            matches = [path]
        else:
            raise FileNotFoundError(f"no such file: {text}")
        if not matches:
            raise FileNotFoundError(f"no .csv or .csv.gz file in {text}")
        found.update(dict.fromkeys(matches))
    return list(found)


def is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == _GZIP_MAGIC


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed if it is gzip (known by its magic number, not its name)."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a GzipFile reads like IO[bytes]
    return path.open("rb")


def layout_of(path: Path) -> tuple[Layout, dict[str, str]]:
    """The layout its header names, and each of its columns' name as spelt in the file; ValueError
    (saying what was expected) for any other header."""
    try:
        with open_binary(path) as handle:
            first = handle.readline(4096).decode("utf-8", "replace")
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"{path}: unreadable: {exc}") from None
    spelt = {name.strip().lower(): name for name in next(csv.reader([first]), [])}
    for layout in LAYOUTS:
        if set(layout.columns) <= set(spelt):
            return layout, {column: spelt[column] for column in layout.columns}
    expected = " or ".join(layout.header for layout in LAYOUTS)
    raise ValueError(f"{path}: header {first.strip()[:200]!r} has not the columns {expected}")


def parse_timestamp(text: str) -> int | None:
    """Epoch seconds of a date (00:00 UTC) or an ISO 8601 time; None if unreadable."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except (ValueError, TypeError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


class ChunkReader:
    """One file's rows as Chunks of at most `rows` rows; rejects counted in `rejected` as it goes."""

    def __init__(self, path: Path, rejected: Counter[str], rows: int = CHUNK_ROWS) -> None:
        self.path = path
        self.layout, self._spelt = layout_of(path)
        self.rejected = rejected
        self.rows = rows
        self.rows_read = 0  # data rows seen, rejected ones included
        self._raw: IO[bytes] | None = None
        self._times: dict[str, int | None] = {}  # timestamp text -> epoch s: a boundary repeats it per symbol

    @property
    def position(self) -> int:
        """Bytes of the file on disk read so far (compressed, for gzip): for progress."""
        return self._raw.tell() if self._raw is not None and not self._raw.closed else 0

    def __iter__(self) -> Iterator[Chunk]:
        text_columns = [self.layout.symbol] + ([PLAIN.time] if self.layout is PLAIN else [])
        try:
            with self.path.open("rb") as raw:
                self._raw = raw
                stream: IO[bytes] = raw
                if is_gzip(self.path):
                    stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
                reader = pd.read_csv(
                    stream,
                    usecols=list(self._spelt.values()),
                    chunksize=self.rows,
                    dtype={self._spelt[name]: object for name in text_columns},
                    na_filter=False,
                    on_bad_lines="warn",
                    encoding="utf-8",
                    encoding_errors="replace",
                    engine="c",
                )
                with reader:
                    yield from self._chunks(reader)
        except UNREADABLE as exc:  # a broken gzip stream, an unclosed quote, a file that vanished
            raise ValueError(f"{self.path}: unreadable after {self.rows_read:,} rows: {exc}") from None

    def _chunks(self, reader: Iterator[pd.DataFrame]) -> Iterator[Chunk]:
        while True:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                frame = next(reader, None)
            skipped = sum(len(_SKIPPED.findall(str(w.message))) for w in caught)
            if skipped:
                self.rejected[MALFORMED_ROW] += skipped
                self.rows_read += skipped
            if frame is None:
                return
            frame.columns = [name.strip().lower() for name in frame.columns]
            self.rows_read += len(frame)
            chunk = self._chunk(frame)
            if len(chunk):
                yield chunk

    @classmethod
    def count_rejects(cls, path: Path, rejected: Counter[str]) -> int:
        """Read a file only to count its rows and rejects (one with no usable row); rows read."""
        reader = cls(path, rejected)
        for _ in reader:
            pass
        return reader.rows_read

    def _chunk(self, frame: pd.DataFrame) -> Chunk:
        values = np.vstack([_numbers(frame[name]) for name in self.layout.values])
        starts, bad_time, date_only = self._starts(frame[self.layout.time])
        codes, uniques = pd.factorize(frame[self.layout.symbol].to_numpy(dtype=object))
        names = [_symbol(text) for text in uniques]
        # Per distinct symbol (and a last entry for code -1, which needs NA detection: never): unusable?
        empty = np.array([not name for name in names] + [True], dtype=bool)[codes]
        too_long = np.array([len(name) > MAX_SYMBOL_LEN for name in names] + [False], dtype=bool)[codes]
        missing = np.isnan(values).any(axis=0) | empty
        bad_symbol = too_long & ~missing
        bad_time &= ~missing & ~bad_symbol
        for reason, mask in ((MISSING_FIELD, missing), (BAD_SYMBOL, bad_symbol), (BAD_TIMESTAMP, bad_time)):
            if mask.any():
                self.rejected[reason] += int(mask.sum())
        keep = ~(missing | bad_symbol | bad_time)
        if keep.all():
            return Chunk(codes, names, starts, values, date_only)
        return Chunk(codes[keep], names, starts[keep], values[:, keep], date_only)

    def _starts(self, column: pd.Series) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], bool]:
        """Epoch seconds per row, which rows' times are unusable, and whether all were bare dates."""
        if self.layout is MASSIVE:
            nanoseconds = column.to_numpy()
            if nanoseconds.dtype != np.int64:
                as_float = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
                bad = ~np.isfinite(as_float) | (np.abs(as_float) > 9e18)
                nanoseconds = np.where(bad, 0, as_float).astype(np.int64)
            else:
                bad = np.zeros(len(column), dtype=bool)
            starts = nanoseconds // _NS
            date_only = False
        else:
            codes, uniques = pd.factorize(column.to_numpy(dtype=object))
            if len(self._times) > 1_000_000:
                self._times.clear()  # a bounded cache: a file of unique times gains nothing from it
            epochs = [self._epoch(str(text)) for text in uniques]
            known = np.array([-1 if e is None else e for e in epochs] + [-1], dtype=np.int64)
            unreadable = np.array([e is None for e in epochs] + [True], dtype=bool)
            starts, bad = known[codes], unreadable[codes]
            date_only = all(len(str(text).strip()) == 10 for text in uniques)
        bad |= (starts < 0) | (starts > time.time() + DAY_SECONDS)
        return starts, bad, date_only

    def _epoch(self, text: str) -> int | None:
        epoch = self._times.get(text, -1)
        if epoch == -1:
            epoch = self._times[text] = parse_timestamp(text)
        return epoch


def _numbers(column: pd.Series) -> npt.NDArray[np.float64]:
    """A column as float64; anything that is not a number (empty, text) is NaN."""
    if column.dtype.kind in "if":
        return column.to_numpy(dtype=np.float64)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _symbol(text: object) -> str:
    """The symbol as written, stripped; "" if it is not text (NUL bytes included)."""
    if not isinstance(text, str) or "\x00" in text:
        return ""
    return text.strip()


def infer_timeframe(chunk: Chunk) -> int:
    """Bar length in seconds from a file's first chunk: the smallest gap between two bars of one symbol,
    capped at a day (any gap of a day or more means daily bars: a sparse daily file has no two
    consecutive days); bare dates are daily; with no gap to go by, a minute."""
    if chunk.date_only:
        return DAY_SECONDS
    order = np.lexsort((chunk.starts, chunk.codes))
    starts, codes = chunk.starts[order], chunk.codes[order]
    gaps = np.diff(starts)[(codes[1:] == codes[:-1]) & (np.diff(starts) > 0)]
    return int(min(gaps.min(), DAY_SECONDS)) if len(gaps) else 60


def first_bar_start(path: Path) -> int | None:
    """The start of the file's first usable row, from its first rows (None: the file has none). Checks
    the header on the way (ValueError)."""
    for chunk in ChunkReader(path, Counter(), rows=64):
        return int(chunk.starts[0])
    return None


def sizes(paths: Sequence[Path]) -> int:
    """Total bytes on disk (compressed, for gzip): the measure progress is shown in."""
    return sum(path.stat().st_size for path in paths)
