"""Replay of bar files (CSV or CSV.gz, ours or Massive's flat files): many files, one feed in time order.

Files, directories and globs (bar_files.expand); each file's layout is known by its header
(bar_files.py) and its bar length, unless given, from its first rows (`infer_timeframe`). The feed
(time_order.py) merges every file in time order with memory bounded by the number of symbols, so a
year of the whole market replays in the same memory as a day.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tickstockpl.bars import Bar
from tickstockpl.sources.bar_files import expand, parse_timestamp
from tickstockpl.sources.pacing import Pacer
from tickstockpl.sources.time_order import TimeOrderedFeed

__all__ = ["CsvReplaySource", "load_csv", "merge_in_time", "parse_timestamp"]


def load_csv(
    path: str | Path, timeframe: int | None = None, rejected: Counter[str] | None = None
) -> list[Bar]:
    """Every usable bar of one (small) file in time order, held in memory: for tests and tools."""
    feed = TimeOrderedFeed([Path(path)], timeframe, rejected)
    return [bar for _, bars in feed.boundaries() for bar in bars]


def merge_in_time(bar_lists: Iterable[list[Bar]]) -> list[Bar]:
    """All bars ordered by close time, then symbol: the order a live feed would deliver them."""
    return sorted(
        (bar for bars in bar_lists for bar in bars), key=lambda b: (b.start + b.timeframe, b.symbol)
    )


class CsvReplaySource:
    """Replays bar files as one time-ordered feed, one batch per bar close time."""

    def __init__(
        self,
        files: Sequence[str | Path],
        speed: float = 0.0,
        timeframe: int | None = None,
    ) -> None:
        if not files:
            raise ValueError("CSV replay needs at least one file (TICKSTOCKPL_CSV_FILES)")
        self.files = expand(files)  # fail at start (misconfigured), not when the replay reaches the file
        for path in self.files:
            with path.open("rb"):
                pass
        self.speed = speed
        self.rejected: Counter[str] = Counter()
        self.feed = TimeOrderedFeed(self.files, timeframe, self.rejected)
        self.feed.prepare()  # every header checked, and files with no usable row found, before any bar

    @property
    def bars(self) -> list[Bar]:
        """The whole feed in memory: for small files and tests (batches() streams)."""
        return [bar for batch in self.batches(threading.Event()) for bar in batch]

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        pacer = Pacer(self.speed)
        for close_time, bars in self.feed.boundaries():
            if not pacer.wait_until(close_time, stop):
                return
            yield bars

    def close(self) -> None:
        return None
