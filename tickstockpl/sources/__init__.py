"""Market-data sources. Each yields batches of closed bars (one batch per bar boundary, oldest first)
and counts what it could not even parse; the engine does every other check, for all sources alike."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from tickstockpl.bars import Bar

if TYPE_CHECKING:
    from tickstockpl.settings import Settings


class BarSource(Protocol):
    """The one interface the detector knows."""

    rejected: Counter[str]  # bars the source dropped before they were bars (missing fields, ...)

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        """Closed bars, grouped by boundary; returns when the data ends or `stop` is set."""
        ...

    def close(self) -> None:
        """Release connections; safe to call twice."""
        ...


# A source may also offer `history(stop) -> Iterator[list[Bar]]`: bars from before its live feed,
# which the detector's engine learns from (`TimeframeEngine.warm`) and never publishes.


def build_source(settings: Settings) -> BarSource:
    """The source the settings name (TICKSTOCKPL_SOURCE), cut to the detector's shard."""
    shard = settings.shard
    if settings.source == "ticks":
        from tickstockpl.sources.ticks import TickFeedSource

        return TickFeedSource(settings, shard=shard)
    if settings.source == "massive":
        from tickstockpl.sources.massive import MassiveSource

        return MassiveSource(settings, shard=shard)
    source: BarSource
    if settings.source == "csv":
        from tickstockpl.sources.csv_replay import CsvReplaySource

        source = CsvReplaySource(settings.csv_files, speed=settings.speed)
    else:
        from tickstockpl.patterns.sessions import SessionCalendar
        from tickstockpl.sources.synthetic import SyntheticSource

        on_sessions = settings.synthetic_clock == "sessions"
        source = SyntheticSource(
            settings.symbols,
            seed=settings.synthetic_seed,
            bar_seconds=settings.bar_seconds,
            speed=settings.speed,
            lookback_s=settings.synthetic_lookback_s,
            sessions=SessionCalendar(settings.session_calendar) if on_sessions else None,
            history=settings.synthetic_history,
        )
    if not shard.sharded:
        return source
    from tickstockpl.sources.sharded import ShardedSource

    return ShardedSource(source, shard)
