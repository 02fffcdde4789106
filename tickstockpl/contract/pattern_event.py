"""The pattern_detected event: its column limits, how it is built, validated, encoded and decoded.

Appendix B items 1-5 and 9 of the contract, checked before anything reaches the wire or the audit table.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

from tickstockpl.contract.fields import (
    ContractError,
    check_extra,
    check_flow_id,
    check_key,
    check_number,
    check_text,
)
from tickstockpl.contract.names import EVENT_PATTERN_DETECTED, SOURCE_SYSTEM

# --- Column limits of integration_events (§4.1, §4.5) ----------------------------------------------
MAX_SYMBOL_LEN: Final = 20
MAX_PATTERN_LEN: Final = 50
CONFIDENCE_DECIMALS: Final = 2  # DECIMAL(3,2)
TIERS: Final = frozenset({"daily", "intraday", "combo"})
# Ours, an extra field the contract allows: epoch seconds at which the detector had the bar's boundary
# (its batch of closed bars), so the relay can measure boundary -> publish (docs/latency.md).
DATA_BAR_RECEIVED_AT: Final = "bar_received_at"
NUMERIC_DATA_FIELDS: Final = (
    "price_change",
    "current_price",
    "volume",
    "timestamp",
    "expires_at",
    DATA_BAR_RECEIVED_AT,
)
# `data.indicators` (§2.3): the consumer's pattern cache filters and sorts by these; each is left out
# until defined (docs/patterns.md, "Indicators"), and none other is sent.
INDICATOR_RSI: Final = "rsi"
INDICATOR_RELATIVE_VOLUME: Final = "relative_volume"
INDICATOR_RELATIVE_STRENGTH: Final = "relative_strength"
INDICATORS: Final = (INDICATOR_RSI, INDICATOR_RELATIVE_VOLUME, INDICATOR_RELATIVE_STRENGTH)

# The candlestick names TickStockAppV2's UI offers (§3.1); backtest jobs use them verbatim.
UI_CANDLESTICK_PATTERNS: Final = (
    "Doji",
    "Hammer",
    "ShootingStar",
    "Engulfing",
    "Harami",
    "MorningStar",
    "EveningStar",
    "ThreeWhiteSoldiers",
    "ThreeBlackCrows",
    "PiercingLine",
    "DarkCloudCover",
)
# The integration document's four named patterns.
REQUIREMENTS_PATTERNS: Final = ("Volume_Spike", "Price_Breakout", "Support_Test", "Resistance_Break")


def round_confidence(value: object) -> float:
    """Confidence as the database stores it: a float in 0-1, rounded to 2 dp."""
    number = check_number("data.confidence", value)
    if not 0.0 <= number <= 1.0:
        raise ContractError("data.confidence", f"must be within 0-1, got {number!r}")
    return round(number, CONFIDENCE_DECIMALS)


def validate_pattern_event(event: object) -> dict[str, Any]:
    """Check an event against Appendix B items 1-5 and 9; return it unchanged or raise ContractError."""
    if not isinstance(event, dict):
        raise ContractError("event", f"must be a JSON object, got {type(event).__name__}")
    expected = {"event_type", "source", "timestamp", "data"}
    if set(event) != expected:
        raise ContractError("event", f"envelope keys must be exactly {sorted(expected)}, got {sorted(event)}")
    if event["event_type"] != EVENT_PATTERN_DETECTED:
        raise ContractError("event_type", f"must be {EVENT_PATTERN_DETECTED!r}, got {event['event_type']!r}")
    if event["source"] != SOURCE_SYSTEM:
        raise ContractError("source", f"must be {SOURCE_SYSTEM!r}, got {event['source']!r}")
    if type(event["timestamp"]) is not float or not math.isfinite(event["timestamp"]):
        raise ContractError("timestamp", "must be a finite float of epoch seconds")
    _validate_data(event["data"])
    return event


def _validate_data(data: object) -> None:
    if not isinstance(data, dict):
        raise ContractError("data", f"must be an object, got {type(data).__name__}")
    if "data" in data:
        raise ContractError("data.data", "nested 'data' makes the consumer read the event as double-nested")
    for key in ("symbol", "pattern", "confidence", "flow_id"):
        if key not in data:
            raise ContractError(f"data.{key}", "is required")
    check_text("data.symbol", data["symbol"], MAX_SYMBOL_LEN)
    check_text("data.pattern", data["pattern"], MAX_PATTERN_LEN)
    if "pattern_name" in data and data["pattern_name"] != data["pattern"]:
        raise ContractError("data.pattern_name", "must equal data.pattern when sent")
    if type(data["confidence"]) is not float or round_confidence(data["confidence"]) != data["confidence"]:
        raise ContractError("data.confidence", "must be a float in 0-1 rounded to 2 dp")
    check_flow_id(data["flow_id"])
    for key in NUMERIC_DATA_FIELDS:
        if key in data:
            check_number(f"data.{key}", data[key])
    if "expires_at" in data and "timestamp" in data and not data["expires_at"] > data["timestamp"]:
        raise ContractError("data.expires_at", "must be later than data.timestamp")
    _validate_tier(data)
    if "indicators" in data:
        _validate_indicators(data["indicators"])
    for key, value in data.items():
        check_extra(f"data.{check_key('data', key)}", value)


def _validate_indicators(indicators: object) -> None:
    if not isinstance(indicators, dict):
        raise ContractError("data.indicators", "must be an object")
    for key, value in indicators.items():
        if key not in INDICATORS:
            raise ContractError("data.indicators", f"{key!r} is not one of {list(INDICATORS)}")
        check_number(f"data.indicators.{key}", value)


def _validate_tier(data: Mapping[str, Any]) -> None:
    if ("tier" in data) != ("source" in data):
        raise ContractError("data.tier", "tier and source must be sent together")
    if "tier" in data:
        if data["tier"] not in TIERS:
            raise ContractError("data.tier", f"must be one of {sorted(TIERS)}, got {data['tier']!r}")
        if data["source"] != data["tier"]:
            raise ContractError("data.source", f"must equal data.tier ({data['tier']!r})")


def build_pattern_event(
    *,
    symbol: str,
    pattern: str,
    confidence: float,
    flow_id: str | None = None,
    tier: str | None = None,
    price_change: float | None = None,
    current_price: float | None = None,
    volume: float | None = None,
    detected_at: float | None = None,
    expires_at: float | None = None,
    indicators: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Build the exact envelope the consumer parses (single nesting, `pattern`, UUID4 flow_id).

    `detected_at` becomes `data.timestamp` (the bar close, epoch seconds), `expires_at` `data.expires_at`
    (the consumer's cache expiry, later than the timestamp); `indicators` become `data.indicators`
    (the names in INDICATORS, finite numbers); `tier` is sent as both
    `tier` and `source`, since browsers read one and the consumer's cache the other.
    Raises ContractError naming the field when any input is out of contract.
    """
    data: dict[str, Any] = {
        "symbol": symbol,
        "pattern": pattern,
        "confidence": round_confidence(confidence),
        "flow_id": flow_id if flow_id is not None else str(uuid.uuid4()),
    }
    optional = {
        "price_change": price_change,
        "current_price": current_price,
        "volume": volume,
        "timestamp": detected_at,
        "expires_at": expires_at,
    }
    for key, value in optional.items():
        if value is not None:
            data[key] = float(check_number(f"data.{key}", value)) if key != "volume" else value
    if indicators is not None:
        if not isinstance(indicators, Mapping):
            raise ContractError("data.indicators", "must be an object")
        data["indicators"] = {
            key: float(check_number(f"data.indicators.{key}", value)) for key, value in indicators.items()
        }
    if tier is not None:
        data["tier"] = tier
        data["source"] = tier
    for key, value in (extra or {}).items():
        if key in data or key == "data":
            raise ContractError(f"data.{key}", "extra field collides with a contract field")
        data[key] = value
    event = {
        "event_type": EVENT_PATTERN_DETECTED,
        "source": SOURCE_SYSTEM,
        "timestamp": float(time.time() if now is None else now),
        "data": data,
    }
    return validate_pattern_event(event)


def encode(message: Mapping[str, Any]) -> str:
    """Serialize a message for the wire: UTF-8 JSON, NaN and Infinity refused."""
    try:
        return json.dumps(message, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except ValueError as exc:
        raise ContractError("event", f"cannot be serialized: {exc}") from None
    except TypeError as exc:
        raise ContractError("event", f"has a value JSON cannot carry: {exc}") from None


class BuiltPatternEvent(dict[str, Any]):
    """A pattern event that holds to the contract by construction: what the detector's event builder
    (`patterns.signals.EventBuilder`) returns, property-tested equal to `validate_pattern_event`.

    `outbox.enqueue` encodes these without checking them again, so the check runs once on the way
    out; the relay's decode still guards against anything else on the outbox. Not to be changed
    after it is built.
    """


def decode_pattern_event(raw: str | bytes) -> dict[str, Any]:
    """Parse and validate one wire message; ContractError names what is wrong."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError("event", f"is not JSON: {exc}") from None
    return validate_pattern_event(message)


def consumer_view(message: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What TickStockAppV2's subscriber extracts: (symbol, pattern, confidence), per §2.3.

    Single nesting unless `data` holds a `data` key; `pattern` first, `pattern_name` as fallback;
    confidence defaults to 0. Used by tests to prove events survive the consumer's rules.
    """
    data = message.get("data", message)
    if isinstance(data, Mapping) and "data" in data:
        data = data["data"]
    if not isinstance(data, Mapping):
        return None, None, 0
    pattern = data.get("pattern") or data.get("pattern_name")
    return data.get("symbol"), pattern, data.get("confidence", 0)


def audit_details(event: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The `details` JSON of a PATTERN_PUBLISHED row: small, and enough to trace the event."""
    data = event["data"]
    details: dict[str, Any] = {"event_timestamp": event["timestamp"]}
    for key in ("tier", "timeframe", "direction", "current_price", "price_change"):
        if key in data:
            details[key] = data[key]
    details.update(extra)
    return details
