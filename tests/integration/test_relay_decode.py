"""The relay's record decoding (`decode.decode_record`) agrees with the contract's, both ways.

The relay decodes with orjson and a narrow check that vouches only for flat, certainly valid events,
and hands everything else to `contract.decode_pattern_event`. These tests hold the two to the same
answer: the same event (same types too) or the same ContractError, for the poison cases of
test_relay.py and for generated mutations of valid events. No servers are needed.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickstockpl import contract
from tickstockpl.relay import decode


def _typed(value: Any) -> Any:
    """A comparable form that tells 1 from 1.0 and True from 1 (== alone does not)."""
    if isinstance(value, dict):
        return ("dict", [(key, _typed(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [_typed(item) for item in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def _outcome(decode: Any, payload: bytes) -> Any:
    try:
        return ("ok", _typed(decode(payload)))
    except RecursionError:
        return ("error", "RecursionError")
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


def assert_agrees(payload: bytes) -> None:
    assert _outcome(decode.decode_record, payload) == _outcome(contract.decode_pattern_event, payload)


def _valid(indicators: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    return contract.build_pattern_event(
        symbol="AAPL",
        pattern="Hammer",
        confidence=0.75,
        tier="intraday",
        current_price=185.5,
        price_change=-2.5,
        volume=1200,
        detected_at=1_764_000_000.0,
        indicators=indicators,
        extra=extra or None,
    )


def _encode(event: Any) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _with(event: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(event))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def _without(event: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copy = json.loads(json.dumps(event))
    target = copy
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return copy


# As the detector sends it: with indicators.
VALID = _valid(
    {"rsi": 55.5, "relative_volume": 1.25, "relative_strength": 0.98},
    direction="bullish",
    timeframe="1min",
    bar_start=1_764_000_000,
)
VALID_PAYLOAD = _encode(VALID)

# The contract- and decode-stage poison of test_poison_records_reach_dead_letters_and_neighbours_publish,
# and more that a raw push could carry.
POISON = [
    b"not json at all",
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b"[" * 100_000 + b"]" * 100_000,
    VALID_PAYLOAD.replace(b'"Hammer"', b'"' + b"P" * 51 + b'"'),
    VALID_PAYLOAD.replace(b'"AAPL"', b'"' + b"S" * 21 + b'"'),
    VALID_PAYLOAD.replace(b'"AAPL"', b'"   "'),
    VALID_PAYLOAD.replace(b'"AAPL"', b'"A\\u0000"'),
    VALID_PAYLOAD.replace(b'"AAPL"', b'"\\ud800"'),
    VALID_PAYLOAD.replace(b'"AAPL"', b'"\xed\xa0\x80"'),
    VALID_PAYLOAD.replace(b'"AAPL"', b"null"),
    VALID_PAYLOAD.replace(b"0.75", b"0.755"),
    VALID_PAYLOAD.replace(b"0.75", b"1.5"),
    VALID_PAYLOAD.replace(b"0.75", b"1"),
    VALID_PAYLOAD.replace(b"0.75", b"NaN"),
    VALID_PAYLOAD.replace(b"185.5", b"Infinity"),
    VALID_PAYLOAD.replace(b"185.5", b"1e400"),
    VALID_PAYLOAD.replace(b"185.5", b"true"),
    VALID_PAYLOAD.replace(b"185.5", b'"185.5"'),
    VALID_PAYLOAD.replace(b"1200", b"1" + b"0" * 400),
    VALID_PAYLOAD.replace(b'"intraday","source":"intraday"', b'"weekly","source":"weekly"'),
    VALID_PAYLOAD.replace(b'"source":"intraday"', b'"source":"daily"'),
    VALID_PAYLOAD.replace(b'"pattern_detected"', b'"heartbeat"'),
    VALID_PAYLOAD.replace(b'"TickStockPL"', b'"Other"'),
    VALID_PAYLOAD + b"x",
    VALID_PAYLOAD.replace(b'"rsi":55.5', b'"rsi":NaN'),
    VALID_PAYLOAD.replace(b'"rsi":55.5', b'"rsi":"55.5"'),
    VALID_PAYLOAD.replace(b'"rsi":55.5', b'"rsi":true'),
    VALID_PAYLOAD.replace(b'"rsi":55.5', b'"rsi":null'),
    VALID_PAYLOAD.replace(b'"rsi":55.5', b'"rsi":{"v":55.5}'),
    VALID_PAYLOAD.replace(b'"rsi":55.5', b'"rsi14":55.5'),
    VALID_PAYLOAD.replace(b'"relative_volume":1.25', b'"relative_volume":1e400'),
]
# Records that are valid, including some the fast path leaves to the contract.
VALID_SHAPES = [
    VALID_PAYLOAD,
    _encode(_valid()),
    _encode(_valid(indicators={"rsi": 55.0})),
    _encode(_valid(indicators={})),
    VALID_PAYLOAD.replace(b'"relative_volume":1.25', b'"relative_volume":3'),  # an int: left to the contract
    _encode(_valid(pattern_name="Hammer")),
    _encode(_valid(note="")),
    _encode(_valid(levels=[1.0, 2.0])),
    VALID_PAYLOAD.replace(b"1200", b"123456789012345678901234567890"),  # orjson would make it a float
    VALID_PAYLOAD.replace(b"1200", b"-9223372036854775809"),
    VALID_PAYLOAD.replace(b"1200", b"18446744073709551615"),
    VALID_PAYLOAD.replace(b'"timestamp":1764000000.0', b'"timestamp":1.9e19'),
    VALID_PAYLOAD.replace(b'{"event_type"', b' \n{"event_type"'),
    b"\xef\xbb\xbf" + VALID_PAYLOAD,  # json.loads(bytes) accepts a BOM and UTF-16; orjson does not
    VALID_PAYLOAD.decode().encode("utf-16"),
]


@pytest.mark.parametrize("payload", POISON, ids=range(len(POISON)))
def test_poison_is_refused_with_the_contracts_reason(payload: bytes) -> None:
    assert _outcome(contract.decode_pattern_event, payload)[0] == "error"  # the case is poison
    assert_agrees(payload)


@pytest.mark.parametrize("payload", VALID_SHAPES, ids=range(len(VALID_SHAPES)))
def test_valid_records_decode_to_the_same_event(payload: bytes) -> None:
    assert _outcome(contract.decode_pattern_event, payload)[0] == "ok"
    assert_agrees(payload)


def test_flat_events_take_the_fast_path() -> None:
    """What enqueue writes for the detector is vouched for without the contract's walk."""
    for payload in (
        VALID_PAYLOAD,
        _encode(_valid()),
        _encode(_valid(pattern_name="Hammer")),
        _encode(_valid(indicators={"rsi": 55.0})),
        _encode(_valid(indicators={})),
    ):
        assert decode._plainly_valid(orjson.loads(payload))
    # ...and what it leaves to the contract (still valid, as the test above shows).
    assert not decode._plainly_valid(orjson.loads(VALID_SHAPES[4]))
    assert not decode._plainly_valid(orjson.loads(VALID_SHAPES[8]))


def test_the_confidence_set_is_the_contracts_rule() -> None:
    """`_CONFIDENCES` holds exactly the floats in [0, 1] that round(c, 2) leaves unchanged."""

    def contract_accepts(c: float) -> bool:
        return 0.0 <= c <= 1.0 and round(c, contract.CONFIDENCE_DECIMALS) == c

    candidates = [-0.0, math.nan, math.inf, -math.inf]
    for k in range(-2, 103):
        exact = k / 100
        candidates += [exact, math.nextafter(exact, -1.0), math.nextafter(exact, 2.0), exact + 0.005]
    assert sum(map(contract_accepts, candidates)) == 101 + 1  # k = 0..100, and -0.0
    for c in candidates:
        assert (c in decode._CONFIDENCES) == contract_accepts(c), c


PATHS = [
    ("event_type",),
    ("source",),
    ("timestamp",),
    ("data",),
    ("extra",),
    ("data", "symbol"),
    ("data", "pattern"),
    ("data", "pattern_name"),
    ("data", "confidence"),
    ("data", "flow_id"),
    ("data", "price_change"),
    ("data", "current_price"),
    ("data", "volume"),
    ("data", "timestamp"),
    ("data", "expires_at"),
    ("data", "tier"),
    ("data", "source"),
    ("data", "direction"),
    ("data", "data"),
    ("data", "indicators"),
    ("data", "indicators", "rsi"),
    ("data", "indicators", "relative_strength"),
    ("data", ""),
    ("data", " "),
    ("data", "k\x00"),
    ("data", "\ud800"),
    ("data", "x" * 201),
]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 0.75, 1.0, -0.0, 0.123, 1e19, 9.3e18, 1_764_000_001.0]),
    st.text(max_size=25),
    st.sampled_from(["AAPL", "Hammer", "intraday", "daily", "pattern_detected", "TickStockPL", "\x00", " "]),
    st.sampled_from([VALID["data"]["flow_id"], VALID["data"]["flow_id"].upper(), "not-a-uuid"]),
    st.sampled_from(["12345678-1234-1234-8234-123456789012", "12345678-1234-4234-c234-123456789012"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.floats(), max_size=2),
    st.dictionaries(
        st.sampled_from([*contract.INDICATORS, "RSI", "x"]),
        st.floats() | st.integers() | st.booleans() | st.none() | st.text(max_size=2),
        max_size=3,
    ),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.sampled_from(PATHS), VALUES, st.booleans()), min_size=1, max_size=3),
)
def test_mutated_events_get_the_contracts_answer(edits: list[tuple[tuple[str, ...], Any, bool]]) -> None:
    """Whatever a mutation does to a valid event, the relay's decoding and the contract's agree."""
    event: Any = VALID
    for path, value, delete in edits:
        if delete:
            try:
                event = _without(event, path)
            except (KeyError, TypeError):
                continue
        else:
            try:
                event = _with(event, path, value)
            except (KeyError, TypeError):
                continue
    try:
        payload = _encode(event)
    except (TypeError, ValueError):
        return
    assert_agrees(payload)
