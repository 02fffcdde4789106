"""Candlestick patterns through TA-Lib's batch functions, evaluated on many windows per call.

Why batch and not `talib.stream`: a stream handle costs one Python call per bar per pattern (~0.45 us),
while a batch function runs ~50-150 million bars/s. Laying every symbol's last `lookback + 1` bars end
to end and calling the batch function once per boundary, then reading the output at each window's last
bar, is several times faster; the tests check it gives TA-Lib's own answer on every bar.

Published names: the eleven TickStockAppV2's UI offers verbatim, the rest CamelCase of TA-Lib's own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import talib
from talib import abstract

from tickstockpl.patterns.windows import FloatArray, Windows, volume_score

BULLISH, BEARISH, NEUTRAL = 1, -1, 0

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


def candle_spec(name: str) -> CandleSpec:
    """Look up a published name; KeyError names the unknown pattern."""
    function = FUNCTION_FOR[name]
    lookback = int(abstract.Function(function).lookback)  # type: ignore[attr-defined]
    return CandleSpec(name, getattr(talib, function), lookback + 1)


def candle_confidence(
    win: Windows, rows: npt.NDArray[np.intp], raw: npt.NDArray[np.int32], vol_score: FloatArray
) -> FloatArray:
    """0.5 for a pattern TA-Lib reports; +0.1 when TA-Lib says "confirmed" (|output| = 200, Hikkake);
    +0.25 x volume score (0 at average volume of the prior 20 bars, 1 at 3x); +0.15 when the 5-bar move
    before the bar runs against the signal (a bullish pattern after a decline, i.e. a real reversal)."""
    direction = np.sign(raw)
    prior_move = win.close[rows, -2] - win.close[rows, -7] if win.width >= 7 else np.zeros(len(rows))
    with np.errstate(invalid="ignore"):
        against = (direction * prior_move) < 0
    confirmed = np.abs(raw) >= 200
    return 0.5 + 0.1 * confirmed + 0.25 * vol_score[rows] + 0.15 * against


def detect_candles(
    win: Windows, specs: tuple[CandleSpec, ...], vol_score: FloatArray | None = None
) -> list[tuple[str, npt.NDArray[np.intp], npt.NDArray[np.int8], FloatArray]]:
    """For each pattern: (name, rows where it fires, direction +1/-1/0, confidence).

    `vol_score` (per row, from `windows.volume_score`) is passed in when the caller already has it."""
    if vol_score is None:
        vol_score = volume_score(win)
    flat: dict[int, tuple[npt.NDArray[np.intp], list[FloatArray]]] = {}
    widest = max((spec.width for spec in specs), default=0)
    scaled = _scaled(win, widest)
    results = []
    for spec in specs:
        if spec.width not in flat:
            flat[spec.width] = _flatten(win.bars, scaled, spec.width)
        rows, (o, h, low, c) = flat[spec.width]
        if not len(rows):
            continue
        raw = spec.function(o, h, low, c)[spec.width - 1 :: spec.width]
        hit = np.flatnonzero(raw)
        if not len(hit):
            continue
        hit_rows = rows[hit]
        values = raw[hit]
        direction = (
            np.zeros(len(hit), np.int8) if spec.name in NEUTRAL_CANDLES else np.sign(values).astype(np.int8)
        )
        results.append((spec.name, hit_rows, direction, candle_confidence(win, hit_rows, values, vol_score)))
    return results


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
