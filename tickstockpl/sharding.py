"""Which detector shard owns a symbol: the one rule every detector process, on every host, agrees on.

A symbol belongs to shard `blake2b-64(UTF-8 symbol) mod count`. BLAKE2b (hashlib, in every Python)
gives the same answer on every machine, in every Python version and after every restart, unlike
`hash()`, which is salted per process. Changing this function moves symbols between shards: every
host of one deployment must run the same version (a symbol owned twice is detected twice; one owned
by no shard, never).

Shards split the symbols, not the work of one symbol: a symbol's bars all go to one process, so its
rolling windows, and so its patterns, are exactly those of a single detector (the shard-equivalence
test, tests/integration/test_detector_shards.py). Input that names no symbol we could read (a
malformed tick, an unparseable CSV row) belongs to no shard; shard 0 counts it, so that every
reject is counted once however many shards see it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

DETECTOR_PROGRAM: Final = "detector"  # supervisord.conf's [program:detector]
_CACHE_MAX: Final = 100_000  # symbols remembered per shard before the cache starts over


def shard_of(symbol: str, count: int) -> int:
    """The shard (0 .. count-1) that owns `symbol`."""
    digest = hashlib.blake2b(symbol.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def detector_process(index: int) -> str:
    """supervisord's name for the detector of shard `index` (process_name in supervisord.conf)."""
    return f"{DETECTOR_PROGRAM}-{index}"


@dataclass(frozen=True)
class Shard:
    """One detector's share of the market: shard `index` of `count`."""

    index: int = 0
    count: int = 1
    _owned: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: the index must be 0-{self.count - 1}")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    @property
    def counts_unowned(self) -> bool:
        """Whether this shard counts the input no shard owns (rejected before its symbol was known)."""
        return self.index == 0

    def owns(self, symbol: str) -> bool:
        """Whether this shard detects `symbol` (memoised: called once per bar or tick)."""
        owned = self._owned.get(symbol)
        if owned is None:
            if len(self._owned) >= _CACHE_MAX:
                self._owned.clear()
            owned = self._owned[symbol] = self.count == 1 or shard_of(symbol, self.count) == self.index
        return owned

    def __str__(self) -> str:
        return f"shard {self.index} of {self.count}"
