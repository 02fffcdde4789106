"""One capped, jittered exponential backoff, used for Redis and PostgreSQL alike.

Logs each state change once ("Redis down, retrying" / "Redis back after N s"), not every attempt.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Delays of base * 2**n with full jitter, capped; `reset()` on success."""

    what: str  # "Redis", "PostgreSQL": named in the log lines
    base_s: float = 0.1
    cap_s: float = 10.0
    attempts: int = 0
    down_since: float | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def failed(self, reason: object) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning(
                "%s unavailable (%s); retrying with backoff up to %.0f s", self.what, reason, self.cap_s
            )
        delay = self._rng.uniform(0, min(self.cap_s, self.base_s * 2**self.attempts))
        self.attempts = min(self.attempts + 1, 30)
        return max(delay, self.base_s / 2)

    def succeeded(self) -> None:
        """Record a success; logs the recovery once."""
        if self.down_since is not None:
            log.warning("%s available again after %.1f s", self.what, time.monotonic() - self.down_since)
        self.down_since = None
        self.attempts = 0
