"""What the engines emit (Signal) and how signals become contract events: EventBuilder, flow ids.

Kept apart from the streaming engine's windows so the event path (confidence minimum, flow ids, the
consumer's field rules) reads on its own; the engine only produces Signals.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tickstockpl import contract
from tickstockpl.bars import (
    tier_for,
    timeframe_label,
)

if TYPE_CHECKING:
    from tickstockpl.patterns.sessions import SessionCalendar

COMBO = "combo"  # the tier of a pattern confirmed on two timeframes


class Signal(NamedTuple):
    """One detected pattern on one closed bar, with what the event needs.

    The indicators (patterns/indicators.py) are None while not defined: the event leaves them out."""

    symbol: str
    timeframe: int
    start: int
    pattern: str
    direction: str
    confidence: float
    close: float
    prev_close: float
    volume: float
    rsi: float | None = None
    relative_volume: float | None = None
    relative_strength: float | None = None
    confirmed_by: int = 0  # a combo (tier combo): the lower timeframe that confirmed it (combos.py)

    @property
    def close_time(self) -> int:
        return self.start + self.timeframe

    @property
    def price_change(self) -> float:
        """Percent change of the close against the previous bar's close."""
        return (self.close / self.prev_close - 1.0) * 100.0 if self.prev_close > 0 else 0.0

    @property
    def indicators(self) -> dict[str, Any]:
        """`data.indicators`: the defined ones (not None), in the contract's order."""
        values = (self.rsi, self.relative_volume, self.relative_strength)
        return {
            name: value for name, value in zip(contract.INDICATORS, values, strict=True) if value is not None
        }


def signal_to_event(
    signal: Signal,
    now: float | None = None,
    times: tuple[int, int] | None = None,
    received_at: float | None = None,
) -> dict[str, Any]:
    """The contract envelope for a signal (contract.build_pattern_event does every check).

    `times` is the bar's (close, expiry) from the session calendar (`EventBuilder`); without it, the
    bar closes `timeframe` after its start and expires one bar later. `received_at`: when the
    detector had the signal's bar (its boundary's batch), sent as `data.bar_received_at` so the
    relay can measure boundary -> publish; left out when None.
    """
    close, expires = times or (signal.close_time, signal.close_time + signal.timeframe)
    tier = COMBO if signal.confirmed_by else tier_for(signal.timeframe)
    extra: dict[str, Any] = {
        "direction": signal.direction,
        "timeframe": timeframe_label(signal.timeframe),
        "bar_start": signal.start,
    }
    if signal.confirmed_by:
        extra["confirmed_by"] = timeframe_label(signal.confirmed_by)
    if received_at is not None:
        extra[contract.DATA_BAR_RECEIVED_AT] = received_at
    return contract.build_pattern_event(
        symbol=signal.symbol,
        pattern=signal.pattern,
        confidence=signal.confidence,
        tier=tier,
        price_change=round(signal.price_change, 4),
        current_price=signal.close,
        volume=signal.volume,
        detected_at=float(close),
        expires_at=float(expires),
        indicators=signal.indicators,
        extra=extra,
        now=now,
    )


def publishable(signals: Iterable[Signal], min_confidence: float) -> list[Signal]:
    """The signals worth publishing: confidence (as the contract rounds it, 2 dp) at least `min_confidence`.

    Applied where events leave the process (detector service, `replay --publish`), never inside the
    engine, so the backtester and the counters still see everything that was detected."""
    return [s for s in signals if round(s.confidence, contract.CONFIDENCE_DECIMALS) >= min_confidence]


_RSI, _RELATIVE_VOLUME, _RELATIVE_STRENGTH = contract.INDICATORS


class EventBuilder:
    """`signal_to_event` for many signals at once, several times cheaper, with the same result.

    Why: at a 10,000-symbol boundary the reference builder, which re-validates every field of every
    event, costs more than detection itself. The engine's values are already plain and checked, so
    here each event is built directly and only what can still differ per event is checked cheaply:
    a symbol, pattern, direction or timeframe is trusted once the reference builder has accepted an
    event carrying it; numbers are checked by type and range. Any signal that fails a cheap check is
    built by `signal_to_event`, which produces the same event or raises the same ContractError, so the
    two paths cannot disagree (tests/unit/test_events.py). Flow ids are random UUID4s, drawn in bulk.
    """

    MAX_TRUSTED = 100_000  # a feed of ever-new symbols must not grow the caches without bound

    def __init__(self, calendar: SessionCalendar | None = None) -> None:
        self._symbols: set[str] = set()
        self._names: set[tuple[str, str, int]] = set()  # (pattern, direction, timeframe)
        self._frames: dict[int, tuple[str, str]] = {}  # timeframe -> (tier, label)
        # With a calendar, bars close and expire by its sessions (docs/patterns.md, "expires_at").
        self.calendar = calendar
        self._times: dict[tuple[int, int], tuple[int, int]] = {}  # (timeframe, start) -> (close, expiry)

    def times(self, timeframe: int, start: int) -> tuple[int, int]:
        """(close, expiry) of a bar: cached, since a boundary's signals share their bar start."""
        found = self._times.get((timeframe, start))
        if found is None:
            if len(self._times) >= 4096:
                self._times.clear()
            if self.calendar is None:
                found = (start + timeframe, start + 2 * timeframe)
            else:
                found = self.calendar.bar_times(timeframe, start)
            self._times[(timeframe, start)] = found
        return found

    def build(
        self, signals: Sequence[Signal], now: float | None = None, *, received_at: float | None = None
    ) -> list[dict[str, Any]]:
        """Contract events for `signals`, in order (envelope timestamp `now`, default: the time now;
        `received_at`, when given, goes out as `data.bar_received_at`: see `signal_to_event`).

        Each is a `contract.BuiltPatternEvent`, so that `outbox.enqueue` does not check it again."""
        stamp = float(time.time() if now is None else now)
        if not math.isfinite(stamp) or not (received_at is None or _finite_float(received_at)):
            return [
                contract.BuiltPatternEvent(signal_to_event(s, now=stamp, received_at=received_at))
                for s in signals
            ]
        events: list[dict[str, Any]] = []
        for signal, flow_id in zip(signals, flow_ids(len(signals)), strict=True):
            event = self._direct(signal, flow_id, stamp, received_at)
            if event is None:
                event = self._reference(signal, stamp, received_at)
            events.append(contract.BuiltPatternEvent(event))
        return events

    def _direct(
        self, s: Signal, flow_id: str, stamp: float, received_at: float | None
    ) -> dict[str, Any] | None:
        (
            symbol, timeframe, start, pattern, direction, confidence, close, _, volume,
            rsi, rvol, strength, confirmed_by,
        ) = s  # fmt: skip
        if (
            symbol not in self._symbols
            or (pattern, direction, timeframe) not in self._names
            or type(confidence) is not float
            or type(close) is not float
            or type(volume) is not float
            or type(start) is not int
            or not 0.0 <= confidence <= 1.0
            or type(confirmed_by) is not int
            or confirmed_by < 0
        ):
            return None
        # A sum of finite floats may overflow: then go the reference way.
        if type(rsi) is float and type(rvol) is float and type(strength) is float:  # after warm-up
            indicators = {_RSI: rsi, _RELATIVE_VOLUME: rvol, _RELATIVE_STRENGTH: strength}
            finite = close + volume + rsi + rvol + strength
        else:
            indicators = {}
            finite = close + volume
            for name, value in ((_RSI, rsi), (_RELATIVE_VOLUME, rvol), (_RELATIVE_STRENGTH, strength)):
                if value is not None:  # None: not defined yet, left out
                    if type(value) is not float:
                        return None
                    indicators[name] = value
                    finite += value
        change = round(s.price_change, 4)
        if not math.isfinite(finite + change):
            return None
        tier, label = self._frames[timeframe]
        ends, expires = self.times(timeframe, start)
        if confirmed_by:
            if confirmed_by not in self._frames:
                return None
            tier = COMBO
        data: dict[str, Any] = {
            "symbol": symbol,
            "pattern": pattern,
            "confidence": round(confidence, contract.CONFIDENCE_DECIMALS),
            "flow_id": flow_id,
            "price_change": change,
            "current_price": close,
            "volume": volume,
            "timestamp": float(ends),
            "expires_at": float(expires),
            "indicators": indicators,
            "tier": tier,
            "source": tier,
            "direction": direction,
            "timeframe": label,
            "bar_start": start,
        }
        if confirmed_by:
            data["confirmed_by"] = self._frames[confirmed_by][1]
        if received_at is not None:
            data[contract.DATA_BAR_RECEIVED_AT] = received_at
        return {
            "event_type": contract.EVENT_PATTERN_DETECTED,
            "source": contract.SOURCE_SYSTEM,
            "timestamp": stamp,
            "data": data,
        }

    def _reference(self, s: Signal, stamp: float, received_at: float | None = None) -> dict[str, Any]:
        """Build with full validation; remember what it accepted so the next such signal goes direct."""
        times = self.times(s.timeframe, s.start) if type(s.timeframe) is type(s.start) is int else None
        event = signal_to_event(s, now=stamp, times=times, received_at=received_at)
        if len(self._symbols) >= self.MAX_TRUSTED or len(self._names) >= self.MAX_TRUSTED:
            self._symbols.clear()
            self._names.clear()
        if type(s.symbol) is str and type(s.timeframe) is int:
            self._symbols.add(s.symbol)
            self._names.add((s.pattern, s.direction, s.timeframe))
            self._frames[s.timeframe] = (tier_for(s.timeframe), event["data"]["timeframe"])
        return event


def _finite_float(value: object) -> bool:
    """What the direct path may stamp as is: a finite float (anything else goes the reference way)."""
    return type(value) is float and math.isfinite(value)


def flow_ids(count: int) -> list[str]:
    """`count` canonical lower-case UUID4 strings, as `str(uuid.uuid4())` makes them (16 bytes from
    os.urandom, version and variant bits set), formatted in one numpy pass, not one UUID object each."""
    raw = np.frombuffer(os.urandom(16 * count), np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    nibbles = np.empty((count, 32), np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    digits = _HEX[nibbles]
    chars = np.full((count, 36), ord("-"), np.uint8)
    for lo, hi, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        chars[:, at : at + hi - lo] = digits[:, lo:hi]
    text = chars.tobytes().decode("ascii")
    return [text[i : i + 36] for i in range(0, 36 * count, 36)]


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
