"""A source cut down to one detector shard's symbols (tickstockpl/sharding.py).

For the sources that must read everything to yield anything: the synthetic market steps every symbol
with one random generator (a shard that generated only its own symbols would see other prices), and
a CSV replay reads whole files. The tick feed and Massive filter earlier, before a bar is built
(sources/ticks.py, sources/massive.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

from tickstockpl.bars import Bar
from tickstockpl.sharding import Shard
from tickstockpl.sources import BarSource


class ShardedSource:
    """`inner`'s batches with only the bars `shard` owns; every batch is passed on, even emptied,
    so the detector counts the source's rejects as it goes."""

    def __init__(self, inner: BarSource, shard: Shard) -> None:
        self.inner = inner
        self.shard = shard
        # Rows the source refused before they were bars have no owner: shard 0 counts them.
        self.rejected: Counter[str] = inner.rejected if shard.counts_unowned else Counter()

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        owns = self.shard.owns
        for batch in self.inner.batches(stop):
            yield [bar for bar in batch if owns(bar.symbol)]

    def history(self, stop: threading.Event) -> Iterator[list[Bar]]:
        """The inner source's history (bars the engine learns from before the live feed), if it has
        one, cut to the shard as its live bars are."""
        inner_history = getattr(self.inner, "history", None)
        if inner_history is None:
            return
        owns = self.shard.owns
        for batch in inner_history(stop):
            yield [bar for bar in batch if owns(bar.symbol)]

    def close(self) -> None:
        self.inner.close()
