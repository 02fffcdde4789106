"""The detector's fast event builder gives the reference builder's events, and only valid ones (the
indicators included: None means "not defined yet" and is left out, anything odd is refused); the
minimum confidence for publishing is a setting and is applied as the contract rounds confidence."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickstockpl import contract
from tickstockpl.contract import ContractError
from tickstockpl.patterns import (
    EventBuilder,
    PatternSet,
    Signal,
    StreamingEngine,
    publishable,
    signal_to_event,
)
from tickstockpl.patterns import signals as signals_module
from tickstockpl.patterns.signals import flow_ids
from tickstockpl.settings import Settings, SettingsError
from tickstockpl.sources.synthetic import SyntheticMarket

PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_785_000_000.25

# Plain values, the odd ones the contract refuses (NaN, infinities, ints and bools where a float
# belongs, out-of-range confidences, overflowing price changes) and anything else hypothesis finds.
INF, NAN = float("inf"), float("nan")
odd = (
    st.sampled_from([NAN, INF, -INF, 0.0, -1.0, 1e308, 1e-308, 1, 0, True, False])
    | st.floats()
    | st.integers()
)
texts = {
    "symbol": st.sampled_from(["AAPL", "BRK.B", "A" * 20]) | st.text(max_size=24),
    "timeframe": st.sampled_from([60, 3600, 86_400]) | st.integers(-100, 10**7),
    "pattern": st.sampled_from(PatternSet().names) | st.text(max_size=60),
    "direction": st.sampled_from(["bullish", "bearish", "neutral"]) | st.text(max_size=3),
}
numbers = {
    "start": st.integers(-(2**40), 2**40) | st.booleans(),
    "confidence": st.floats(0.0, 1.0) | st.floats(-0.5, 1.5) | odd,
    "close": st.floats(0.01, 1e6) | odd,
    "prev_close": st.floats(0.01, 1e6) | odd,
    "volume": st.floats(0.0, 1e12) | odd,
    "rsi": st.floats(0.0, 100.0) | st.none() | odd,
    "relative_volume": st.floats(0.0, 1e6) | st.none() | odd,
    "relative_strength": st.floats(1e-6, 1e6) | st.none() | odd,
}
good = {
    "symbol": st.sampled_from(["AAPL", "BRK.B", "A" * 20]),
    "timeframe": st.sampled_from([60, 3600, 86_400]),
    "pattern": st.sampled_from(PatternSet().names),
    "direction": st.sampled_from(["bullish", "bearish", "neutral"]),
    "start": st.integers(0, 2**40),
    "confidence": st.floats(0.0, 1.0),
    "close": st.floats(0.01, 1e6),
    "prev_close": st.floats(0.01, 1e6),
    "volume": st.floats(0.0, 1e12),
    "rsi": st.floats(0.0, 100.0) | st.none(),  # None: not defined yet (warm-up)
    "relative_volume": st.floats(0.0, 1e6) | st.none(),
    "relative_strength": st.floats(1e-6, 1e6) | st.none(),
}
# Odd texts with plain numbers, plain texts with odd numbers, and both odd: each part of the direct
# path's checks meets the values that must send a signal the reference way.
signals = (
    st.builds(Signal, **{**good, **texts})
    | st.builds(Signal, **{**good, **numbers})
    | st.builds(Signal, **{**texts, **numbers})
)


def without_flow_id(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "data": {k: v for k, v in event["data"].items() if k != "flow_id"}}


PLAIN = Signal("AAPL", 60, 600, "Doji", "neutral", 0.5, 10.0, 9.5, 100.0, 55.0, 1.2, 0.98)
REFUSALS = (ContractError, TypeError)  # TypeError: a value outside the Signal's types ("1" as a price)


def replaced(signal: Signal, **changes: Any) -> Signal:
    """Signal._replace without the static types: the tests feed values the types rule out."""
    return signal._replace(**changes)


def check_against_reference(signal: Signal, now: float = NOW, received_at: object = None) -> None:
    """Build `signal` twice with a builder that already trusts its symbol (through one well-formed
    signal) and its pattern, direction and timeframe (through another), so that the direct path, not
    the reference builder, meets the signal's numbers and each text check alone stands in its way.
    The trusting happens at a plain time; `now` is the envelope time of the build under test."""
    try:
        reference: dict[str, Any] | None = signal_to_event(signal, now=now, received_at=received_at)  # type: ignore[arg-type]
        refused: Exception | None = None
    except REFUSALS as exc:
        reference, refused = None, exc
    builder = EventBuilder()
    for template in (
        replaced(PLAIN, timeframe=signal.timeframe, pattern=signal.pattern, direction=signal.direction),
        replaced(PLAIN, symbol=signal.symbol),
        replaced(
            signal,
            confidence=0.5,
            close=10.0,
            prev_close=9.5,
            volume=100.0,
            start=600,
            rsi=55.0,
            relative_volume=1.2,
            relative_strength=0.98,
        ),
    ):
        try:
            builder.build([template], now=NOW)
        except REFUSALS:
            pass
    try:
        built = builder.build([signal, signal], now=now, received_at=received_at)  # type: ignore[arg-type]
    except REFUSALS as exc:
        assert type(exc) is type(refused), (
            f"the reference gave {reference or refused!r}, the fast path {exc!r}"
        )
        assert getattr(exc, "field", None) == getattr(refused, "field", None)
        return
    assert reference is not None, f"the fast path built what the reference refuses: {refused!r}"
    for event in built:
        assert contract.validate_pattern_event(event) is event
        assert without_flow_id(event) == without_flow_id(reference)
        assert list(event["data"]) == list(reference["data"])  # same key order on the wire
        assert list(event["data"]["indicators"]) == list(reference["data"]["indicators"])
    assert built[0]["data"]["flow_id"] != built[1]["data"]["flow_id"]


@PROPERTY
@given(signal=signals)
def test_fast_events_equal_the_reference_or_fail_the_same_way(signal: Signal) -> None:
    check_against_reference(signal)


ODD_VALUES = [NAN, INF, -INF, 1e308, 1e-308, 0.0, -0.0, -1.0, 1.5, 1.0000001, -1e-9, 1, 0, True, "1", None]


@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
@pytest.mark.parametrize(
    "name",
    [
        "confidence",
        "close",
        "prev_close",
        "volume",
        "start",
        "timeframe",
        "rsi",
        "relative_volume",
        "relative_strength",
    ],
)
def test_each_odd_number_meets_the_same_fate_on_both_paths(name: str, value: object) -> None:
    check_against_reference(replaced(PLAIN, **{name: value}))


@pytest.mark.parametrize("value", ["", " ", "A" * 21, "A\x00", "\ud800", "ok", 7, None], ids=repr)
@pytest.mark.parametrize("name", ["symbol", "pattern", "direction"])
def test_each_odd_text_meets_the_same_fate_on_both_paths(name: str, value: object) -> None:
    check_against_reference(replaced(PLAIN, **{name: value}))


@pytest.mark.parametrize("now", [NAN, INF, 0.0, NOW])
def test_the_envelope_timestamp_is_checked_as_the_reference_does(now: float) -> None:
    check_against_reference(PLAIN, now)


@pytest.mark.parametrize("received_at", [NOW - 0.25, None, 1_785_000_000, NAN, INF, True, "1"], ids=repr)
@pytest.mark.parametrize("signal", [PLAIN, replaced(PLAIN, confidence=NAN)], ids=["plain", "nan"])
def test_the_boundary_stamp_meets_the_same_fate_on_both_paths(signal: Signal, received_at: object) -> None:
    check_against_reference(signal, NOW, received_at)


def test_the_boundary_stamp_goes_out_as_bar_received_at_last() -> None:
    event = EventBuilder().build([PLAIN, PLAIN], now=NOW, received_at=NOW - 0.25)[1]
    assert list(event["data"])[-1] == contract.DATA_BAR_RECEIVED_AT
    assert event["data"][contract.DATA_BAR_RECEIVED_AT] == NOW - 0.25
    assert contract.DATA_BAR_RECEIVED_AT not in EventBuilder().build([PLAIN], now=NOW)[0]["data"]


def test_indicators_not_yet_defined_are_left_out_and_nan_is_refused() -> None:
    builder = EventBuilder()
    for signal, indicators in (
        (PLAIN, {"rsi": 55.0, "relative_volume": 1.2, "relative_strength": 0.98}),
        (replaced(PLAIN, rsi=None), {"relative_volume": 1.2, "relative_strength": 0.98}),
        (replaced(PLAIN, relative_volume=None, relative_strength=None), {"rsi": 55.0}),
        (Signal("AAPL", 60, 600, "Doji", "neutral", 0.5, 10.0, 9.5, 100.0), {}),  # none given: none yet
    ):
        for event in (*builder.build([signal, signal], now=NOW), signal_to_event(signal, now=NOW)):
            assert event["data"]["indicators"] == indicators
    for odd in (NAN, INF, -INF, "55", True):
        with pytest.raises(REFUSALS):
            builder.build([replaced(PLAIN, rsi=odd)], now=NOW)


def engine_signals(symbols: int = 40, boundaries: int = 120) -> list[Signal]:
    market = SyntheticMarket([f"S{i:03d}" for i in range(symbols)], seed=3, start=0)
    engine = StreamingEngine()
    return [s for _ in range(boundaries) for s in engine.process(market.step())]


def test_engine_signals_go_the_direct_way_once_their_texts_are_trusted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signals_ = engine_signals()
    assert len(signals_) > 500
    builder = EventBuilder()
    warm = builder.build(signals_, now=NOW)
    calls: list[Signal] = []

    def counting(signal: Signal, now: float | None = None) -> dict[str, Any]:
        calls.append(signal)
        return signal_to_event(signal, now)

    monkeypatch.setattr(signals_module, "signal_to_event", counting)
    again = builder.build(signals_, now=NOW)
    assert calls == []  # every one built directly
    reference = [signal_to_event(s, now=NOW) for s in signals_]
    assert [without_flow_id(e) for e in warm] == [without_flow_id(e) for e in reference]
    assert [without_flow_id(e) for e in again] == [without_flow_id(e) for e in reference]
    for event in again:
        contract.validate_pattern_event(event)
    assert len({e["data"]["flow_id"] for e in warm + again}) == 2 * len(signals_)


def test_flow_ids_are_canonical_distinct_uuid4s() -> None:
    ids = flow_ids(5_000)
    assert len(ids) == len(set(ids)) == 5_000
    for flow_id in ids:
        parsed = uuid.UUID(flow_id)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == flow_id
    assert flow_ids(0) == []
    # every hex digit position other than the fixed version nibble varies
    assert (
        {i[14] for i in ids} == {"4"}
        and len({i[0] for i in ids}) == 16
        and {i[19] for i in ids} <= set("89ab")
    )


def test_publishable_compares_the_confidence_the_consumer_will_see() -> None:
    base = Signal("AAPL", 60, 0, "Doji", "neutral", 0.5, 10.0, 10.0, 1.0)
    kept = publishable(
        [base._replace(confidence=c) for c in (0.6949, 0.6951, 0.7, 0.71, 0.3, 1.0)], min_confidence=0.7
    )
    assert [s.confidence for s in kept] == [0.6951, 0.7, 0.71, 1.0]  # 0.6951 is published as 0.7
    assert publishable([base], 0.0) == [base]


def test_min_confidence_setting() -> None:
    assert Settings().min_confidence == 0.7
    assert Settings.from_env({"TICKSTOCKPL_MIN_CONFIDENCE": "0"}, env_file=None).min_confidence == 0.0
    assert Settings.from_env({"TICKSTOCKPL_MIN_CONFIDENCE": "0.85"}, env_file=None).min_confidence == 0.85
    for bad in ("1.5", "-0.1", "high", "nan"):
        with pytest.raises(SettingsError, match="TICKSTOCKPL_MIN_CONFIDENCE"):
            Settings.from_env({"TICKSTOCKPL_MIN_CONFIDENCE": bad}, env_file=None)
