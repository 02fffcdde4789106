"""The four named patterns on hand-built bar sequences whose answers are worked out in the comments."""

from __future__ import annotations

import pytest

from tickstockpl.bars import Bar
from tickstockpl.patterns import (
    PatternSet,
    PriceBreakout,
    ResistanceBreak,
    StreamingEngine,
    SupportTest,
    VolumeSpike,
    history_signals,
)
from tickstockpl.patterns.custom import CustomPattern

Row = tuple[float, float, float, float, float]  # open, high, low, close, volume


def run(pattern: CustomPattern, rows: list[Row]) -> list[tuple[int, str, float]]:
    """(bar index, direction, confidence) from the history scan, checked against the streaming engine."""
    pset = PatternSet(candles=(), custom=(pattern,))
    columns = list(zip(*rows, strict=True))
    found = [(s.bar_index, s.direction, s.confidence) for s in history_signals(*columns, pset=pset)]
    engine = StreamingEngine(pset)
    bars = [Bar("T", 60, 60 * i, *row) for i, row in enumerate(rows)]
    streamed = [(s.start // 60, s.direction, s.confidence) for s in engine.process(bars)]
    assert streamed == found
    return found


FLAT: Row = (100.0, 101.0, 99.0, 100.0, 1000.0)


def test_volume_spike_fires_once_on_the_transition() -> None:
    rows = [FLAT] * 26
    rows[22] = (100.0, 101.0, 99.0, 100.5, 5000.0)  # 5x the 20-bar mean of 1000
    rows[23] = (100.0, 101.0, 99.0, 100.2, 5000.0)  # 5000 / 1200 = 4.2x: still a spike, not a new one
    assert run(VolumeSpike(), rows) == [(22, "bullish", pytest.approx(0.5 + 0.5 * (5 - 3) / 3))]


def test_volume_spike_is_bearish_on_a_lower_close_and_silent_during_warm_up() -> None:
    rows = [FLAT] * 45
    rows[20] = (100.0, 101.0, 99.0, 99.5, 9000.0)  # bar 20 has 21 bars; the pattern needs 22
    rows[41] = (100.0, 101.0, 99.0, 99.5, 3000.0)  # exactly 3x the mean of bars 21-40 (all 1000)
    assert VolumeSpike().need == 22
    assert run(VolumeSpike(), rows) == [(41, "bearish", pytest.approx(0.5))]


def test_price_breakout_both_ways_on_the_first_bar_outside_the_channel() -> None:
    rows = [FLAT] * 30
    rows[22] = (100.0, 102.0, 99.5, 101.5, 1000.0)  # close 101.5 > 20-bar high 101: bullish
    rows[23] = (101.5, 103.0, 101.0, 102.5, 1000.0)  # still above (102): the condition holds, no event
    rows[27] = (99.0, 99.2, 97.5, 98.0, 3000.0)  # close 98 < 20-bar low 99: bearish, on 3x volume
    # bar 22: excess 0.5 over an average range of 2 -> 0.4 + 0.3 * 0.25 + 0.3 * 0 (average volume)
    # bar 27: excess 1.0, average range of the prior 14 bars (13 x 2, 1 x 2.5, 1 x 2 ...) computed below
    found = run(PriceBreakout(), rows)
    assert [(i, d) for i, d, _ in found] == [(22, "bullish"), (27, "bearish")]
    assert found[0][2] == pytest.approx(0.4 + 0.3 * 0.25)
    prior_ranges = [r[1] - r[2] for r in rows[13:27]]
    volume_score = (3000 / 1000 - 1) / 2
    assert found[1][2] == pytest.approx(
        0.4 + 0.3 * min(1, 1.0 / (sum(prior_ranges) / 14)) + 0.3 * volume_score
    )


BASE: Row = (102.0, 104.0, 101.0, 103.0, 1000.0)  # range 3: tolerance 0.25 x 3 = 0.75


def test_support_test_needs_an_established_level_and_a_close_above_the_zone() -> None:
    rows = [BASE] * 36
    rows[5] = rows[15] = (102.0, 104.0, 100.0, 103.0, 1000.0)  # two touches of support 100
    rows[33] = (101.5, 103.0, 100.2, 102.5, 1000.0)  # low in 100 +/- 0.75, close above 100.75
    rows[34] = (101.5, 103.0, 100.3, 102.0, 1000.0)  # tests again right away: not a new event
    wick = (101.5 - 100.2) / (103.0 - 100.2)
    assert run(SupportTest(), rows) == [(33, "bullish", pytest.approx(0.4 + 0.1 + 0.3 * wick))]


def test_support_test_is_silent_with_one_touch_or_a_close_inside_the_zone() -> None:
    rows = [BASE] * 36
    rows[15] = (102.0, 104.0, 100.0, 103.0, 1000.0)  # one touch only: no level yet
    rows[33] = (101.5, 103.0, 100.2, 102.5, 1000.0)
    assert run(SupportTest(), rows) == []
    rows[5] = rows[15]
    rows[33] = (100.6, 101.0, 100.2, 100.7, 1000.0)  # close 100.7 is inside the zone: not held
    assert run(SupportTest(), rows) == []


def test_resistance_break_after_two_touches() -> None:
    rows = [BASE] * 36
    rows[5] = rows[15] = (102.0, 105.0, 101.0, 103.0, 1000.0)  # two touches of resistance 105
    rows[33] = (103.5, 106.5, 103.0, 106.0, 1000.0)  # close 106 > 105 + 0.75
    rows[34] = (106.0, 107.5, 105.5, 107.0, 1000.0)  # new high, but no tested level above 106.5
    assert run(ResistanceBreak(), rows) == [(33, "bullish", pytest.approx(0.4 + 0.1 + 0.2 * (1.0 / 3.0)))]


def test_resistance_break_needs_the_close_beyond_the_tolerance() -> None:
    rows = [BASE] * 36
    rows[5] = rows[15] = (102.0, 105.0, 101.0, 103.0, 1000.0)
    rows[33] = (103.5, 106.0, 103.0, 105.7, 1000.0)  # 105.7 < 105.75: a poke, not a break
    assert run(ResistanceBreak(), rows) == []
