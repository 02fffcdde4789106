"""Candlestick patterns, evaluated on many windows at once, giving TA-Lib's own answer on every bar.

Two ways, one answer:
- Patterns with a rule in rules.py (the default set) are judged in numpy, all rows of a boundary at
  once, with TA-Lib's exact arithmetic (its candle-setting averages carried as running totals from the
  series' first bar, as TA-Lib's batch function carries them). Several times faster than a
  `talib.stream` call per bar per pattern; see rules.py for why the results are bit-identical.
- The others, and any caller that has no running totals, use TA-Lib's batch functions over the rows'
  windows laid end to end (one call per pattern per boundary), reading the output at each window's
  last bar.
The tests check both against `talib.CDLxxx` on every bar of the three real data files.

Published names: the eleven TickStockAppV2's UI offers verbatim, the rest CamelCase of TA-Lib's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import talib
from talib import abstract

from tickstockpl.patterns.candle_settings import Candles, Rule, Total
from tickstockpl.patterns.rules import RULES
from tickstockpl.patterns.windows import FloatArray, Windows, volume_score

# TA-Lib function -> published name. The first eleven are the consumer UI's names (contract §3.1).
CANDLE_FUNCTIONS: dict[str, str] = {
    "CDLDOJI": "Doji",
    "CDLHAMMER": "Hammer",
    "CDLSHOOTINGSTAR": "ShootingStar",
    "CDLENGULFING": "Engulfing",
    "CDLHARAMI": "Harami",
    "CDLMORNINGSTAR": "MorningStar",
    "CDLEVENINGSTAR": "EveningStar",
    "CDL3WHITESOLDIERS": "ThreeWhiteSoldiers",
    "CDL3BLACKCROWS": "ThreeBlackCrows",
    "CDLPIERCING": "PiercingLine",
    "CDLDARKCLOUDCOVER": "DarkCloudCover",
    "CDL2CROWS": "TwoCrows",
    "CDL3INSIDE": "ThreeInside",
    "CDL3LINESTRIKE": "ThreeLineStrike",
    "CDL3OUTSIDE": "ThreeOutside",
    "CDL3STARSINSOUTH": "ThreeStarsInSouth",
    "CDLABANDONEDBABY": "AbandonedBaby",
    "CDLADVANCEBLOCK": "AdvanceBlock",
    "CDLBELTHOLD": "BeltHold",
    "CDLBREAKAWAY": "Breakaway",
    "CDLCLOSINGMARUBOZU": "ClosingMarubozu",
    "CDLCONCEALBABYSWALL": "ConcealingBabySwallow",
    "CDLCOUNTERATTACK": "Counterattack",
    "CDLDOJISTAR": "DojiStar",
    "CDLDRAGONFLYDOJI": "DragonflyDoji",
    "CDLEVENINGDOJISTAR": "EveningDojiStar",
    "CDLGAPSIDESIDEWHITE": "GapSideSideWhite",
    "CDLGRAVESTONEDOJI": "GravestoneDoji",
    "CDLHANGINGMAN": "HangingMan",
    "CDLHARAMICROSS": "HaramiCross",
    "CDLHIGHWAVE": "HighWave",
    "CDLHIKKAKE": "Hikkake",
    "CDLHIKKAKEMOD": "HikkakeModified",
    "CDLHOMINGPIGEON": "HomingPigeon",
    "CDLIDENTICAL3CROWS": "IdenticalThreeCrows",
    "CDLINNECK": "InNeck",
    "CDLINVERTEDHAMMER": "InvertedHammer",
    "CDLKICKING": "Kicking",
    "CDLKICKINGBYLENGTH": "KickingByLength",
    "CDLLADDERBOTTOM": "LadderBottom",
    "CDLLONGLEGGEDDOJI": "LongLeggedDoji",
    "CDLLONGLINE": "LongLine",
    "CDLMARUBOZU": "Marubozu",
    "CDLMATCHINGLOW": "MatchingLow",
    "CDLMATHOLD": "MatHold",
    "CDLMORNINGDOJISTAR": "MorningDojiStar",
    "CDLONNECK": "OnNeck",
    "CDLRICKSHAWMAN": "RickshawMan",
    "CDLRISEFALL3METHODS": "RisingFallingThreeMethods",
    "CDLSEPARATINGLINES": "SeparatingLines",
    "CDLSHORTLINE": "ShortLine",
    "CDLSPINNINGTOP": "SpinningTop",
    "CDLSTALLEDPATTERN": "StalledPattern",
    "CDLSTICKSANDWICH": "StickSandwich",
    "CDLTAKURI": "Takuri",
    "CDLTASUKIGAP": "TasukiGap",
    "CDLTHRUSTING": "Thrusting",
    "CDLTRISTAR": "Tristar",
    "CDLUNIQUE3RIVER": "UniqueThreeRiver",
    "CDLUPSIDEGAP2CROWS": "UpsideGapTwoCrows",
    "CDLXSIDEGAP3METHODS": "GapThreeMethods",
}
FUNCTION_FOR: dict[str, str] = {name: function for function, name in CANDLE_FUNCTIONS.items()}
ALL_CANDLES: tuple[str, ...] = tuple(CANDLE_FUNCTIONS.values())
# TA-Lib reports these as +100 for "present": they mark indecision, not a direction.
NEUTRAL_CANDLES = frozenset({"Doji", "LongLeggedDoji", "RickshawMan", "DragonflyDoji", "GravestoneDoji"})
# The UI's eleven plus the well-known reversals that add information the eleven lack (gap patterns such
# as AbandonedBaby or Kicking are left out: they need gaps that intraday bars almost never have).
DEFAULT_CANDLES: tuple[str, ...] = ALL_CANDLES[:11] + (
    "HangingMan",
    "InvertedHammer",
    "ThreeInside",
    "ThreeOutside",
    "MorningDojiStar",
    "EveningDojiStar",
)


class CandleSpec(NamedTuple):
    name: str
    function: Any  # the talib batch function
    width: int  # lookback + 1: the bars one output needs, and the warm-up
    rule: Rule | None  # the numpy transcription, when there is one


def candle_spec(name: str) -> CandleSpec:
    """Look up a published name; KeyError names the unknown pattern."""
    function = FUNCTION_FOR[name]
    lookback = int(abstract.Function(function).lookback)  # type: ignore[attr-defined]
    return CandleSpec(name, getattr(talib, function), lookback + 1, RULES.get(function))


def candle_confidence(
    win: Windows,
    rows: npt.NDArray[np.intp],
    raw: npt.NDArray[np.int32],
    vol_score: FloatArray,
    direction: npt.NDArray[np.int8],
) -> FloatArray:
    """0.5 for a pattern TA-Lib reports; +0.1 when TA-Lib says "confirmed" (|output| = 200, Hikkake);
    +0.25 x volume score (0 at average volume of the prior 20 bars, 1 at 3x); +0.15 when the 5-bar move
    before the bar runs against the signal (a bullish pattern after a decline, i.e. a real reversal).
    A neutral pattern (direction 0: the dojis) has no direction to run against, so never gets that."""
    prior_move = win.close[rows, -2] - win.close[rows, -7] if win.width >= 7 else np.zeros(len(rows))
    with np.errstate(invalid="ignore"):
        against = (direction * prior_move) < 0
    confirmed = np.abs(raw) >= 200
    return 0.5 + 0.1 * confirmed + 0.25 * vol_score[rows] + 0.15 * against


def detect_candles(
    win: Windows,
    specs: tuple[CandleSpec, ...],
    vol_score: FloatArray | None = None,
    totals: Mapping[Total, FloatArray] | None = None,
) -> list[tuple[str, npt.NDArray[np.intp], npt.NDArray[np.int8], FloatArray]]:
    """For each pattern: (name, rows where it fires, direction +1/-1/0, confidence).

    `totals` (per row: TA-Lib's running totals at the row's last bar, see rules.py) lets the patterns
    with a numpy rule use it; without them every pattern goes through TA-Lib's batch functions.
    `vol_score` (per row, from `windows.volume_score`) is passed in when the caller already has it."""
    if vol_score is None:
        vol_score = volume_score(win)
    candles = Candles(win.open, win.high, win.low, win.close, totals) if totals is not None else None
    batch = tuple(spec for spec in specs if spec.rule is None or candles is None)
    batch_raw = dict(_batch(win, batch))
    results = []
    for spec in specs:
        if spec.name in batch_raw:
            hit_rows, values = batch_raw[spec.name]
        else:
            assert spec.rule is not None and candles is not None
            with np.errstate(invalid="ignore"):
                raw = spec.rule(candles)
            hit_rows = np.flatnonzero(raw)
            hit_rows = hit_rows[win.bars[hit_rows] >= spec.width]
            values = raw[hit_rows]
        if not len(hit_rows):
            continue
        direction = (
            np.zeros(len(hit_rows), np.int8)
            if spec.name in NEUTRAL_CANDLES
            else np.sign(values).astype(np.int8)
        )
        confidence = candle_confidence(win, hit_rows, values, vol_score, direction)
        results.append((spec.name, hit_rows, direction, confidence))
    return results


def _batch(
    win: Windows, specs: tuple[CandleSpec, ...]
) -> list[tuple[str, tuple[npt.NDArray[np.intp], npt.NDArray[np.int32]]]]:
    """TA-Lib's batch functions over the warm rows' windows laid end to end: (rows fired, outputs)."""
    if not specs:
        return []
    flat: dict[int, tuple[npt.NDArray[np.intp], list[FloatArray]]] = {}
    scaled = _scaled(win, max(spec.width for spec in specs))
    out = []
    for spec in specs:
        if spec.width not in flat:
            flat[spec.width] = _flatten(win.bars, scaled, spec.width)
        rows, (o, h, low, c) = flat[spec.width]
        if not len(rows):
            out.append((spec.name, (rows, np.zeros(0, np.int32))))
            continue
        raw = spec.function(o, h, low, c)[spec.width - 1 :: spec.width]
        hit = np.flatnonzero(raw)
        out.append((spec.name, (rows[hit], raw[hit])))
    return out


def _scaled(win: Windows, width: int) -> list[FloatArray]:
    """The last `width` bars of o/h/l/c, each row scaled by a power of two that brings it near 1.

    That multiplication is exact and every TA-Lib candle rule is scale-free, so a row's own result is
    unchanged; but TA-Lib keeps running sums across the whole call, and this keeps a $700 neighbour's
    rounding residue from reaching a $30 row's sums (it once flipped a Harami on exact-tie data).
    """
    _, exponent = np.frexp(win.close[:, -1])
    scale = np.ldexp(1.0, -exponent)[:, None]
    return [p[:, -width:] * scale for p in (win.open, win.high, win.low, win.close)]


def _flatten(
    bars: npt.NDArray[np.int64], scaled: list[FloatArray], width: int
) -> tuple[npt.NDArray[np.intp], list[FloatArray]]:
    """Warm rows' last `width` bars laid end to end, one contiguous array per price."""
    if bars.min(initial=width) >= width:
        return np.arange(len(bars)), [np.ascontiguousarray(p[:, -width:]).ravel() for p in scaled]
    rows = np.flatnonzero(bars >= width)
    return rows, [p[rows, -width:].ravel() for p in scaled]
