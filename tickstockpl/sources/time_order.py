"""Many bar files as one feed in time order, in memory bounded by the number of symbols, not of bars.

A file need not be in time order: Massive's flat files, and most exports, list one symbol after
another. So each file is read once, chunk by chunk (bar_files.py); each chunk is sorted by bar start
and spilled to a temporary file as a fixed-width binary run (52 bytes a bar). The runs, of every file,
are then merged with a heap, exactly like `heapq.merge` over per-run iterators of boundaries, except
that a file or a run takes a place in the heap before it is opened, keyed by its first bar's start:
a file is read, and a run loaded, only when the feed reaches it. A year of daily flat files therefore
holds one day's runs at a time, and a file already in time order (its runs one after another) holds
one run's block at a time. What stays in memory: the symbol table, one block of each run the feed is
in, and the engine's windows (one row per series).

A file whose first bar is not its earliest (a later symbol starts earlier) can hand the feed a few
bars older than ones already sent when files overlap in time; `late` counts them (the engine still
judges each series in order, and rejects a bar older than its series' last as out_of_order).
"""

from __future__ import annotations

import heapq
import itertools
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from tickstockpl.bars import Bar
from tickstockpl.sources.bar_files import CHUNK_ROWS, Chunk, ChunkReader, first_bar_start, infer_timeframe

RUN_DTYPE = np.dtype(
    [("start", "<i8"), ("symbol", "<i4")] + [(name, "<f8") for name in ("o", "h", "l", "c", "v")]
)
IN_FLIGHT_ROWS = 262_144  # bars loaded at once across the runs of the open files (as Bars, ~70 MB)
MIN_BLOCK_ROWS = 128


class Symbols:
    """Symbol <-> int32 code, shared by every file of a feed (grows with the number of symbols)."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []
        self._array: npt.NDArray[np.object_] = np.empty(0, dtype=object)

    def encode(self, chunk: Chunk) -> npt.NDArray[np.int32]:
        """The chunk's symbol codes in this (shared) table."""
        table = np.fromiter((self._code(name) for name in chunk.names), np.int32, len(chunk.names))
        return table[chunk.codes]

    def _code(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code

    def decode(self, codes: npt.NDArray[np.int32]) -> list[str]:
        if len(self._array) != len(self.names):
            self._array = np.array(self.names, dtype=object)
        decoded: list[str] = self._array[codes].tolist()
        return decoded


@dataclass
class Run:
    """One sorted chunk of one file, spilled: rows [offset, offset + count) of the file's spill."""

    file: SpilledFile
    offset: int
    count: int
    first_start: int


@dataclass
class SpilledFile:
    """One input file: its first bar's start (known cheaply), then, once opened, its sorted runs."""

    path: Path
    timeframe: int | None  # None: inferred from the file's first chunk
    rejected: Counter[str]
    rows: int = 0  # bars in the runs
    rows_read: int = 0  # data rows, rejected ones included
    size: int = 0
    runs: list[Run] = field(default_factory=list)
    unfinished: int = 0  # runs not read to their end: the spill goes when none is left
    spill: IO[bytes] | None = None

    def peek(self) -> int | None:
        """The first parseable bar's start, from the file's first few rows (None: no bar at all)."""
        self.size = self.path.stat().st_size
        return first_bar_start(self.path)

    def open(self, symbols: Symbols, directory: str) -> list[Run]:
        """Read the whole file once: each chunk sorted by start, written as a run to the spill."""
        reader = ChunkReader(self.path, self.rejected, rows=CHUNK_ROWS)
        self.runs, self.rows = [], 0
        self.spill = tempfile.TemporaryFile(dir=directory, prefix="replay-")
        for chunk in reader:
            if self.timeframe is None:
                self.timeframe = infer_timeframe(chunk)
            self._write(chunk, symbols)
        self.rows_read = reader.rows_read
        self.unfinished = len(self.runs)
        return self.runs

    def _write(self, chunk: Chunk, symbols: Symbols) -> None:
        order = np.argsort(chunk.starts, kind="stable")
        block = np.empty(len(chunk), dtype=RUN_DTYPE)
        block["start"] = chunk.starts[order]
        block["symbol"] = symbols.encode(chunk)[order]
        for index, name in enumerate(("o", "h", "l", "c", "v")):
            block[name] = chunk.values[index][order]
        assert self.spill is not None
        block.tofile(self.spill)
        self.runs.append(Run(self, self.rows, len(block), int(block["start"][0])))
        self.rows += len(block)

    def read(self, offset: int, count: int) -> npt.NDArray[Any]:
        assert self.spill is not None
        self.spill.seek(offset * RUN_DTYPE.itemsize)
        return np.fromfile(self.spill, dtype=RUN_DTYPE, count=count)

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()
            self.spill = None


Boundary = tuple[int, list[Bar]]  # (close time, the bars closing then)


class TimeOrderedFeed:
    """Boundaries (close time, bars) of many files in time order; see the module's docstring."""

    def __init__(
        self,
        paths: Sequence[Path],
        timeframe: int | None = None,
        rejected: Counter[str] | None = None,
    ) -> None:
        self.rejected: Counter[str] = Counter() if rejected is None else rejected
        self.files = [SpilledFile(path, timeframe, self.rejected) for path in paths]
        self.symbols = Symbols()
        self.late = 0  # bars handed out after later ones (see the module's docstring)
        self.empty: list[Path] = []  # files with no usable row
        # Told, as bars are loaded, how many bytes of the input files they stand for (progress).
        self.on_progress: Callable[[float], None] | None = None
        self._live_runs = 0  # runs of the opened files not yet exhausted: they share IN_FLIGHT_ROWS
        self._firsts: list[tuple[int, SpilledFile]] | None = None

    def prepare(self) -> list[Path]:
        """Check every file's header and find its first bar (cheap: a few rows each); return the files
        with no usable row at all (their rejects counted). Raises ValueError for an unknown header."""
        if self._firsts is None:
            self._firsts = []
            for file in self.files:
                first = file.peek()
                if first is None:
                    file.rows_read = ChunkReader.count_rejects(file.path, self.rejected)
                    self.empty.append(file.path)
                else:
                    self._firsts.append((first, file))
        return self.empty

    def boundaries(self) -> Iterator[Boundary]:
        """Every bar once, one list per close time, oldest first; the spills go when it ends."""
        with tempfile.TemporaryDirectory(prefix="tickstockpl-replay-") as directory:
            try:
                yield from self._merge(directory)
            finally:
                for file in self.files:
                    file.close()

    def _first_bars(self) -> list[tuple[int, SpilledFile]]:
        self.prepare()
        assert self._firsts is not None
        return self._firsts

    def _merge(self, directory: str) -> Iterator[Boundary]:
        order = itertools.count()
        heap: list[tuple[int, int, Any]] = [(first, next(order), file) for first, file in self._first_bars()]
        heapq.heapify(heap)
        pending_close, pending, last_close = -1, list[Bar](), -(2**62)
        while heap:
            key, _, item = heap[0]
            if isinstance(item, SpilledFile):
                heapq.heappop(heap)
                runs = item.open(self.symbols, directory)
                self._live_runs += len(runs)
                for run in runs:
                    heapq.heappush(heap, (run.first_start + (item.timeframe or 60), next(order), run))
                continue
            if isinstance(item, Run):
                self._advance(heap, self._run_boundaries(item), next(order))
                continue
            boundaries, bars = item
            self._advance(heap, boundaries, next(order))
            if key != pending_close and pending:
                yield pending_close, pending
                pending = []
            if key < last_close:
                self.late += len(bars)
            last_close = max(last_close, key)
            pending_close = key
            if pending:
                pending.extend(bars)  # lists the runs made for this boundary alone
            else:
                pending = bars
        if pending:
            yield pending_close, pending

    def _advance(self, heap: list[tuple[int, int, Any]], boundaries: Iterator[Boundary], order: int) -> None:
        """Replace the heap's top with the run's next boundary, or drop it when the run is done."""
        following = next(boundaries, None)
        if following is None:
            self._live_runs -= 1
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following[0], order, (boundaries, following[1])))

    def _run_boundaries(self, run: Run) -> Iterator[Boundary]:
        """One run's bars grouped by close time, read a block at a time (the last group of a block
        waits for the next block, which may continue it)."""
        file, timeframe = run.file, run.file.timeframe or 60
        done, carry_close, carry = 0, -1, list[Bar]()
        while done < run.count:
            size = max(MIN_BLOCK_ROWS, IN_FLIGHT_ROWS // max(1, self._live_runs))
            block = file.read(run.offset + done, min(size, run.count - done))
            done += len(block)
            closes = block["start"] + timeframe
            fields = zip(
                self.symbols.decode(block["symbol"]),
                itertools.repeat(timeframe, len(block)),
                block["start"].tolist(),
                *(block[name].tolist() for name in ("o", "h", "l", "c", "v")),
                strict=False,
            )
            # tuple.__new__ straight from C: what Bar(...) does, without a Python call per bar
            bars: list[Bar] = list(map(tuple.__new__, itertools.repeat(Bar), fields))
            if self.on_progress is not None:
                self.on_progress(file.size * len(bars) / max(1, file.rows))
            cuts = (np.flatnonzero(closes[1:] != closes[:-1]) + 1).tolist()
            edges = [0, *cuts, len(bars)]
            first_close = int(closes[0])
            if carry and first_close != carry_close:
                yield carry_close, carry
                carry = []
            for lo, hi in itertools.pairwise(edges[:-1]):
                group = bars[lo:hi]
                if carry:
                    group, carry = carry + group, []
                yield int(closes[lo]), group
            lo = edges[-2]
            carry = carry + bars[lo:] if carry else bars[lo:]
            carry_close = int(closes[lo])
        if carry:
            yield carry_close, carry
        file.unfinished -= 1
        if not file.unfinished:
            file.close()  # a year of daily files keeps one day's spill on disk, not the year's
