"""One validation point on the way out: what the detector's builder returns, `outbox.enqueue` trusts.

So every event the builder returns must be one the contract's full validator accepts unchanged, and
must encode to the same wire bytes as the validated copy would. Checked on the generated signals of
tests/unit/test_events.py, through a builder that already trusts the signal's texts, so that the
direct (cheap-check) path meets the odd numbers too.
"""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.unit.test_events import NOW, PLAIN, PROPERTY, REFUSALS, replaced, signals
from tickstockpl import contract
from tickstockpl.patterns import EventBuilder, Signal, signal_to_event


def warmed_builder(signal: Signal) -> EventBuilder:
    """A builder that has accepted the signal's symbol, pattern, direction and timeframe, if valid."""
    builder = EventBuilder()
    for template in (
        replaced(PLAIN, timeframe=signal.timeframe, pattern=signal.pattern, direction=signal.direction),
        replaced(PLAIN, symbol=signal.symbol),
    ):
        try:
            builder.build([template], now=NOW)
        except REFUSALS:
            pass
    return builder


def assert_trustworthy(event: dict[str, object]) -> None:
    assert type(event) is contract.BuiltPatternEvent
    validated = contract.validate_pattern_event(dict(event))  # raises if the builder let poison through
    assert validated == event
    assert contract.encode(event) == contract.encode(validated)  # the bytes enqueue pushes


@PROPERTY
@given(signal=signals)
def test_every_built_event_is_one_the_full_validator_accepts(signal: Signal) -> None:
    try:
        built = warmed_builder(signal).build([signal, signal], now=NOW)
    except REFUSALS:
        with pytest.raises(REFUSALS):  # refused by the reference builder too: nothing is trusted
            signal_to_event(signal, now=NOW)
        return
    for event in built:
        assert_trustworthy(event)


@pytest.mark.parametrize("now", [float("nan"), float("inf"), 0.0, NOW])
def test_the_envelope_time_path_marks_only_valid_events(now: float) -> None:
    try:
        built = EventBuilder().build([PLAIN], now=now)
    except REFUSALS:
        with pytest.raises(REFUSALS):
            signal_to_event(PLAIN, now=now)
        return
    for event in built:
        assert_trustworthy(event)
