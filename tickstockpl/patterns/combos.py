"""`combo`: one pattern, seen in the same direction on two timeframes, inside the higher one's bar.

When a bar of timeframe H closes with a directional pattern (bullish or bearish; neutral shapes
such as Doji confirm nothing), and the same symbol showed the same pattern in the same direction on
a lower timeframe L (both in the combo timeframes) on a bar that closed inside that H bar (after its
start, at or before its close), the H signal is repeated once as a combo: tier `combo`,
`confirmed_by` L (the highest such L), confidence `1 - (1 - c_H) * (1 - c_L)` (two detections that
agree; c_L the best of that L's signals in the bar). Several timeframes closing together with the
same pattern give one combo, for the highest of them. docs/patterns.md, "combo", has the numbers.

Every detected signal takes part, whatever its confidence: the minimum confidence for publishing
applies to the combo's own confidence, as to any event.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tickstockpl.patterns.sessions import DAY, SessionCalendar
from tickstockpl.patterns.signals import Signal

Key = tuple[str, str, str]  # symbol, pattern, direction


class ComboFinder:
    """Remembers recent directional signals; `find` returns the combos a boundary's signals complete."""

    MAX_KEYS = 200_000  # a feed of ever-new symbols must not grow the memory without bound

    def __init__(self, lengths: Collection[int], calendar: SessionCalendar) -> None:
        self.lengths = frozenset(lengths)
        self.calendar = calendar
        self._recent: dict[Key, list[tuple[int, int, float]]] = {}  # key -> [(length, close, confidence)]
        self._times: dict[tuple[int, int], tuple[int, int]] = {}
        self._latest = 0
        self._pruned_at = 0

    def close_of(self, length: int, start: int) -> int:
        """A bar's close (session-aware, cached: a boundary's bars share their start)."""
        times = self._times.get((length, start))
        if times is None:
            if len(self._times) > 4096:
                self._times.clear()
            times = self._times[(length, start)] = self.calendar.bar_times(length, start)
        return times[0]

    def find(self, signals: Sequence[Signal]) -> list[Signal]:
        """The combos completed by one boundary's signals (all timeframes), in signal order."""
        fresh: dict[Key, list[Signal]] = {}
        for signal in signals:
            if signal.direction != "neutral" and signal.timeframe in self.lengths and not signal.confirmed_by:
                fresh.setdefault((signal.symbol, signal.pattern, signal.direction), []).append(signal)
        combos = []
        for key, group in fresh.items():
            memory = self._recent.setdefault(key, [])
            for signal in group:
                close = self.close_of(signal.timeframe, signal.start)
                memory.append((signal.timeframe, close, signal.confidence))
                self._latest = max(self._latest, close)
            combo = self._best(group, memory)
            if combo is not None:
                combos.append(combo)
        self._prune()
        return combos

    def _best(self, group: list[Signal], memory: list[tuple[int, int, float]]) -> Signal | None:
        """The combo for the highest timeframe in `group` that a lower one confirms inside its bar."""
        for high in sorted(group, key=lambda s: -s.timeframe):
            close = self.close_of(high.timeframe, high.start)
            best: dict[int, float] = {}
            for length, when, confidence in memory:
                if length < high.timeframe and high.start < when <= close:
                    best[length] = max(best.get(length, 0.0), confidence)
            if best:
                lower = max(best)
                confidence = 1.0 - (1.0 - high.confidence) * (1.0 - best[lower])
                return high._replace(confidence=min(1.0, confidence), confirmed_by=lower)
        return None

    def _prune(self) -> None:
        """Forget signals no open bar can still contain (a session is under a day), now and then."""
        if self._latest - self._pruned_at < 3600 and len(self._recent) < self.MAX_KEYS:
            return
        horizon = self._latest - DAY
        for key in list(self._recent):
            kept = [entry for entry in self._recent[key] if entry[1] > horizon]
            if kept:
                self._recent[key] = kept
            else:
                del self._recent[key]
        if len(self._recent) >= self.MAX_KEYS:  # still full (a flood of symbols in one day): start afresh
            self._recent.clear()
        self._pruned_at = self._latest
