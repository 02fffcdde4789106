"""Decoding a record in the relay: the guard against whatever others put on the outbox.

The relay must validate every record, since anything can LPUSH onto the outbox, but the contract's
validator (stdlib json plus a general walk) was over half of the relay's CPU per row. Most records
are flat events that `enqueue` wrote: for those, orjson plus the narrow check below proves what the
full validator would conclude, at a fraction of the cost. Anything else (a nested value, a long
number, anything orjson refuses, anything the narrow check does not vouch for) takes the full,
unchanged path, which also gives poison its reason. The narrow check only ever says "certainly
valid" or "ask the contract": it never rejects a record by itself.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from tickstockpl import contract

# orjson turns an integer literal beyond 64 bits (below -2**63 or above 2**64 - 1) into a float,
# where json keeps an int; so a float this large or larger takes the stdlib path. It also bounds
# every float, so the comparison doubles as the finiteness check (NaN compares false).
_BIG_FLOAT = 9.2e18  # just under 2**63
# str(uuid.UUID(v)) == v and version 4 (which needs the RFC 4122 variant: 8, 9, a or b).
_FLOW_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_NOT_FLAT = ("data", "indicators")  # the contract wants these absent or an object: checked apart
_MAX_KEY_LEN = 200  # the contract's limit on an object key
_MAX_TEXT_LEN = 10_000  # the contract's limit on an extra text field
_CHECKED_KEYS: set[str] = set()  # data keys already found to be plain text; a handful in practice
_MAX_CHECKED_KEYS = 1_000
# Every confidence the contract accepts: in [0, 1] with at most CONFIDENCE_DECIMALS decimals, i.e.
# round(c, 2) == c. Those are exactly the floats nearest to k / 100, a set lookup cheaper than round().
_CONFIDENCES = frozenset(
    c
    for c in (k / 10**contract.CONFIDENCE_DECIMALS for k in range(10**contract.CONFIDENCE_DECIMALS + 1))
    if round(c, contract.CONFIDENCE_DECIMALS) == c
)


def decode_record(payload: bytes) -> dict[str, Any]:
    """Parse and validate one outbox record: what `contract.decode_pattern_event` returns or raises.

    The fast path (orjson and `_plainly_valid`) accepts only records the full validator accepts, with
    an equal result; tests/integration/test_relay_decode.py checks both directions.
    """
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        event = None
    if event is not None and _plainly_valid(event):
        return event
    return contract.decode_pattern_event(payload)


def _plain_text(value: object, limit: int) -> bool:
    """What contract.check_text accepts, for a string orjson produced (never a lone surrogate)."""
    return type(value) is str and 0 < len(value) <= limit and "\x00" not in value and bool(value.strip())


def _plain_key(key: object) -> bool:
    if key in _CHECKED_KEYS:
        return True
    if not _plain_text(key, _MAX_KEY_LEN):
        return False
    if len(_CHECKED_KEYS) >= _MAX_CHECKED_KEYS:
        _CHECKED_KEYS.clear()
    _CHECKED_KEYS.add(key)  # type: ignore[arg-type]
    return True


def _plainly_valid(event: object) -> bool:
    """True only for a flat event that `contract.validate_pattern_event` certainly accepts.

    Flat: every value in `data` is text, a number, a bool or null (no objects or arrays), except
    `indicators`, which the detector sends with every event: an object of the contract's indicator
    names and floats. False means "not vouched for", not "invalid". One function with the checks
    inline: the relay runs it for every record, and Python's calls cost more than the checks.
    """
    if type(event) is not dict or len(event) != 4:
        return False
    stamp, data = event.get("timestamp"), event.get("data")
    if (
        type(data) is not dict
        or type(stamp) is not float
        or not -_BIG_FLOAT < stamp < _BIG_FLOAT
        or event.get("event_type") != contract.EVENT_PATTERN_DETECTED
        or event.get("source") != contract.SOURCE_SYSTEM
    ):
        return False
    symbol, pattern, flow_id = data.get("symbol"), data.get("pattern"), data.get("flow_id")
    if (
        type(symbol) is not str
        or not 0 < len(symbol) <= contract.MAX_SYMBOL_LEN
        or type(pattern) is not str
        or not 0 < len(pattern) <= contract.MAX_PATTERN_LEN
        or type(data.get("confidence")) is not float
        or data["confidence"] not in _CONFIDENCES
        or type(flow_id) is not str
        or _FLOW_ID.fullmatch(flow_id) is None
    ):
        return False
    # Every key plain text; every value a number (floats below _BIG_FLOAT), plain text (symbol and
    # pattern included, whose lengths are checked above), a bool or null.
    for key, value in data.items():
        if (key not in _CHECKED_KEYS and not _plain_key(key)) or key in _NOT_FLAT:
            if key != "indicators" or not _plain_indicators(value):
                return False
            continue
        kind = type(value)
        if kind is float:
            if not -_BIG_FLOAT < value < _BIG_FLOAT:
                return False
        elif key in contract.NUMERIC_DATA_FIELDS:
            if kind is not int:  # a bool, text or null where the contract wants a number
                return False
        elif kind is str:
            if value and (len(value) > _MAX_TEXT_LEN or "\x00" in value or not value.strip()):
                return False
        elif kind not in (int, bool, type(None)):
            return False
    return _plain_relations(data)


def _plain_indicators(value: object) -> bool:
    """`data.indicators` as the detector sends it: the contract's names, floats (finite: bounded)."""
    return type(value) is dict and all(
        key in contract.INDICATORS and type(number) is float and -_BIG_FLOAT < number < _BIG_FLOAT
        for key, number in value.items()
    )


def _plain_relations(data: dict[str, Any]) -> bool:
    """pattern_name, expires_at, tier and source, as the contract relates them."""
    if "pattern_name" in data and data["pattern_name"] != data["pattern"]:
        return False
    if "expires_at" in data and "timestamp" in data and not data["expires_at"] > data["timestamp"]:
        return False
    if ("tier" in data) != ("source" in data):
        return False
    return "tier" not in data or (data["tier"] in contract.TIERS and data["source"] == data["tier"])
