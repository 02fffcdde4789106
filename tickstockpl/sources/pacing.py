"""Wall-clock pacing shared by the replaying sources: real time, N times faster, or flat out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Waits until a data timestamp is due: `speed` 1 = real time, 60 = a minute per second, 0 = no wait.

    Waiting is `stop.wait`, so a stop request cuts the wait short instead of sleeping through it.
    """

    def __init__(self, speed: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.speed = speed
        self._clock = clock
        self._origin: tuple[float, float] | None = None  # (data time, wall time) of the first bar

    def wait_until(self, data_time: float, stop: threading.Event) -> bool:
        """Block until `data_time` is due; False when stopped first."""
        if stop.is_set():
            return False
        if self.speed <= 0:
            return True
        if self._origin is None:
            self._origin = (data_time, self._clock())
            return True
        first_data, first_wall = self._origin
        delay = first_wall + (data_time - first_data) / self.speed - self._clock()
        return not (delay > 0 and stop.wait(delay))
