"""Checks of single fields the consumer would mis-handle, and the error they raise.

Shared by the pattern-event and backtest-message checks: plain JSON types, finite numbers, text
PostgreSQL and browsers accept.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Final

from tickstockpl.errors import TickStockPLError


class ContractError(TickStockPLError, ValueError):
    """A pattern event (or one of its fields) that the consumer would mis-handle."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def is_real_number(value: object) -> bool:
    # bool is an int subclass; numpy scalars are not int/float instances of the builtin types.
    return type(value) in (int, float)


def check_number(field: str, value: object) -> float:
    if not is_real_number(value):
        raise ContractError(field, f"must be a plain int or float, got {type(value).__name__}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise ContractError(field, f"is too large for a float ({len(str(value))} digits)") from None
    if not math.isfinite(number):
        raise ContractError(field, f"must be finite, got {value!r}")
    return number


def check_text(field: str, value: object, limit: int) -> str:
    if type(value) is not str:
        raise ContractError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ContractError(field, "must not be empty")
    if len(value) > limit:
        raise ContractError(field, f"is {len(value)} characters, the limit is {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ContractError(field, "is not valid UTF-8 (lone surrogate)") from None
    if "\x00" in value:
        raise ContractError(field, "contains a NUL character, which PostgreSQL rejects")
    return value


def check_flow_id(value: object) -> str:
    if type(value) is not str:
        raise ContractError("data.flow_id", f"must be a string, got {type(value).__name__}")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ContractError("data.flow_id", f"is not a UUID: {value!r}") from None
    if parsed.version != 4 or str(parsed) != value:
        raise ContractError("data.flow_id", f"must be a canonical lower-case UUID4, got {value!r}")
    return value


MAX_EXTRA_DEPTH: Final = 8  # extra fields are small, flat records; deeper nesting is a bug upstream


def check_key(field: str, key: object) -> str:
    """Object keys reach PostgreSQL's jsonb and browsers too: text without NUL or lone surrogates."""
    if type(key) is not str:
        raise ContractError(field, f"object keys must be strings, got {type(key).__name__}")
    return check_text(f"{field}.{key!r}", key, limit=200) if key else key


def check_extra(field: str, value: object, depth: int = 0) -> None:
    """Extra fields travel to browsers as-is: plain JSON types only, nothing numpy, nothing NaN."""
    if depth > MAX_EXTRA_DEPTH:
        raise ContractError(field, f"is nested deeper than {MAX_EXTRA_DEPTH} levels")
    if value is None or type(value) is bool:
        return
    if type(value) is str:
        if value:
            check_text(field, value, limit=10_000)
        return
    if is_real_number(value):
        check_number(field, value)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            check_extra(f"{field}.{check_key(field, key)}", item, depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_extra(f"{field}[{index}]", item, depth + 1)
        return
    raise ContractError(field, f"has type {type(value).__name__}, which is not plain JSON")
