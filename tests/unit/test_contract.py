"""The pattern event contract: Appendix B items 1-5 and 9, positive and negative, plus properties."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstockpl import contract
from tickstockpl.contract import ContractError, build_pattern_event, validate_pattern_event


def valid(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"symbol": "AAPL", "pattern": "Volume_Spike", "confidence": 0.87}
    fields.update(overrides)
    return build_pattern_event(**fields)


# Item 1: one JSON object, no NaN/Infinity, no numpy scalars.
def test_event_serializes_to_a_json_object() -> None:
    decoded = json.loads(contract.encode(valid(price_change=1.5, current_price=10.0, volume=100)))
    assert isinstance(decoded, dict)
    assert contract.decode_pattern_event(contract.encode(valid())) is not None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", ["price_change", "current_price", "confidence"])
def test_nan_and_infinity_are_rejected(field: str, bad: float) -> None:
    with pytest.raises(ContractError) as info:
        valid(**{field: bad})
    assert info.value.field == f"data.{field}"


@pytest.mark.parametrize("scalar", [np.float64(0.5), np.float32(0.5), np.int64(1)])
def test_numpy_scalars_are_rejected(scalar: Any) -> None:
    with pytest.raises(ContractError, match="plain int or float"):
        valid(confidence=scalar)
    event = valid()
    event["data"]["current_price"] = scalar
    with pytest.raises(ContractError, match="data.current_price"):
        validate_pattern_event(event)


def test_encode_refuses_nan_smuggled_past_the_validator() -> None:
    with pytest.raises(ContractError, match="cannot be serialized"):
        contract.encode({"x": math.nan})


# Item 2: the envelope.
def test_envelope_is_exact() -> None:
    event = valid()
    assert set(event) == {"event_type", "source", "timestamp", "data"}
    assert event["event_type"] == "pattern_detected"
    assert event["source"] == "TickStockPL"
    assert isinstance(event["timestamp"], float)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("event_type", "pattern_detect", "event_type"),
        ("source", "tickstockpl", "source"),
        ("timestamp", "2025-09-19T00:00:00", "timestamp"),
        ("timestamp", 1758300000, "timestamp"),
        ("data", [], "data"),
        ("extra", 1, "event"),
    ],
)
def test_envelope_violations_are_named(key: str, value: Any, field: str) -> None:
    event = valid()
    event[key] = value
    with pytest.raises(ContractError) as info:
        validate_pattern_event(event)
    assert info.value.field == field


def test_non_object_messages_are_rejected() -> None:
    for raw in ("[1, 2]", '"text"', "not json", b"\xff\xfe"):
        with pytest.raises(ContractError, match="event"):
            contract.decode_pattern_event(raw)


# Item 3: required data fields and their limits.
def test_required_fields() -> None:
    data = valid()["data"]
    assert data["symbol"] == "AAPL" and data["pattern"] == "Volume_Spike"
    assert data["confidence"] == 0.87
    assert uuid.UUID(data["flow_id"]).version == 4 and data["flow_id"] == data["flow_id"].lower()
    assert "data" not in data and "pattern_name" not in data


@pytest.mark.parametrize("missing", ["symbol", "pattern", "confidence", "flow_id"])
def test_missing_required_field_is_named(missing: str) -> None:
    event = valid()
    del event["data"][missing]
    with pytest.raises(ContractError) as info:
        validate_pattern_event(event)
    assert info.value.field == f"data.{missing}"


def test_pattern_name_only_is_rejected() -> None:
    event = valid()
    event["data"]["pattern_name"] = event["data"].pop("pattern")
    with pytest.raises(ContractError, match="data.pattern"):
        validate_pattern_event(event)


def test_pattern_name_must_equal_pattern_when_sent() -> None:
    event = valid()
    event["data"]["pattern_name"] = event["data"]["pattern"]
    validate_pattern_event(event)
    event["data"]["pattern_name"] = "Other"
    with pytest.raises(ContractError, match="data.pattern_name"):
        validate_pattern_event(event)


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"symbol": ""}, "data.symbol", "empty"),
        ({"symbol": "   "}, "data.symbol", "empty"),
        ({"symbol": "X" * 21}, "data.symbol", "21 characters"),
        ({"pattern": "P" * 51}, "data.pattern", "51 characters"),
        ({"pattern": 5}, "data.pattern", "string"),
        ({"symbol": "A\udcffB"}, "data.symbol", "UTF-8"),
        ({"symbol": "A\x00B"}, "data.symbol", "NUL"),
        ({"confidence": 1.01}, "data.confidence", "0-1"),
        ({"confidence": -0.01}, "data.confidence", "0-1"),
        ({"confidence": 85}, "data.confidence", "0-1"),
        ({"confidence": True}, "data.confidence", "plain int or float"),
        ({"confidence": "0.5"}, "data.confidence", "plain int or float"),
        ({"flow_id": "test-diagnostic-flow"}, "data.flow_id", "not a UUID"),
        ({"flow_id": str(uuid.uuid4()).upper()}, "data.flow_id", "canonical"),
        ({"flow_id": uuid.uuid4().hex}, "data.flow_id", "canonical"),
        ({"flow_id": str(uuid.uuid1())}, "data.flow_id", "UUID4"),
    ],
)
def test_field_limits(overrides: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ContractError) as info:
        valid(**overrides)
    assert info.value.field == field
    assert reason in info.value.reason


def test_limits_are_inclusive() -> None:
    event = valid(symbol="S" * 20, pattern="P" * 50, confidence=1.0)
    assert len(event["data"]["symbol"]) == 20 and event["data"]["confidence"] == 1.0
    assert valid(confidence=0)["data"]["confidence"] == 0.0


def test_confidence_is_rounded_to_two_places() -> None:
    assert valid(confidence=0.854)["data"]["confidence"] == 0.85
    assert valid(confidence=0.856)["data"]["confidence"] == 0.86
    event = valid()
    event["data"]["confidence"] = 0.855
    with pytest.raises(ContractError, match="2 dp"):
        validate_pattern_event(event)


def test_no_key_named_data_inside_data() -> None:
    with pytest.raises(ContractError) as info:
        valid(extra={"data": {"symbol": "AAPL"}})
    assert info.value.field == "data.data"
    event = valid()
    event["data"]["data"] = {}
    with pytest.raises(ContractError, match="double-nested"):
        validate_pattern_event(event)


# Item 4: optional fields are typed.
def test_optional_fields_types() -> None:
    data = valid(
        tier="daily", price_change=-1.25, current_price=101.5, volume=1200, detected_at=1758300000.0
    )["data"]
    assert data["tier"] == data["source"] == "daily"
    assert isinstance(data["timestamp"], float) and isinstance(data["price_change"], float)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(tier="weekly", source="weekly"), "data.tier"),
        (lambda d: d.update(tier="daily", source="intraday"), "data.source"),
        (lambda d: d.update(tier="daily"), "data.tier"),
        (lambda d: d.update(timestamp="2025-09-19T10:00:00"), "data.timestamp"),
        (lambda d: d.update(timestamp=100.0, expires_at=50.0), "data.expires_at"),
        (lambda d: d.update(current_price="101"), "data.current_price"),
        (lambda d: d.update(volume=None), "data.volume"),
        (lambda d: d.update(indicators={"rsi": "high"}), "data.indicators.rsi"),
        (lambda d: d.update(indicators=[1]), "data.indicators"),
        (lambda d: d.update(indicators={"rsi": math.nan}), "data.indicators.rsi"),
        (lambda d: d.update(indicators={"relative_volume": math.inf}), "data.indicators.relative_volume"),
        (lambda d: d.update(indicators={"relative_strength": None}), "data.indicators.relative_strength"),
        (lambda d: d.update(indicators={"rsi": True}), "data.indicators.rsi"),
        (lambda d: d.update(indicators={"rsi": np.float64(50.0)}), "data.indicators.rsi"),
        (lambda d: d.update(indicators={"RSI": 50.0}), "data.indicators"),
        (lambda d: d.update(direction=np.str_("bullish")), "data.direction"),
        (lambda d: d.update(note={"nested": math.nan}), "data.note.nested"),
    ],
)
def test_optional_field_violations_are_named(mutate: Any, field: str) -> None:
    event = valid()
    mutate(event["data"])
    with pytest.raises(ContractError) as info:
        validate_pattern_event(event)
    assert info.value.field == field


def test_indicators_are_the_contracts_names_with_finite_numbers() -> None:
    """§2.3: `rsi`, `relative_volume`, `relative_strength`, numbers; each may be left out."""
    assert contract.INDICATORS == ("rsi", "relative_volume", "relative_strength")
    full = {"rsi": 55.5, "relative_volume": 1.5, "relative_strength": 0.97}
    assert valid(indicators=full)["data"]["indicators"] == full
    assert valid(indicators={})["data"]["indicators"] == {}
    assert "indicators" not in valid()["data"]
    assert valid(indicators={"rsi": 50})["data"]["indicators"] == {"rsi": 50.0}  # sent as a float
    for bad in ({"rsi": math.nan}, {"rsi": -math.inf}, {"momentum": 1.0}, [("rsi", 1.0)]):
        with pytest.raises(ContractError, match="data.indicators"):
            valid(indicators=bad)  # type: ignore[arg-type]
    with pytest.raises(ContractError):
        contract.encode({"rsi": math.nan})  # and the wire refuses NaN whatever carries it


def test_extra_fields_may_not_shadow_contract_fields() -> None:
    with pytest.raises(ContractError, match="data.symbol"):
        valid(extra={"symbol": "MSFT"})


# Item 5 (and 3): round trip through JSON and the consumer's parsing rules.
symbols = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF, blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip())  # str.strip() also removes \x85, \u2028 and friends
patterns = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, blacklist_categories=("Cs", "Cc")),
    min_size=1,
    max_size=50,
).filter(lambda s: s.strip())
confidences = st.floats(min_value=0, max_value=1, allow_nan=False)


@given(symbol=symbols, pattern=patterns, confidence=confidences, tier=st.sampled_from(sorted(contract.TIERS)))
def test_valid_events_round_trip_through_the_consumer_rules(
    symbol: str, pattern: str, confidence: float, tier: str
) -> None:
    event = build_pattern_event(symbol=symbol, pattern=pattern, confidence=confidence, tier=tier)
    wire = contract.encode(event).encode("utf-8")
    message = json.loads(wire.decode("utf-8"))
    assert contract.consumer_view(message) == (symbol, pattern, round(confidence, 2))
    inner = message["data"]
    assert "data" not in inner and inner["pattern"] == pattern  # the broadcaster's rule finds it


@given(
    symbol=st.one_of(st.text(min_size=21, max_size=40), st.just(""), st.integers()),
    pattern=patterns,
    confidence=confidences,
)
def test_bad_symbols_are_rejected_naming_the_field(symbol: Any, pattern: str, confidence: float) -> None:
    with pytest.raises(ContractError) as info:
        build_pattern_event(symbol=symbol, pattern=pattern, confidence=confidence)
    assert info.value.field == "data.symbol"


@given(confidence=st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0000001), st.just(math.nan)))
def test_bad_confidences_are_rejected_naming_the_field(confidence: float) -> None:
    with pytest.raises(ContractError) as info:
        build_pattern_event(symbol="AAPL", pattern="Doji", confidence=confidence)
    assert info.value.field == "data.confidence"


@given(flow_id=st.text(max_size=40))
def test_non_uuid4_flow_ids_are_rejected(flow_id: str) -> None:
    with pytest.raises(ContractError) as info:
        build_pattern_event(symbol="AAPL", pattern="Doji", confidence=0.5, flow_id=flow_id)
    assert info.value.field == "data.flow_id"


def test_consumer_view_follows_double_nesting_and_fallback() -> None:
    assert contract.consumer_view({"data": {"data": {"symbol": "A", "pattern": "P"}}}) == ("A", "P", 0)
    assert contract.consumer_view({"data": {"symbol": "A", "pattern_name": "P", "confidence": 0.5}}) == (
        "A",
        "P",
        0.5,
    )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"note": {"bad\x00key": 1}}, "data.note"),
        ({"bad\x00key": 1}, "data"),
        ({"a\udcffb": 1}, "data"),
        ({"big": 10**400}, "data.big"),
        ({"deep": [[[[[[[[[[1]]]]]]]]]]}, "data.deep"),
    ],
)
def test_extra_fields_are_plain_text_and_bounded(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ContractError) as info:
        valid(extra=extra)
    assert info.value.field.startswith(field)


def test_huge_integers_are_a_contract_error_not_an_overflow() -> None:
    with pytest.raises(ContractError, match="too large"):
        valid(volume=10**400)
