"""Logging to stdout: TickStockAppV2's launcher pipes stderr and never reads it (contract §6).

Every line is one line: the formatter escapes control characters (a newline included) in the message,
so a value from outside (a job_id, a ticker) can never forge a line of its own, and caps the message's
length, so one huge value cannot rotate the log file away. A traceback, when there is one, follows on
indented lines that cannot pass for a log line. Rejected input is logged through `SampledLog`: the
first of a kind at once, then at most one line per interval with the count of those not shown.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable

MAX_MESSAGE_CHARS = 2_000  # one log message, after escaping
MAX_TRACEBACK_CHARS = 8_000
MAX_VALUE_CHARS = 120  # one value from outside, as `escape` shows it by default
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """A value from outside, safe for one log line: control characters as escapes, at most `limit`
    characters (then `…(+N chars)`). Bytes are shown as text with undecodable bytes escaped."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes | bytearray) else str(value)
    extra = len(text) - limit
    if extra > 0:
        text = text[:limit]
    text = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return f"{text}…(+{extra} chars)" if extra > 0 else text


class OneLineFormatter(logging.Formatter):
    """The usual format, with the message escaped and capped, and the traceback indented and capped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message, MAX_MESSAGE_CHARS)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        text = super().formatException(ei)[:MAX_TRACEBACK_CHARS]
        return "\n".join("    | " + escape(line, MAX_MESSAGE_CHARS) for line in text.splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join("    | " + line for line in stack_info[:MAX_TRACEBACK_CHARS].splitlines())


def setup_logging(level: str = "INFO", name: str = "tickstockpl") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(OneLineFormatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class SampledLog:
    """Log lines about rejected input, at most one per `key` every `interval_s` seconds.

    Why: a flood of bad messages must be visible (the first is logged at once) without letting the
    flood write the log: the next line for that key says how many were not shown in between."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = logger
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()
        self.shown = 0
        self.suppressed = 0

    def warning(self, key: str, message: str, *args: object) -> bool:
        """Log `message % args` (escaped by the formatter) unless `key` was logged within the interval."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                self.suppressed += 1
                return False
            if len(self._last) > 1_000:  # keys are a fixed set of reasons; this is only a guard
                self._last.clear()
            self._last[key] = now
            skipped = self._suppressed.pop(key, 0)
            self.shown += 1
        suffix = f" ({skipped} more like this not shown)" if skipped else ""
        self._log.warning(message + suffix, *args)
        return True
