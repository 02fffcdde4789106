"""bench_boundary's subscriber cuts pub/sub messages out of raw socket reads and dates each by the
read that completed it: what its receipt times, and so the benchmark's figures, rest on."""

from __future__ import annotations

import array
import math

import pytest

from bench.boundary_subscriber import _parse
from tickstockpl import contract
from tickstockpl.patterns import EventBuilder, Signal

CHANNEL = contract.CHANNEL_PATTERNS.encode()
PREFIX = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$" % (len(CHANNEL), CHANNEL)


def message(payload: bytes) -> bytes:
    return PREFIX + b"%d\r\n%s\r\n" % (len(payload), payload)


def events() -> list[bytes]:
    signal = Signal("AAPL", 60, 600, "Doji", "neutral", 0.5, 10.0, 9.5, 100.0)
    built = EventBuilder().build([signal, signal._replace(start=660)], now=1_000.5, received_at=999.25)
    unstamped = EventBuilder().build([signal], now=1_001.0)
    return [contract.encode(event).encode() for event in built + unstamped]


def test_each_message_is_dated_by_the_read_that_completed_it() -> None:
    stream = b"".join(message(payload) for payload in events())
    first_end = len(message(events()[0]))
    # Read 1 stops 5 bytes short of the first message's end; read 3 holds the second's end; the
    # third message's last 3 bytes come in read 4.
    cuts = [first_end - 5, first_end + 40, len(stream) - 3]
    buffer, marks = bytearray(), []
    for at, (start, end) in enumerate(zip([0, *cuts], [*cuts, len(stream)], strict=True)):
        buffer += stream[start:end]
        marks.append((len(buffer), 100.0 + at))
    out: array.array[float] = array.array("d")
    used = _parse(buffer, marks, PREFIX, out)
    assert used == len(stream)
    rows = [tuple(out[i : i + 4]) for i in range(0, len(out), 4)]
    assert [row[0] for row in rows] == [101.0, 102.0, 103.0]
    assert [row[1] for row in rows[:2]] == [999.25, 999.25] and math.isnan(rows[2][1])
    assert [row[2] for row in rows] == [1_000.5, 1_000.5, 1_001.0]  # the envelope's, not data.timestamp
    assert [row[3] for row in rows] == [600.0, 660.0, 600.0]


def test_an_incomplete_message_waits_for_the_next_read() -> None:
    whole = message(events()[0])
    buffer = bytearray(whole[:-1])
    out: array.array[float] = array.array("d")
    assert _parse(buffer, [(len(buffer), 1.0)], PREFIX, out) == 0
    assert len(out) == 0


def test_anything_but_a_message_on_the_channel_stops_the_benchmark() -> None:
    buffer = bytearray(b"-ERR something went wrong\r\n" + b"x" * 80)
    with pytest.raises(RuntimeError, match="unexpected reply"):
        _parse(buffer, [(len(buffer), 1.0)], PREFIX, array.array("d"))
