"""TA-Lib's candlestick rules in numpy, vectorised across rows, with TA-Lib's exact arithmetic.

Why: a `talib.stream` handle costs one Python call per bar per pattern, and batch calls over windows
laid end to end cap out near 2.4x that. Judging every row of a boundary with a few dozen array
operations per pattern is several times faster, and nothing is approximated:

- Each rule below is a line-by-line transcription of TA-Lib 0.6+'s `ta_CDL*.c` (the comparisons,
  their strictness, the output values 100/80 and their signs), same operations in the same order.
- "Long", "short", "near"... compare with TA-Lib's candle-setting averages. TA-Lib keeps each one as a
  running total over a function's whole input: summed once over the `period` bars before the first bar
  it can judge (its lookback), then updated bar by bar as `total += range(new) - range(old)`. The
  rounding of that total depends on where it started, so each total here is identified by what TA-Lib
  would compute: (range type, period, bars back, start = the function's lookback), and carried across
  bars exactly as TA-Lib does: `series_totals` with one cumulative sum over a whole history,
  `advance_totals` one bar at a time in the streaming engine. Both do the same float operations in
  the same order, so a bar's result is TA-Lib's result on the series from its first bar, bit for bit.
- Default candle settings only (this project never calls TA_SetCandleSettings).

Patterns without a rule here fall back to TA-Lib's batch functions (candles.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int32]

BODY, HIGHLOW, SHADOWS = 0, 1, 2  # TA_RangeType_RealBody, _HighLow, _Shadows


class Setting(NamedTuple):
    range: int
    period: int
    factor: float


# TA_CandleDefaultSettings (src/ta_common/ta_global.c).
SETTINGS: dict[str, Setting] = {
    "BodyLong": Setting(BODY, 10, 1.0),
    "BodyVeryLong": Setting(BODY, 10, 3.0),
    "BodyShort": Setting(BODY, 10, 1.0),
    "BodyDoji": Setting(HIGHLOW, 10, 0.1),
    "ShadowLong": Setting(BODY, 0, 1.0),
    "ShadowVeryLong": Setting(BODY, 0, 2.0),
    "ShadowShort": Setting(SHADOWS, 10, 1.0),
    "ShadowVeryShort": Setting(HIGHLOW, 10, 0.1),
    "Near": Setting(HIGHLOW, 5, 0.2),
    "Far": Setting(HIGHLOW, 5, 0.6),
    "Equal": Setting(HIGHLOW, 5, 0.05),
}


class Total(NamedTuple):
    """One of TA-Lib's running totals: the sum of `range` over the `period` bars before the bar
    `back` bars before the one judged, as carried by a function whose first judged bar is `start`."""

    range: int
    period: int
    back: int
    start: int


class Candles:
    """The rows' last bars as columns (k = bars back from the bar judged), computed once and shared
    by every rule, plus the running totals for the rows."""

    def __init__(
        self,
        open_: FloatArray,
        high: FloatArray,
        low: FloatArray,
        close: FloatArray,
        totals: Mapping[Total, FloatArray],
    ) -> None:
        self._blocks = (open_, high, low, close)
        self.totals = totals
        self._cache: dict[tuple[str, int], FloatArray] = {}
        self._avg: dict[tuple[str, int, int], FloatArray] = {}

    def _column(self, field: int, k: int) -> FloatArray:
        return np.ascontiguousarray(self._blocks[field][:, -1 - k])

    def get(self, name: str, k: int) -> FloatArray:
        key = (name, k)
        value = self._cache.get(key)
        if value is None:
            value = self._compute(name, k)
            self._cache[key] = value
        return value

    def _compute(self, name: str, k: int) -> FloatArray:
        if name in ("o", "h", "l", "c"):
            return self._column("ohlc".index(name), k)
        o, c = self.get("o", k), self.get("c", k)
        if name == "body":  # TA_REALBODY: fabs(close - open)
            return np.abs(c - o)
        if name == "top":  # close >= open ? close : open
            return np.where(c >= o, c, o)
        if name == "bottom":  # close >= open ? open : close
            return np.where(c >= o, o, c)
        if name == "upper":  # TA_UPPERSHADOW
            return self.get("h", k) - self.get("top", k)
        if name == "lower":  # TA_LOWERSHADOW
            return self.get("bottom", k) - self.get("l", k)
        if name == "hl":  # TA_HIGHLOWRANGE
            return self.get("h", k) - self.get("l", k)
        raise KeyError(name)

    def white(self, k: int) -> BoolArray:
        """TA_CANDLECOLOR == 1 (close >= open)."""
        return self.get("c", k) >= self.get("o", k)

    def range(self, kind: int, k: int) -> FloatArray:
        """TA_CANDLERANGE."""
        if kind == BODY:
            return self.get("body", k)
        if kind == HIGHLOW:
            return self.get("hl", k)
        return self.get("upper", k) + self.get("lower", k)

    def avg(self, setting: str, k: int, start: int) -> FloatArray:
        """TA_CANDLEAVERAGE(setting, total, i - k) for a function whose first judged bar is `start`:
        factor * (total / period, or the bar's own range if period is 0) / (2 for shadows, else 1)."""
        key = (setting, k, start)
        value = self._avg.get(key)
        if value is None:
            s = SETTINGS[setting]
            if s.period:
                base = self.totals[Total(s.range, s.period, k, start)] / float(s.period)
            else:
                base = self.range(s.range, k)
            value = s.factor * base / (2.0 if s.range == SHADOWS else 1.0)
            self._avg[key] = value
        return value


class Rule(NamedTuple):
    function: str  # the TA-Lib function it reproduces
    lookback: int  # TA-Lib's lookback: the first bar it judges, and one less than its warm-up
    uses: tuple[tuple[str, int], ...]  # (setting, bars back) of every average it reads
    judge: Callable[[Candles, Callable[[str, int], FloatArray]], IntArray]

    def totals(self) -> list[Total]:
        out = []
        for setting, back in self.uses:
            s = SETTINGS[setting]
            if s.period:
                out.append(Total(s.range, s.period, back, self.lookback))
        return out

    def __call__(self, candles: Candles) -> IntArray:
        return self.judge(candles, lambda setting, k: candles.avg(setting, k, self.lookback))


Avg = Callable[[str, int], FloatArray]


def _out(hit: BoolArray, value: int | IntArray) -> IntArray:
    return np.where(hit, value, 0).astype(np.int32)


def _color(b: Candles, k: int) -> IntArray:
    return np.where(b.white(k), 1, -1).astype(np.int32)


def _doji(b: Candles, avg: Avg) -> IntArray:
    return _out(b.get("body", 0) <= avg("BodyDoji", 0), 100)


def _small_body_long_lower(b: Candles, avg: Avg) -> BoolArray:
    """Hammer and hanging man share their first three conditions."""
    return (
        (b.get("body", 0) < avg("BodyShort", 0))
        & (b.get("lower", 0) > avg("ShadowLong", 0))
        & (b.get("upper", 0) < avg("ShadowVeryShort", 0))
    )


def _hammer(b: Candles, avg: Avg) -> IntArray:
    near_low = np.minimum(b.get("c", 0), b.get("o", 0)) <= b.get("l", 1) + avg("Near", 1)
    return _out(_small_body_long_lower(b, avg) & near_low, 100)


def _hanging_man(b: Candles, avg: Avg) -> IntArray:
    near_high = np.minimum(b.get("c", 0), b.get("o", 0)) >= b.get("h", 1) - avg("Near", 1)
    return _out(_small_body_long_lower(b, avg) & near_high, -100)


def _small_body_long_upper(b: Candles, avg: Avg) -> BoolArray:
    """Shooting star and inverted hammer share their body and shadow conditions."""
    return (
        (b.get("body", 0) < avg("BodyShort", 0))
        & (b.get("upper", 0) > avg("ShadowLong", 0))
        & (b.get("lower", 0) < avg("ShadowVeryShort", 0))
    )


def _shooting_star(b: Candles, avg: Avg) -> IntArray:
    gap_up = np.minimum(b.get("o", 0), b.get("c", 0)) > np.maximum(b.get("o", 1), b.get("c", 1))
    return _out(gap_up & _small_body_long_upper(b, avg), -100)


def _inverted_hammer(b: Candles, avg: Avg) -> IntArray:
    gap_down = np.maximum(b.get("o", 0), b.get("c", 0)) < np.minimum(b.get("o", 1), b.get("c", 1))
    return _out(gap_down & _small_body_long_upper(b, avg), 100)


def _engulfing(b: Candles, avg: Avg) -> IntArray:
    o0, c0, o1, c1 = b.get("o", 0), b.get("c", 0), b.get("o", 1), b.get("c", 1)
    white0, white1 = b.white(0), b.white(1)
    bullish = white0 & ~white1 & (((c0 >= o1) & (o0 < c1)) | ((c0 > o1) & (o0 <= c1)))
    bearish = ~white0 & white1 & (((o0 >= c1) & (c0 < o1)) | ((o0 > c1) & (c0 <= o1)))
    size = np.where((o0 != c1) & (c0 != o1), 100, 80)
    return _out(bullish | bearish, _color(b, 0) * size)


def _harami(b: Candles, avg: Avg) -> IntArray:
    o0, c0, o1, c1 = b.get("o", 0), b.get("c", 0), b.get("o", 1), b.get("c", 1)
    shape = (b.get("body", 1) > avg("BodyLong", 1)) & (b.get("body", 0) <= avg("BodyShort", 0))
    top0, top1 = np.fmax(c0, o0), np.fmax(c1, o1)
    bottom0, bottom1 = np.fmin(c0, o0), np.fmin(c1, o1)
    inside = (top0 < top1) & (bottom0 > bottom1)
    touching = (top0 <= top1) & (bottom0 >= bottom1)
    size = np.where(inside, 100, 80)
    return _out(shape & touching, -_color(b, 1) * size)


def _star(b: Candles, avg: Avg, middle: str, bullish: bool) -> IntArray:
    """Morning/evening (doji) star, penetration 0.3: the rules differ in color, gap side and whether
    the middle candle must be short (BodyShort) or a doji (BodyDoji)."""
    o2, c2, o1, c1, c0 = b.get("o", 2), b.get("c", 2), b.get("o", 1), b.get("c", 1), b.get("c", 0)
    body2 = b.get("body", 2)
    if bullish:
        shape = ~b.white(2) & b.white(0) & (np.fmax(o1, c1) < np.fmin(o2, c2)) & (c0 > c2 + body2 * 0.3)
    else:
        shape = b.white(2) & ~b.white(0) & (np.fmin(o1, c1) > np.fmax(o2, c2)) & (c0 < c2 - body2 * 0.3)
    sizes = (
        (body2 > avg("BodyLong", 2))
        & (b.get("body", 1) <= avg(middle, 1))
        & (b.get("body", 0) > avg("BodyShort", 0))
    )
    return _out(shape & sizes, 100 if bullish else -100)


def _three_white_soldiers(b: Candles, avg: Avg) -> IntArray:
    o, c, body = (lambda k: b.get("o", k)), (lambda k: b.get("c", k)), (lambda k: b.get("body", k))
    hit = (
        b.white(2)
        & (b.get("upper", 2) < avg("ShadowVeryShort", 2))
        & b.white(1)
        & (b.get("upper", 1) < avg("ShadowVeryShort", 1))
        & b.white(0)
        & (b.get("upper", 0) < avg("ShadowVeryShort", 0))
        & (c(0) > c(1))
        & (c(1) > c(2))
        & (o(1) > o(2))
        & (o(1) <= c(2) + avg("Near", 2))
        & (o(0) > o(1))
        & (o(0) <= c(1) + avg("Near", 1))
        & (body(1) > body(2) - avg("Far", 2))
        & (body(0) > body(1) - avg("Far", 1))
        & (body(0) > avg("BodyShort", 0))
    )
    return _out(hit, 100)


def _three_black_crows(b: Candles, avg: Avg) -> IntArray:
    o, c = (lambda k: b.get("o", k)), (lambda k: b.get("c", k))
    hit = (
        b.white(3)
        & ~b.white(2)
        & ~b.white(1)
        & ~b.white(0)
        & (o(1) < o(2))
        & (o(1) > c(2))
        & (o(0) < o(1))
        & (o(0) > c(1))
        & (b.get("h", 3) > c(2))
        & (c(2) > c(1))
        & (c(1) > c(0))
        & (b.get("lower", 2) < avg("ShadowVeryShort", 2))
        & (b.get("lower", 1) < avg("ShadowVeryShort", 1))
        & (b.get("lower", 0) < avg("ShadowVeryShort", 0))
    )
    return _out(hit, -100)


def _piercing(b: Candles, avg: Avg) -> IntArray:
    c0, o1, c1 = b.get("c", 0), b.get("o", 1), b.get("c", 1)
    body1 = b.get("body", 1)
    hit = (
        ~b.white(1)
        & (body1 > avg("BodyLong", 1))
        & b.white(0)
        & (b.get("body", 0) > avg("BodyLong", 0))
        & (b.get("o", 0) < b.get("l", 1))
        & (c0 < o1)
        & (c0 > c1 + body1 * 0.5)
    )
    return _out(hit, 100)


def _dark_cloud_cover(b: Candles, avg: Avg) -> IntArray:
    c0, o1, c1 = b.get("c", 0), b.get("o", 1), b.get("c", 1)
    body1 = b.get("body", 1)
    hit = (
        b.white(1)
        & (body1 > avg("BodyLong", 1))
        & ~b.white(0)
        & (b.get("o", 0) > b.get("h", 1))
        & (c0 > o1)
        & (c0 < c1 - body1 * 0.5)
    )
    return _out(hit, -100)


def _three_inside(b: Candles, avg: Avg) -> IntArray:
    o2, c2, o1, c1, c0 = b.get("o", 2), b.get("c", 2), b.get("o", 1), b.get("c", 1), b.get("c", 0)
    white2, white0 = b.white(2), b.white(0)
    hit = (
        (np.fmax(c1, o1) < np.fmax(c2, o2))
        & (np.fmin(c1, o1) > np.fmin(c2, o2))
        & ((white2 & ~white0 & (c0 < o2)) | (~white2 & white0 & (c0 > o2)))
        & (b.get("body", 2) > avg("BodyLong", 2))
        & (b.get("body", 1) <= avg("BodyShort", 1))
    )
    return _out(hit, -_color(b, 2) * 100)


def _three_outside(b: Candles, avg: Avg) -> IntArray:
    o2, c2, o1, c1, c0 = b.get("o", 2), b.get("c", 2), b.get("o", 1), b.get("c", 1), b.get("c", 0)
    white2, white1 = b.white(2), b.white(1)
    up = white1 & ~white2 & (c1 > o2) & (o1 < c2) & (c0 > c1)
    down = ~white1 & white2 & (o1 > c2) & (c1 < o2) & (c0 < c1)
    return _out(up | down, _color(b, 1) * 100)


def _uses(*pairs: tuple[str, int]) -> tuple[tuple[str, int], ...]:
    return pairs


HAMMER_USES = _uses(("BodyShort", 0), ("ShadowLong", 0), ("ShadowVeryShort", 0), ("Near", 1))
SHOOTING_USES = _uses(("BodyShort", 0), ("ShadowLong", 0), ("ShadowVeryShort", 0))
STAR_USES = _uses(("BodyLong", 2), ("BodyShort", 1), ("BodyShort", 0))
DOJI_STAR_USES = _uses(("BodyLong", 2), ("BodyDoji", 1), ("BodyShort", 0))

# Keyed by TA-Lib function; lookbacks as TA-Lib reports them (a test checks them against talib).
RULES: dict[str, Rule] = {
    rule.function: rule
    for rule in (
        Rule("CDLDOJI", 10, _uses(("BodyDoji", 0)), _doji),
        Rule("CDLHAMMER", 11, HAMMER_USES, _hammer),
        Rule("CDLHANGINGMAN", 11, HAMMER_USES, _hanging_man),
        Rule("CDLSHOOTINGSTAR", 11, SHOOTING_USES, _shooting_star),
        Rule("CDLINVERTEDHAMMER", 11, SHOOTING_USES, _inverted_hammer),
        Rule("CDLENGULFING", 2, (), _engulfing),
        Rule("CDLHARAMI", 11, _uses(("BodyLong", 1), ("BodyShort", 0)), _harami),
        Rule("CDLMORNINGSTAR", 12, STAR_USES, lambda b, avg: _star(b, avg, "BodyShort", True)),
        Rule("CDLEVENINGSTAR", 12, STAR_USES, lambda b, avg: _star(b, avg, "BodyShort", False)),
        Rule("CDLMORNINGDOJISTAR", 12, DOJI_STAR_USES, lambda b, avg: _star(b, avg, "BodyDoji", True)),
        Rule("CDLEVENINGDOJISTAR", 12, DOJI_STAR_USES, lambda b, avg: _star(b, avg, "BodyDoji", False)),
        Rule(
            "CDL3WHITESOLDIERS",
            12,
            _uses(
                ("ShadowVeryShort", 2),
                ("ShadowVeryShort", 1),
                ("ShadowVeryShort", 0),
                ("Near", 2),
                ("Near", 1),
                ("Far", 2),
                ("Far", 1),
                ("BodyShort", 0),
            ),
            _three_white_soldiers,
        ),
        Rule(
            "CDL3BLACKCROWS",
            13,
            _uses(("ShadowVeryShort", 2), ("ShadowVeryShort", 1), ("ShadowVeryShort", 0)),
            _three_black_crows,
        ),
        Rule("CDLPIERCING", 11, _uses(("BodyLong", 1), ("BodyLong", 0)), _piercing),
        Rule(
            "CDLDARKCLOUDCOVER",
            11,
            _uses(
                ("BodyLong", 1),
            ),
            _dark_cloud_cover,
        ),
        Rule("CDL3INSIDE", 12, _uses(("BodyLong", 2), ("BodyShort", 1)), _three_inside),
        Rule("CDL3OUTSIDE", 3, (), _three_outside),
    )
}


def totals_for(functions: Iterable[str]) -> tuple[Total, ...]:
    """Every running total the rules of these TA-Lib functions read (functions without a rule: none)."""
    seen: dict[Total, None] = {}
    for function in functions:
        rule = RULES.get(function)
        if rule is not None:
            seen.update(dict.fromkeys(rule.totals()))
    return tuple(seen)


def _ranges(kind: int, open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """TA_CANDLERANGE over arrays of any shape."""
    if kind == BODY:
        return np.abs(close - open_)
    if kind == HIGHLOW:
        return high - low
    white = close >= open_
    return (high - np.where(white, close, open_)) + (np.where(white, open_, close) - low)


def series_totals(
    open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray, totals: Iterable[Total]
) -> dict[Total, FloatArray]:
    """Each total at every bar of one series (oldest first), NaN before its start: what TA-Lib's batch
    function carries over the whole series, computed with one sequential cumulative sum each."""
    n = len(close)
    out: dict[Total, FloatArray] = {}
    ranges: dict[int, FloatArray] = {}
    for total in totals:
        kind, period, back, start = total
        values = np.full(n, np.nan)
        if n > start:
            r = ranges.get(kind)
            if r is None:
                r = ranges[kind] = _ranges(kind, open_, high, low, close)
            first = 0.0
            for j in range(start - back - period, start - back):  # TA-Lib's initial loop, in order
                first += float(r[j])
            steps = r[start - back : n - 1 - back] - r[start - back - period : n - 1 - back - period]
            values[start:] = np.cumsum(np.concatenate(([first], steps)))  # left to right, as TA-Lib adds
        out[total] = values
    return out


def advance_totals(
    blocks: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    index: npt.NDArray[np.int64],
    previous: Mapping[Total, FloatArray],
) -> dict[Total, FloatArray]:
    """The totals for the rows' newest bars, from their windows (o, h, l, c; newest bar last) and the
    totals of the bar before: `index` is each newest bar's position in its series (0 = first bar).

    Rows at a total's start get TA-Lib's initial sum, rows past it `previous + (range(new) - range(old))`,
    rows before it NaN: the same operations, in the same order, as `series_totals`."""
    open_, high, low, close = blocks
    cache: dict[tuple[int, int], FloatArray] = {}

    def ranges(kind: int, back: int) -> FloatArray:
        """TA_CANDLERANGE of the bar `back` bars before each row's newest."""
        key = (kind, back)
        value = cache.get(key)
        if value is None:
            col = -1 - back
            value = _ranges(kind, open_[:, col], high[:, col], low[:, col], close[:, col])
            cache[key] = value
        return value

    out: dict[Total, FloatArray] = {}
    for total, before in previous.items():
        kind, period, back, start = total
        values = before + (ranges(kind, back + 1) - ranges(kind, back + 1 + period))
        values[index < start] = np.nan
        starting = np.flatnonzero(index == start)
        if len(starting):
            first = np.zeros(len(starting))
            for j in range(back + period, back, -1):  # oldest bar first, as TA-Lib's initial loop
                first = first + ranges(kind, j)[starting]
            values[starting] = first
        out[total] = values
    return out
