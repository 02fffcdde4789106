"""Wall-clock pacing shared by the replaying sources: real time, N times faster, or flat out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Waits until a data timestamp is due: `speed` 1 = real time, 60 = a minute per second, 0 = no wait.

    Waiting is `stop.wait`, so a stop request cuts the wait short instead of sleeping through it.
    With `wall_clock` (epoch seconds, e.g. `time.time`) a data time is also never due before that
    clock reaches it, whatever the speed: a source whose bars look live must not stamp them in the
    future. Ahead of the clock it runs at `speed`; once it has caught up, at real time.
    """

    def __init__(
        self,
        speed: float,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.speed = speed
        self._clock = clock
        self._wall_clock = wall_clock
        self._origin: tuple[float, float] | None = None  # (data time, wall time) of the first bar

    def wait_until(self, data_time: float, stop: threading.Event) -> bool:
        """Block until `data_time` is due; False when stopped first."""
        if stop.is_set():
            return False
        if self.speed > 0:
            if self._origin is None:
                self._origin = (data_time, self._clock())
            else:
                first_data, first_wall = self._origin
                delay = first_wall + (data_time - first_data) / self.speed - self._clock()
                if delay > 0 and stop.wait(delay):
                    return False
        return self._not_before_wall_clock(data_time, stop)

    def _not_before_wall_clock(self, data_time: float, stop: threading.Event) -> bool:
        """Wait until the wall clock reaches `data_time` (again if it was stepped back meanwhile)."""
        if self._wall_clock is None:
            return True
        while (ahead := data_time - self._wall_clock()) > 0:
            if stop.wait(ahead):
                return False
        return True
