"""bench_boundary's subscriber: when each pattern event reached it, cheaply enough to keep up with a burst.

redis-py's pubsub parses every message in Python (20-30 µs each): over a burst of 6,000 events that
alone would put 150 ms between the first receipt and the last, and the benchmark would measure its
own subscriber. Here the socket is read in large chunks and each chunk's arrival time is noted;
the messages are cut out of the bytes, and their stamps read, only once the socket has been quiet
for QUIET_S (between bursts). A message's receipt time is the time the read that completed it
returned: when a consumer could first have acted on it.

Runs in its own process (`start`), so the benchmark's own work never delays a read. Per message it
keeps (received, data.bar_received_at, envelope timestamp, data.bar_start), as floats in an array.
"""

from __future__ import annotations

import array
import bisect
import multiprocessing
import multiprocessing.connection
import select
import socket
import time
from dataclasses import dataclass
from typing import Any

QUIET_S = 0.1  # no bytes for this long: parse what came (3 µs a message: harmless even mid-burst)
IDLE_S = 0.2  # what the benchmark leaves between two bursts: the subscriber parses meanwhile
FIELDS = 4  # received, bar_received_at, envelope timestamp, bar_start
_STAMP = b'"bar_received_at":'
_ENVELOPE_TIME = b'"timestamp":'  # the envelope's comes first (event_type, source, timestamp, data)
_BAR_START = b'"bar_start":'


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _number_after(payload: bytes, key: bytes, start: int = 0) -> float:
    """The JSON number after `key` in `payload`, or NaN when the key is not there."""
    at = payload.find(key, start)
    if at < 0:
        return float("nan")
    at += len(key)
    end = at
    while end < len(payload) and payload[end] not in b",}":
        end += 1
    return float(payload[at:end])


def _parse(buffer: bytearray, marks: list[tuple[int, float]], prefix: bytes, out: array.array[float]) -> int:
    """Cut the complete messages out of `buffer` into `out`; return how many bytes they took.

    `marks` are (end offset in the buffer, time) of each read: a message's receipt time is that of
    the first read that reached its last byte.
    """
    ends = [end for end, _ in marks]
    pos = 0
    while True:
        if len(buffer) - pos < len(prefix) + 3:
            return pos
        if buffer[pos : pos + len(prefix)] != prefix:
            raise RuntimeError(f"unexpected reply from Redis: {bytes(buffer[pos : pos + 80])!r}")
        length_end = buffer.find(b"\r\n", pos + len(prefix))
        if length_end < 0:
            return pos
        size = int(buffer[pos + len(prefix) : length_end])
        start = length_end + 2
        end = start + size + 2
        if end > len(buffer):
            return pos
        payload = bytes(buffer[start : start + size])
        received = marks[bisect.bisect_left(ends, end)][1]
        envelope = _number_after(payload, _ENVELOPE_TIME)
        out.extend((received, _number_after(payload, _STAMP), envelope, _number_after(payload, _BAR_START)))
        pos = end


def _listen(
    host: str, port: int, channel: str, ready: Any, control: multiprocessing.connection.Connection
) -> None:
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    name = channel.encode()
    sock.sendall(_command(b"SUBSCRIBE", name))
    reply = b""
    while not reply.endswith(b":1\r\n"):  # the subscribe confirmation ends with the count, 1
        reply += sock.recv(4096)
    ready.set()
    prefix = b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$" % (len(name), name)
    buffer = bytearray()
    marks: list[tuple[int, float]] = []
    out: array.array[float] = array.array("d")
    while True:
        readable, _, _ = select.select([sock, control], [], [], QUIET_S)
        if sock in readable:
            chunk = sock.recv(1 << 20)
            received = time.time()
            if not chunk:
                break
            buffer += chunk
            marks.append((len(buffer), received))
            continue
        if marks:  # quiet: the burst is over
            used = _parse(buffer, marks, prefix, out)
            del buffer[:used]
            marks = [(end - used, at) for end, at in marks if end > used]
        if control in readable:
            if control.recv() == "stop":
                break
            control.send_bytes(out.tobytes())
            out = array.array("d")
    sock.close()


@dataclass
class Subscriber:
    """The subscriber process and the pipe that asks it for what it has received."""

    process: multiprocessing.Process
    control: multiprocessing.connection.Connection

    @classmethod
    def start(cls, host: str, port: int, channel: str) -> Subscriber:
        ready = multiprocessing.Event()
        parent, child = multiprocessing.Pipe()
        process = multiprocessing.Process(
            target=_listen, args=(host, port, channel, ready, child), daemon=True
        )
        process.start()
        if not ready.wait(10):
            raise RuntimeError("the subscriber did not subscribe")
        return cls(process, parent)

    def collect(self) -> list[tuple[float, float, float, float]]:
        """Every message since the last call: (received, bar_received_at, envelope timestamp,
        bar_start). Call it once the last burst has been quiet for longer than QUIET_S."""
        time.sleep(QUIET_S * 2)
        self.control.send("collect")
        values = array.array("d")
        values.frombytes(self.control.recv_bytes())
        return [tuple(values[i : i + FIELDS]) for i in range(0, len(values), FIELDS)]  # type: ignore[misc]

    def stop(self) -> None:
        self.control.send("stop")
        self.process.join(10)
