"""Properties of the streaming engine on random markets: warm-up, uniqueness, idempotence, rejects."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickstockpl import bars as bar_checks
from tickstockpl.bars import Bar
from tickstockpl.patterns import PatternSet, StreamingEngine, history_signals
from tickstockpl.sources.synthetic import SyntheticMarket

PSET = PatternSet()
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def market(seed: int, symbols: int, length: int) -> list[list[Bar]]:
    m = SyntheticMarket([f"S{i}" for i in range(symbols)], seed=seed, start=0)
    return [m.step() for _ in range(length)]


def flat(boundaries: list[list[Bar]]) -> list[Bar]:
    return [bar for boundary in boundaries for bar in boundary]


@PROPERTY
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 120))
def test_no_signal_during_warm_up_and_at_most_one_per_bar_and_pattern(
    seed: int, symbols: int, length: int
) -> None:
    engine = StreamingEngine()
    signals = [s for boundary in market(seed, symbols, length) for s in engine.process(boundary)]
    for signal in signals:
        position = signal.start // 60  # bar i of every series starts at 60 * i
        assert position + 1 >= PSET.warmup(signal.pattern), signal
    keys = [(s.symbol, s.timeframe, s.start, s.pattern) for s in signals]
    assert len(keys) == len(set(keys))
    assert all(0.0 <= s.confidence <= 1.0 for s in signals)


@PROPERTY
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(30, 150))
def test_same_bars_same_signals_and_a_replay_adds_nothing(seed: int, symbols: int, length: int) -> None:
    boundaries = market(seed, symbols, length)
    first, second = StreamingEngine(), StreamingEngine()
    out_first = [s for b in boundaries for s in first.process(b)]
    assert out_first == [s for b in boundaries for s in second.process(b)]
    again = [s for b in boundaries for s in first.process(b)]  # the same bars fed twice
    assert again == []
    assert first.rejected["duplicate"] == symbols  # each series' last bar comes back as itself
    assert first.rejected["out_of_order"] == symbols * (length - 1)


@PROPERTY
@given(st.integers(0, 10_000), st.integers(40, 150))
def test_streaming_equals_history_on_random_markets(seed: int, length: int) -> None:
    bars = flat(market(seed, 1, length))
    streamed = [
        (s.start // 60, s.pattern, s.direction, s.confidence) for s in StreamingEngine().process(bars)
    ]
    arrays = [np.array([getattr(b, f) for b in bars]) for f in ("open", "high", "low", "close", "volume")]
    history = [(s.bar_index, s.pattern, s.direction, s.confidence) for s in history_signals(*arrays)]
    assert streamed == history


BREAKERS = {
    bar_checks.NOT_FINITE: lambda b: b._replace(close=math.nan),
    bar_checks.NEGATIVE_VOLUME: lambda b: b._replace(volume=-5.0),
    bar_checks.HIGH_BELOW_LOW: lambda b: b._replace(high=b.low - 1, open=b.low - 1, close=b.low - 1),
    bar_checks.OUTSIDE_RANGE: lambda b: b._replace(open=b.high + 1),
    bar_checks.NON_POSITIVE_PRICE: lambda b: b._replace(low=-1.0),
    bar_checks.DUPLICATE: lambda b: b,
    bar_checks.OUT_OF_ORDER: lambda b: b._replace(start=b.start - 120),
}


@PROPERTY
@given(
    st.integers(0, 10_000),
    st.lists(
        st.tuples(st.integers(2, 79), st.sampled_from(sorted(BREAKERS))),
        max_size=12,
        unique_by=lambda x: x[0],
    ),
)
def test_malformed_bars_are_counted_by_reason_and_change_nothing(
    seed: int, faults: list[tuple[int, str]]
) -> None:
    clean = flat(market(seed, 1, 80))
    dirty = list(clean)
    for position, reason in sorted(faults, reverse=True):  # insert after the bar, back to front
        dirty.insert(position + 1, BREAKERS[reason](clean[position]))
    reference, engine = StreamingEngine(), StreamingEngine()
    assert engine.process(dirty) == reference.process(clean)
    assert engine.rejected == Counter(reason for _, reason in faults)
    assert engine.accepted == len(clean)


def test_unpublishable_symbols_are_counted_and_skipped_not_raised() -> None:
    """A symbol over the consumer's 20-character column (or empty, or not text) is a bad bar, not a crash."""
    good = flat(market(seed=3, symbols=1, length=300))
    bad = [bar._replace(symbol=name) for bar in good for name in ("X" * 21, " ", "A\x00B", "A\udcffB")]
    engine, reference = StreamingEngine(), StreamingEngine()
    signals = engine.process(sorted(bad + good, key=lambda b: b.start))
    assert signals and all(s.symbol == "S0" for s in signals)
    assert signals == reference.process(good)
    assert engine.rejected == Counter({bar_checks.BAD_SYMBOL: len(bad)})
    assert not bar_checks.symbol_is_valid("X" * 21) and bar_checks.symbol_is_valid("X" * 20)
