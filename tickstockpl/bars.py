"""The closed OHLCV bar every source yields, and the checks that keep malformed bars out of the detector.

A bar that fails a check is never an exception: it is counted under a short reason and skipped, so a
source that sends garbage cannot crash the detector. The value checks are vectorised (`check_arrays`)
because the engine validates a whole bar boundary (thousands of symbols) in one pass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from tickstockpl.contract import MAX_SYMBOL_LEN

DAY_SECONDS = 86_400

# Reject reasons, counted in the stats hash as `bars_rejected:<reason>`.
MISSING_FIELD = "missing_field"  # a field is absent or not a number at all
NOT_FINITE = "not_finite"  # NaN or infinity in a price or the volume
NON_POSITIVE_PRICE = "non_positive_price"
NEGATIVE_VOLUME = "negative_volume"
HIGH_BELOW_LOW = "high_below_low"
OUTSIDE_RANGE = "outside_range"  # open or close outside [low, high]
DUPLICATE = "duplicate"  # same (symbol, timeframe, start) as the last accepted bar
OUT_OF_ORDER = "out_of_order"  # starts before the last accepted bar of its series
BAD_SYMBOL = "bad_symbol"  # empty, over the database's 20-character limit, or not valid text
REASONS = (
    MISSING_FIELD,
    NOT_FINITE,
    NON_POSITIVE_PRICE,
    NEGATIVE_VOLUME,
    HIGH_BELOW_LOW,
    OUTSIDE_RANGE,
    DUPLICATE,
    OUT_OF_ORDER,
    BAD_SYMBOL,
)
# Codes for the vectorised checks: 0 is "valid", i + 1 is REASONS[i].
VALUE_REASON_CODES = {reason: index + 1 for index, reason in enumerate(REASONS)}


class Bar(NamedTuple):
    """One closed OHLCV bar. A NamedTuple, not a dataclass: the engine reads 10,000 of them per boundary.

    `timeframe` is the bar length in seconds (60 = one minute, 86400 = one day); `start` is the bar's
    opening time in epoch seconds, so the bar closes at `start + timeframe`.
    """

    symbol: str
    timeframe: int
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def close_time(self) -> int:
        return self.start + self.timeframe


def timeframe_label(seconds: int) -> str:
    """A short name for a bar length: 60 -> "1m", 3600 -> "1h", 86400 -> "1d", 90 -> "90s"."""
    for unit, size in (("d", DAY_SECONDS), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_timeframe(text: str) -> int:
    """'5m' -> 300, '1h' -> 3600, '1d' -> 86400 (the trading day); ValueError for anything else."""
    match = re.fullmatch(r"\s*(\d{1,4})\s*([mhd])\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a timeframe like 5m, 15m, 1h or 1d")
    seconds = int(match[1]) * {"m": 60, "h": 3600, "d": DAY_SECONDS}[match[2]]
    if not 60 <= seconds <= DAY_SECONDS or (match[2] == "d" and seconds != DAY_SECONDS):
        raise ValueError(f"{text!r}: timeframes run from 1m to 1d (the trading day)")
    return seconds


def tier_for(seconds: int) -> str:
    """The consumer's tier: `daily` for daily (or longer) bars, `intraday` for anything shorter."""
    return "daily" if seconds >= DAY_SECONDS else "intraday"


def check_arrays(
    open_: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64],
    volume: npt.NDArray[np.float64],
) -> npt.NDArray[np.int8]:
    """Reason code per bar (0 = valid) for the value checks; the first failing check wins."""
    codes = np.zeros(len(open_), dtype=np.int8)
    with np.errstate(invalid="ignore"):
        finite = (
            np.isfinite(open_)
            & np.isfinite(high)
            & np.isfinite(low)
            & np.isfinite(close)
            & np.isfinite(volume)
        )
        checks = (
            (NOT_FINITE, ~finite),
            (NON_POSITIVE_PRICE, (open_ <= 0) | (high <= 0) | (low <= 0) | (close <= 0)),
            (NEGATIVE_VOLUME, volume < 0),
            (HIGH_BELOW_LOW, high < low),
            (OUTSIDE_RANGE, (open_ > high) | (open_ < low) | (close > high) | (close < low)),
        )
    for reason, failed in reversed(checks):  # reversed, so the first check's code is written last
        codes[failed] = VALUE_REASON_CODES[reason]
    return codes


def symbol_is_valid(symbol: object) -> bool:
    """Whether a symbol can travel in an event and fit the consumer's VARCHAR(20) column."""
    if not isinstance(symbol, str) or not symbol.strip() or len(symbol) > MAX_SYMBOL_LEN or "\x00" in symbol:
        return False
    try:
        symbol.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def bar_from_fields(
    symbol: Any,
    timeframe: int,
    start: Any,
    fields: Mapping[str, Any],
    names: tuple[str, str, str, str, str] = ("open", "high", "low", "close", "volume"),
) -> Bar | str:
    """Build a Bar from loosely typed input (JSON, CSV); return a reject reason instead of raising.

    `names` maps our open/high/low/close/volume onto the source's keys (Massive says o/h/l/c/v).
    Only the parse is checked here; the value checks run in the engine, for every source alike.
    """
    values = [_number(fields.get(name)) for name in names]
    start_value = _number(start)
    if not isinstance(symbol, str) or not symbol.strip() or start_value is None or None in values:
        return MISSING_FIELD
    if not math.isfinite(start_value):
        return NOT_FINITE
    o, h, low, c, v = (float(x) for x in values if x is not None)
    return Bar(symbol.strip(), int(timeframe), int(start_value), o, h, low, c, v)
