"""The detector process for bench_boundary: `tickstockpl.services.detector` with boundaries released on cue.

    python -m bench.boundary_detector      (settings from the environment, as the service takes them)

It is the supervised detector (`service_main`, `detector.run`: the same loop, engine, event builder,
flusher thread and outbox) with one difference, its source: the synthetic market of the settings
(symbols, seed, bar length; bars starting at 0, as the floor's), one boundary of every symbol's
closed bar per line read on stdin. The bars are made before the line is read, so the line is the
moment the whole boundary becomes available, at once, as at a minute's close; the detector stamps
its events with the time the batch reached it (`data.bar_received_at`). EOF on stdin ends the
source, and the detector exits as at the end of a replay.

Why on cue rather than paced by the clock (TICKSTOCKPL_SPEED): in production boundaries come a
minute apart and each burst meets an idle pipeline. Paced at one a second, a 6,000-event burst on a
loaded 2-core machine is still in flight when the next boundary comes, and the figures measure a
growing queue. On cue, the benchmark releases the warm-up boundaries as fast as the detector takes
them, waits for the pipeline to drain, then releases each measured boundary once the previous burst
is published and the pipeline has idled.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator

from tickstockpl.bars import Bar
from tickstockpl.lifecycle import service_main
from tickstockpl.services import detector
from tickstockpl.settings import Settings
from tickstockpl.sources.synthetic import SyntheticMarket


class ReleasedBoundaries:
    """The settings' synthetic market, one boundary per line on stdin."""

    def __init__(self, settings: Settings) -> None:
        self.market = SyntheticMarket(
            settings.symbols, seed=settings.synthetic_seed, bar_seconds=settings.bar_seconds, start=0
        )
        self.rejected: Counter[str] = Counter()

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        while not stop.is_set():
            bars = self.market.step()
            if not sys.stdin.buffer.readline():
                return
            yield bars

    def close(self) -> None:
        return None


def run(settings: Settings, stop: threading.Event) -> int:
    return detector.run(settings, stop, source=ReleasedBoundaries(settings))


if __name__ == "__main__":
    sys.exit(service_main("detector", run))
