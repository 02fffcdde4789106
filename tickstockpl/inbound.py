"""The one place where messages from TickStockAppV2 are read: ticks, backtest jobs, cancels.

Everything on these channels comes from another application and is treated as hostile. Each message
is checked in this order, and the first failure raises `Rejected` with a short reason (a counter
label) and a short detail (for one log line, already length-capped):
1. size: over the channel's limit it is rejected unread (contract.MAX_*_BYTES);
2. JSON: orjson, which refuses invalid UTF-8, NaN/Infinity literals and nesting deeper than 1024
   (its JSONDecodeError is caught), then an iterative depth check (contract.MAX_INPUT_DEPTH), so no
   later code can recurse without bound on what we accepted;
3. shape and fields, against the contract's limits, before anything is queued or logged.
Duplicate keys: the last one wins, as with the consumer's own `json`. Nothing here raises anything
but `Rejected` for any input (tests/unit/test_inbound.py checks this with hypothesis).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, NamedTuple

import orjson

from tickstockpl import contract
from tickstockpl.errors import TickStockPLError
from tickstockpl.logs import escape

# Reasons, used as counter labels (a fixed, small set).
TOO_LARGE = "too_large"
NOT_JSON = "not_json"  # includes invalid UTF-8 and nesting beyond orjson's own limit
TOO_DEEP = "too_deep"
NOT_OBJECT = "not_object"
BAD_JOB_ID = "bad_job_id"
BAD_TICKER = "bad_ticker"
BAD_PRICE = "bad_price"
BAD_VOLUME = "bad_volume"
BAD_TIMESTAMP = "bad_timestamp"
BAD_FIELD = "bad_field"  # any other field of a job that breaks a rule
REASONS = (
    TOO_LARGE,
    NOT_JSON,
    TOO_DEEP,
    NOT_OBJECT,
    BAD_JOB_ID,
    BAD_TICKER,
    BAD_PRICE,
    BAD_VOLUME,
    BAD_TIMESTAMP,
    BAD_FIELD,
)

_JOB_ID = re.compile(contract.JOB_ID_PATTERN)
TICKER = re.compile(contract.TICKER_PATTERN)
_JOB_ID_IN_PREFIX = re.compile(rb'"job_id"\s*:\s*"(' + contract.JOB_ID_PATTERN.encode() + rb')"')
HINT_PREFIX_BYTES = 1_024  # how far an unreadable job is searched for its job_id


class Rejected(TickStockPLError, ValueError):
    """A message that breaks the contract; `reason` is one of REASONS, `str()` a short detail."""

    def __init__(self, detail: str, reason: str = BAD_FIELD) -> None:
        super().__init__(escape(detail, contract.MAX_ERROR_LEN))
        self.reason = reason


def show(value: object, limit: int = 40) -> str:
    """A value from a message, for an error text: repr'd, escaped and short."""
    try:
        text = repr(value) if not isinstance(value, dict | list) else f"a {type(value).__name__}"
    except (RecursionError, ValueError):  # a huge int's repr is refused by Python itself
        text = f"a {type(value).__name__}"
    return escape(text, limit)


def load_object(raw: object, limit: int) -> dict[str, Any]:
    """A JSON object of at most `limit` bytes and MAX_INPUT_DEPTH levels, or Rejected."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise Rejected(f"message is a {type(raw).__name__}, not bytes", NOT_JSON)
    if len(raw) > limit:
        raise Rejected(f"message is {len(raw):,} bytes, the limit is {limit:,}", TOO_LARGE)
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Rejected(f"message is not valid JSON: {exc}", NOT_JSON) from None
    if not isinstance(message, dict):
        raise Rejected(f"message must be a JSON object, got {type(message).__name__}", NOT_OBJECT)
    if depth_exceeds(message, contract.MAX_INPUT_DEPTH):
        raise Rejected(f"message is nested deeper than {contract.MAX_INPUT_DEPTH} levels", TOO_DEEP)
    return message


_Container = dict[Any, Any] | list[Any]


def depth_exceeds(value: object, limit: int) -> bool:
    """Whether `value` nests dicts/lists deeper than `limit` (iterative: no recursion to exhaust).
    Only containers are stacked: a flat tick costs one pass over its values (the tick feed's hot path)."""
    stack: list[tuple[_Container, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return False


def check_job_id(value: object) -> str:
    """A job_id we can echo, log and put in a key name: 1-100 of [A-Za-z0-9_.:@-]."""
    if not isinstance(value, str) or not _JOB_ID.fullmatch(value):
        if isinstance(value, str) and len(value) > contract.MAX_JOB_ID_LEN:
            detail = f"job_id is {len(value):,} characters, the limit is {contract.MAX_JOB_ID_LEN}"
        else:
            detail = f"job_id {show(value)} is not 1-{contract.MAX_JOB_ID_LEN} of A-Z a-z 0-9 _ . : @ -"
        raise Rejected(detail, BAD_JOB_ID)
    return value


def job_id_hint(raw: object) -> str | None:
    """The job_id of a job we reject, if one can be found safely, so its failed result can be sent:
    from the parsed message, else from the message's first HINT_PREFIX_BYTES (never parsed further)."""
    try:
        return check_job_id(load_object(raw, contract.MAX_JOB_BYTES).get("job_id"))
    except Rejected:
        pass
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not isinstance(raw, bytes | bytearray):
        return None
    match = _JOB_ID_IN_PREFIX.search(bytes(raw[:HINT_PREFIX_BYTES]))
    return match.group(1).decode("ascii") if match else None


def decode_cancel(raw: object) -> str:
    """The job_id a cancel message (`{type: cancel_job, job_id, ...}`) targets."""
    return check_job_id(load_object(raw, contract.MAX_CANCEL_BYTES).get("job_id"))


class Tick(NamedTuple):
    """One checked tick: epoch seconds, finite positive price, finite non-negative volumes."""

    ticker: str
    price: float
    timestamp: float
    volume: float  # tick_volume if given, else volume, else 0
    open: float | None
    high: float | None
    low: float | None


def decode_tick(raw: object, now: float | None = None) -> Tick:
    """A tick from `tickstock.data.raw` (contract §3.3), checked against the wall clock `now`."""
    return check_tick(load_object(raw, contract.MAX_TICK_BYTES), now)


def check_tick(message: dict[str, Any], now: float | None = None) -> Tick:
    """The fields of a parsed tick: ticker pattern, price and volume ranges, timestamp window."""
    ticker = message.get("ticker")
    if not isinstance(ticker, str) or not TICKER.fullmatch(ticker):
        raise Rejected(f"ticker {show(ticker)} does not match {contract.TICKER_PATTERN}", BAD_TICKER)
    price = _number(message, "price", BAD_PRICE, required=True, low=0.0, high=contract.MAX_TICK_PRICE)
    if price == 0.0:
        raise Rejected("price must be above 0", BAD_PRICE)
    stamp = _timestamp(message.get("timestamp"), time.time() if now is None else now)
    volume = _number(message, "tick_volume", BAD_VOLUME, high=contract.MAX_TICK_VOLUME)
    if volume is None:
        volume = _number(message, "volume", BAD_VOLUME, high=contract.MAX_TICK_VOLUME)
    parts = [
        _number(message, name, BAD_PRICE, low=0.0, high=contract.MAX_TICK_PRICE) or None
        for name in ("tick_open", "tick_high", "tick_low")
    ]
    return Tick(ticker, float(price), stamp, float(volume or 0.0), *parts)  # type: ignore[arg-type]


def _number(
    message: dict[str, Any],
    name: str,
    reason: str,
    *,
    required: bool = False,
    low: float = 0.0,
    high: float,
) -> float | None:
    value: Any = message.get(name)
    if value is None and not required:
        return None
    if type(value) not in (int, float):  # bool, str, list, None (when required): refused
        raise Rejected(f"{name} {show(value)} is not a number", reason)
    number = float(value) if abs(value) < 1e308 else math.inf
    if not math.isfinite(number) or not low <= number <= high:
        raise Rejected(f"{name} {show(value)} is outside {low:g}-{high:g}", reason)
    return number


def check_timestamp(value: object, now: float | None = None, earliest: float | None = None) -> float:
    """Epoch seconds (milliseconds recognised by size) from `earliest` (default: TICK_MAX_AGE_S ago) to
    TICK_MAX_LEAD_S after `now` (default: the wall clock), or Rejected: for any source whose times
    could overflow or move a clock."""
    return _timestamp(value, time.time() if now is None else now, earliest)


def _timestamp(value: object, now: float, earliest: float | None = None) -> float:
    """Epoch seconds (milliseconds recognised by size) within the window around `now`."""
    if type(value) not in (int, float):
        raise Rejected(f"timestamp {show(value)} is not a number", BAD_TIMESTAMP)
    stamp = float(value) if abs(value) < 1e300 else math.inf  # type: ignore[arg-type]
    if math.isfinite(stamp) and stamp > 1e11:
        stamp /= 1000.0  # milliseconds
    low = now - contract.TICK_MAX_AGE_S if earliest is None else earliest
    if not (math.isfinite(stamp) and low <= stamp <= now + contract.TICK_MAX_LEAD_S):
        raise Rejected(
            f"timestamp {show(value)} is not within {(now - low) / 86_400:,.0f} days before"
            f" and {contract.TICK_MAX_LEAD_S:g} s after the wall clock",
            BAD_TIMESTAMP,
        )
    return stamp
