"""The exchange's trading sessions (XNYS by default), as plain epoch-second arrays.

Why a library: holidays, early closes (13:00 on the day after Thanksgiving, Christmas Eve...) and
ad-hoc closures (2001-09-11..14, 2012-10-29..30, national days of mourning) are history, not rules
one can write down once. `exchange_calendars` keeps them (docs/patterns.md, "Timeframes", says why
it and not `pandas_market_calendars`, which wraps it). It is asked once, at start; every lookup after
that is a numpy `searchsorted` over the session opens, so a boundary of thousands of bars costs a few
array operations.

Periods: the timeframes below a day are cut from each session's open (09:30, 09:35, ... for 5 m;
09:30, 10:30, ..., 15:30 for 1 h), and the last period of a session ends at its close (15:30-16:00,
or 12:30-13:00 on an early close). The daily period is the session itself. A time outside every
session (pre-market, a night, a holiday) is in no period.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Final

import numpy as np
import numpy.typing as npt

DAY: Final = 86_400
CALENDAR_START: Final = "2000-01-01"  # covers the oldest real data file (data/README.md)
AHEAD_S: Final = 366 * DAY  # the calendar extends this far past the wall clock, never further

IntArray = npt.NDArray[np.int64]


class SessionCalendar:
    """Session opens and closes of one exchange, in epoch seconds, from CALENDAR_START to a year ahead.

    A later time (a process running for a year) rebuilds the calendar, but only up to a year past the
    wall clock: a bar from far in the future cannot make it compute decades of holidays.
    """

    def __init__(self, name: str = "XNYS", *, start: str = CALENDAR_START) -> None:
        self.name = name
        self._start = start
        self.opens: IntArray = np.zeros(0, np.int64)
        self.closes: IntArray = np.zeros(0, np.int64)
        self._load(int(time.time()) + AHEAD_S)

    def _load(self, until: int) -> None:
        import exchange_calendars  # ~0.8 s to import: only processes that use timeframes pay it

        end = np.datetime64(until, "s").astype("datetime64[D]")
        try:
            with warnings.catch_warnings():  # 4.13 reads Series.values, which pandas 3.1 deprecates
                warnings.simplefilter("ignore", DeprecationWarning)
                calendar = exchange_calendars.get_calendar(self.name, start=self._start, end=str(end))
        except exchange_calendars.errors.CalendarError as exc:  # an unknown name: a setting to fix
            raise ValueError(f"exchange calendar {self.name!r}: {exc}") from None
        self.opens = _epoch_seconds(calendar.opens)
        self.closes = _epoch_seconds(calendar.closes)
        self._until = until

    @property
    def end(self) -> int:
        """The close of the last session the calendar knows."""
        return int(self.closes[-1])

    def _cover(self, latest: int) -> None:
        """Extend the calendar when the data runs past it, within a year of the wall clock."""
        if latest > self.end - DAY and self._until < int(time.time()):
            self._load(int(time.time()) + AHEAD_S)

    def session_index(self, times: IntArray) -> IntArray:
        """For each time, the index of the session it falls in ([open, close)), or -1."""
        if len(times):
            self._cover(int(times.max()))
        index = np.searchsorted(self.opens, times, side="right") - 1
        inside = (index >= 0) & (times < self.closes[np.maximum(index, 0)])
        return np.where(inside, index, -1)

    def periods(self, index: IntArray, starts: IntArray, length: int) -> tuple[IntArray, IntArray]:
        """(start, end) of the period of `length` seconds (DAY: the session) that each time falls in, given
        its session index from `session_index` (which must be >= 0)."""
        opens, closes = self.opens[index], self.closes[index]
        if length >= DAY:
            return opens, closes
        begin = opens + (starts - opens) // length * length
        return begin, np.minimum(begin + length, closes)

    def bar_times(self, length: int, start: int) -> tuple[int, int]:
        """(close, expiry) of the bar of `length` seconds that starts at `start`: when it closes, and the
        close of the next bar of the same length (docs/patterns.md, "expires_at").

        In a session, bars end at the session's close at the latest and the next bar after the last one
        is the next session's first; a daily bar is a session, or (date-stamped CSV bars) a session date
        at 00:00 UTC. Outside the calendar a bar is `length` long and so is the next.
        """
        times = np.array([start], np.int64)
        index = int(self.session_index(times)[0])
        if index < 0:
            return self._date_bar_times(length, start)
        open_, close = int(self.opens[index]), int(self.closes[index])
        if length >= DAY:
            if start != open_:  # a "day" that does not start at the open is no session: plain lengths
                return start + length, start + 2 * length
            end = close
        else:
            end = min(start + length, close)
        if end < close:
            return end, min(end + length, close)
        if index + 1 >= len(self.opens):
            return end, end + length
        next_open, next_close = int(self.opens[index + 1]), int(self.closes[index + 1])
        return end, next_close if length >= DAY else min(next_open + length, next_close)

    def _date_bar_times(self, length: int, start: int) -> tuple[int, int]:
        """Daily bars stamped with their date (00:00 UTC): the next bar is the next session's date."""
        end = start + length
        if length < DAY or start % DAY:
            return end, end + length
        days = self.opens // DAY
        later = np.searchsorted(days, start // DAY, side="right")
        if later == 0 or later >= len(days) or days[later - 1] != start // DAY:
            return end, end + length
        return end, int(days[later]) * DAY + length

    def next_session_time(self, after: int) -> int:
        """`after` itself when it lies in a session, else the next session's open (the synthetic feed
        lays its bars on session time with this)."""
        times = np.array([after], np.int64)
        if int(self.session_index(times)[0]) >= 0:
            return after
        later = int(np.searchsorted(self.opens, after, side="left"))
        return int(self.opens[later]) if later < len(self.opens) else after


def _epoch_seconds(times: Any) -> IntArray:
    """A pandas Series of UTC timestamps as int64 epoch seconds."""
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return np.asarray(naive).astype("datetime64[s]").astype(np.int64)
