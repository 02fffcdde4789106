"""The synthetic market: deterministic given a seed, valid bars, and every pattern fires now and then."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np

from tests.unit.test_bars import check_bar
from tickstockpl.patterns import PatternSet, history_signals
from tickstockpl.sources.synthetic import SyntheticMarket, SyntheticSource


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    one = [SyntheticMarket(["A", "B"], seed=3, start=600).step() for _ in range(1)]
    a, b, c = (SyntheticMarket(["A", "B"], seed=s, start=600) for s in (3, 3, 4))
    run_a = [a.step() for _ in range(200)]
    assert run_a == [b.step() for _ in range(200)]
    assert run_a != [c.step() for _ in range(200)]
    assert one[0] == run_a[0]
    assert [bar.start for bar in run_a[1]] == [660, 660]


def test_bars_are_valid_and_every_pattern_fires() -> None:
    market = SyntheticMarket([f"S{i}" for i in range(5)], seed=7, start=0)
    boundaries = [market.step() for _ in range(4000)]
    assert {check_bar(bar) for boundary in boundaries for bar in boundary} == {None}
    fired: Counter[str] = Counter()
    for symbol in market.symbols:
        bars = [bar for boundary in boundaries for bar in boundary if bar.symbol == symbol]
        arrays = [np.array([getattr(b, f) for b in bars]) for f in ("open", "high", "low", "close", "volume")]
        fired.update(signal.pattern for signal in history_signals(*arrays))
    assert set(fired) == set(PatternSet().names), set(PatternSet().names) - set(fired)


def test_source_flat_out_yields_limit_boundaries_and_stops_on_request() -> None:
    source = SyntheticSource(["A", "B", "C"], seed=1, bar_seconds=60, speed=0, start=0, limit=5)
    batches = list(source.batches(threading.Event()))
    assert [len(b) for b in batches] == [3] * 5
    assert [b[0].start for b in batches] == [0, 60, 120, 180, 240]
    stop = threading.Event()
    stop.set()
    assert list(SyntheticSource(["A"], speed=0, start=0, limit=5).batches(stop)) == []
