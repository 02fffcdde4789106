"""Bar checks: each malformed kind gets its own reason; valid bars pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tickstockpl import bars
from tickstockpl.bars import REASONS, Bar, bar_from_fields, check_arrays, tier_for, timeframe_label


def check_bar(bar: Bar) -> str | None:
    """The reason a single bar is malformed, or None: `check_arrays` on one bar."""
    arrays = (np.array([value]) for value in (bar.open, bar.high, bar.low, bar.close, bar.volume))
    code = int(check_arrays(*arrays)[0])
    return REASONS[code - 1] if code else None


GOOD = Bar("AAPL", 60, 1_700_000_000, 10.0, 11.0, 9.0, 10.5, 1000.0)


def test_a_valid_bar_passes() -> None:
    assert check_bar(GOOD) is None
    assert GOOD.close_time == 1_700_000_060


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"close": math.nan}, bars.NOT_FINITE),
        ({"high": math.inf}, bars.NOT_FINITE),
        ({"volume": -1.0}, bars.NEGATIVE_VOLUME),
        ({"high": 8.0, "low": 9.0, "open": 8.5, "close": 8.5}, bars.HIGH_BELOW_LOW),
        ({"open": 12.0}, bars.OUTSIDE_RANGE),
        ({"close": 8.0}, bars.OUTSIDE_RANGE),
        ({"low": 0.0, "open": 0.0}, bars.NON_POSITIVE_PRICE),
    ],
)
def test_each_malformed_value_has_its_reason(changes: dict[str, float], reason: str) -> None:
    assert check_bar(GOOD._replace(**changes)) == reason


def test_parse_counts_missing_fields_instead_of_raising() -> None:
    fields = {"open": "1", "high": "2", "low": "0.5", "close": "1.5", "volume": "10"}
    assert bar_from_fields("X", 60, 120, fields) == Bar("X", 60, 120, 1.0, 2.0, 0.5, 1.5, 10.0)
    assert bar_from_fields("X", 60, 120, {**fields, "volume": None}) == bars.MISSING_FIELD
    assert bar_from_fields("X", 60, 120, {**fields, "close": "abc"}) == bars.MISSING_FIELD
    assert bar_from_fields("", 60, 120, fields) == bars.MISSING_FIELD
    assert bar_from_fields("X", 60, None, fields) == bars.MISSING_FIELD
    massive = {"o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 10}
    assert bar_from_fields("X", 60, 120, massive, ("o", "h", "l", "c", "v")) == Bar(
        "X", 60, 120, 1, 2, 0.5, 1.5, 10
    )


def test_timeframe_labels_and_tiers() -> None:
    assert [timeframe_label(s) for s in (60, 300, 3600, 86_400, 90)] == ["1m", "5m", "1h", "1d", "90s"]
    assert tier_for(60) == "intraday" and tier_for(3600) == "intraday" and tier_for(86_400) == "daily"
