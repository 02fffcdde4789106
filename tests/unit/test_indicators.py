"""The indicators on every pattern event equal their batch computations on the three real data files:
`talib.RSI` for `rsi`, pandas for `relative_volume` and `relative_strength`, at every pattern bar,
however the engine's state grows, restarts or is fed; they are left out (never NaN) until defined, and
the events that carry them are the contract's."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

from tickstockpl import contract
from tickstockpl.bars import Bar
from tickstockpl.patterns import EventBuilder, PatternSet, Signal, StreamingEngine
from tickstockpl.patterns.indicators import DEFAULT_RS_BARS, RELATIVE_VOLUME_BARS, RSI_PERIOD, universe_means
from tickstockpl.sources.csv_replay import load_csv, merge_in_time

# Five candlesticks that fire on ~85 % of the bars (from the 11th of a series on). Which pattern fires
# does not change a bar's indicators; the engine's cost is per pattern, and these keep the tests quick.
FREQUENT = PatternSet(
    candles=("LongLine", "ShortLine", "SpinningTop", "BeltHold", "ClosingMarubozu"), custom=()
)
DATA = Path(__file__).resolve().parents[2] / "data"
DAILY, HOURLY, MINUTE = "daily_us_equities_2000_2013.csv", "hourly_aapl_2024_2026.csv", "minute_aapl_2026.csv"
FILES = (DAILY, HOURLY, MINUTE)
REL = 1e-12  # the values are equal bit for bit with the TA-Lib we ship; this leaves room for another build
NOW = 1_785_000_000.0
# The engine's cost is per batch, and the daily file has 3,270 small ones: the variants below run on
# its last 800 or so (2010 on; FB joins the universe in 2012), the main test on every bar of every file.
RECENT = int(datetime(2010, 1, 1, tzinfo=UTC).timestamp())


def by_symbol(name: str, since: int | None = None) -> dict[str, list[Bar]]:
    series: dict[str, list[Bar]] = defaultdict(list)
    for bar in load_csv(DATA / name):
        if since is None or bar.start >= since:
            series[bar.symbol].append(bar)
    return dict(series)


@cache
def default_run(name: str) -> tuple[dict[str, list[Bar]], list[Signal]]:
    """A whole file through an engine with the default indicator settings (shared by the tests)."""
    series = by_symbol(name)
    return series, stream(boundaries(series.values()), StreamingEngine(FREQUENT, capacity=2))  # grows


def boundaries(series: Iterable[list[Bar]]) -> list[list[Bar]]:
    """The bars as a source hands them over: one list per close time, every symbol in it."""
    return [list(group) for _, group in groupby(merge_in_time(series), key=lambda b: b.close_time)]


def stream(batches: Iterable[list[Bar]], engine: StreamingEngine) -> list[Signal]:
    signals = [s for batch in batches for s in engine.process(batch)]
    assert engine.rejected == {}
    return signals


def batch_reference(series: dict[str, list[Bar]], rs_bars: int = 20, benchmark: str = "") -> pd.DataFrame:
    """Every indicator at every bar, computed over whole series: rows (symbol, bar start)."""
    frames, growth = [], {}
    for symbol, bars in series.items():
        starts = [bar.start for bar in bars]
        close = pd.Series([bar.close for bar in bars], index=starts, dtype=np.float64)
        volume = pd.Series([bar.volume for bar in bars], index=starts, dtype=np.float64)
        growth[symbol] = close / close.shift(rs_bars)
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "start": starts,
                    "rsi": talib.RSI(close.to_numpy(), timeperiod=RSI_PERIOD),
                    "relative_volume": (
                        volume / volume.rolling(RELATIVE_VOLUME_BARS).mean().shift(1)
                    ).to_numpy(),
                }
            )
        )
    table = pd.DataFrame(growth)  # bar start x symbol: the series side by side, aligned in time
    bench = table[benchmark] if benchmark else table.mean(axis=1)  # equal weights, the missing skipped
    strength = table.div(bench, axis=0).stack().rename("relative_strength")
    out = pd.concat(frames).set_index(["symbol", "start"])
    return out.join(strength.swaplevel().rename_axis(["symbol", "start"]))


def assert_equal_at_pattern_bars(signals: list[Signal], reference: pd.DataFrame) -> Counter[str]:
    """Each signal's indicators are the reference's (omitted exactly where it has no finite value);
    returns how many values were compared and how many were omitted, by indicator."""
    seen: Counter[str] = Counter()
    rows = reference.to_dict("index")
    for signal in signals:
        row = rows[(signal.symbol, signal.start)]
        for name in contract.INDICATORS:
            want, got = float(row[name]), getattr(signal, name)
            if math.isfinite(want):
                assert type(got) is float and got == pytest.approx(want, rel=REL, abs=0), (signal, name, want)
                seen[name] += 1
            else:
                assert got is None, (signal, name, want)  # not defined: left out of the event
                seen[f"{name} omitted"] += 1
    return seen


def assert_events_carry_them(signals: list[Signal]) -> None:
    """The events the detector builds from these signals: the defined indicators as plain floats,
    each one the contract accepts, and the rest absent."""
    for signal, event in zip(signals, EventBuilder().build(signals, now=NOW), strict=True):
        assert contract.validate_pattern_event(dict(event)) == event
        indicators = event["data"]["indicators"]
        assert indicators == signal.indicators
        assert list(indicators) == [n for n in contract.INDICATORS if getattr(signal, n) is not None]
        assert all(type(v) is float and math.isfinite(v) for v in indicators.values())
        contract.encode(event)  # no NaN or infinity on the wire


@pytest.mark.parametrize("name", FILES)
def test_indicators_equal_the_batch_computations_at_every_pattern_bar(name: str) -> None:
    series, signals = default_run(name)
    seen = assert_equal_at_pattern_bars(signals, batch_reference(series))
    bars = sum(len(bars) for bars in series.values())
    for indicator in contract.INDICATORS:
        assert seen[indicator] > bars // 2, seen  # patterns on most bars: the values are compared often
        assert seen[f"{indicator} omitted"] > 0, seen  # and the warm-up is left out
    assert_events_carry_them(signals)


def test_the_warm_up_ends_where_each_indicator_becomes_defined() -> None:
    """RSI from the 15th bar, relative volume from the 21st, relative strength from the (N+1)th."""
    series, signals = default_run(MINUTE)
    (bars,) = series.values()
    index = {bar.start: i for i, bar in enumerate(bars)}
    first = {
        name: min(index[s.start] for s in signals if getattr(s, name) is not None)
        for name in contract.INDICATORS
    }
    last_missing = {
        name: max(index[s.start] for s in signals if getattr(s, name) is None) for name in contract.INDICATORS
    }
    assert last_missing["rsi"] < RSI_PERIOD <= first["rsi"]
    assert last_missing["relative_volume"] < RELATIVE_VOLUME_BARS <= first["relative_volume"]
    assert last_missing["relative_strength"] < DEFAULT_RS_BARS <= first["relative_strength"]


@pytest.mark.parametrize(("rs_bars", "benchmark"), [(1, ""), (60, ""), (20, "IBM"), (250, "MSFT")])
def test_relative_strength_settings_equal_the_batch(rs_bars: int, benchmark: str) -> None:
    series = by_symbol(DAILY, since=RECENT)
    engine = StreamingEngine(FREQUENT, rs_bars=rs_bars, rs_benchmark=benchmark)
    signals = stream(boundaries(series.values()), engine)
    seen = assert_equal_at_pattern_bars(signals, batch_reference(series, rs_bars, benchmark))
    assert seen["relative_strength"] > 1_000
    if benchmark:
        assert {s.relative_strength for s in signals if s.symbol == benchmark} - {None} == {1.0}


def test_a_benchmark_from_an_earlier_batch_counts_and_a_later_one_is_not_awaited() -> None:
    """A feed that hands the benchmark's bar over before the others' (its own batch) gives the same
    values; one that hands it over after them leaves relative strength out rather than guess."""
    series = by_symbol(DAILY, since=RECENT)
    reference = batch_reference(series, 20, "IBM")
    first, last = [], []
    for boundary in boundaries(series.values()):
        ibm = [bar for bar in boundary if bar.symbol == "IBM"]
        others = [bar for bar in boundary if bar.symbol != "IBM"]
        first += [ibm, others]
        last += [others, ibm]
    early = stream(first, StreamingEngine(FREQUENT, rs_benchmark="IBM"))
    assert assert_equal_at_pattern_bars(early, reference)["relative_strength"] > 1_000
    late = stream(last, StreamingEngine(FREQUENT, rs_benchmark="IBM"))
    assert all(s.relative_strength is None for s in late if s.symbol != "IBM")
    # Everything else is the same, whatever the order.
    assert Counter(s._replace(relative_strength=None) for s in late) == Counter(
        s._replace(relative_strength=None) for s in early
    )


def test_each_timeframe_is_its_own_universe() -> None:
    """The hourly and minute files fed together: an hour's close is also a minute's, so boundaries
    hold both timeframes; each series is alone in its universe, so its relative strength is 1."""
    since = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp())
    hourly, minute = by_symbol(HOURLY, since)["AAPL"], by_symbol(MINUTE)["AAPL"]
    batches = boundaries([hourly, minute])
    assert any(len({bar.timeframe for bar in batch}) == 2 for batch in batches)
    signals = stream(batches, StreamingEngine(FREQUENT))
    assert {s.relative_strength for s in signals} - {None} == {1.0}
    for bars in (hourly, minute):
        mine = [s for s in signals if s.timeframe == bars[0].timeframe]
        assert assert_equal_at_pattern_bars(mine, batch_reference({"AAPL": bars}))["rsi"] > 100


def test_universe_means_group_by_timeframe_and_bar_start() -> None:
    growth = np.array([1.1, 0.9, np.nan, 1.3, 1.0, 2.0])
    starts = np.array([60, 60, 60, 60, 120, 60], np.int64)
    timeframes = (60, 60, 60, 300, 60, 60)
    frame = pd.DataFrame({"g": growth, "start": starts, "tf": timeframes})
    want = frame.groupby(["tf", "start"])["g"].transform("mean").to_numpy()
    assert universe_means(growth, starts, timeframes) == pytest.approx(want, rel=REL, nan_ok=True)
    assert universe_means(np.array([np.nan, np.nan]), np.array([0, 0]), (60, 60)) == pytest.approx(
        [np.nan, np.nan], nan_ok=True
    )


def test_a_forgotten_series_starts_its_indicators_afresh() -> None:
    """At the engine's series limit the least recently updated series is forgotten; when it comes
    back, its indicators are those of a series that begins there (bounded state, no stale values)."""
    aapl, msft = by_symbol(DAILY)["AAPL"], by_symbol(DAILY)["MSFT"]
    engine = StreamingEngine(FREQUENT, max_series=1)
    stream([[bar] for bar in aapl[:100]], engine)
    stream([[msft[0]]], engine)  # AAPL is forgotten to make room
    assert engine.evicted == 1
    again = stream([[bar] for bar in aapl[100:400]], engine)
    seen = assert_equal_at_pattern_bars(again, batch_reference({"AAPL": aapl[100:400]}))
    assert seen["rsi"] > 100 and seen["rsi omitted"] > 0


def test_one_call_or_one_boundary_at_a_time_give_the_same_indicators() -> None:
    """The engine splits a long batch where a series repeats; the values do not depend on it."""
    series = by_symbol(DAILY, since=RECENT)
    whole = stream([list(merge_in_time(series.values()))], StreamingEngine(FREQUENT))
    stepwise = stream(boundaries(series.values()), StreamingEngine(FREQUENT))
    assert whole == stepwise
