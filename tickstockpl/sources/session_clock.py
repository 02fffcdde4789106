"""Where the synthetic market's session time starts: in the past, a little before a session's close.

The synthetic market can lay its bars on the exchange's session minutes (sessions.py), so that its
higher timeframes close as a real feed's do (5 m, 1 h, the day at 16:00 or an early close). At the
default 60x a session of 390 minutes plays in 6.5 minutes, so a daily bar closes every 6.5 minutes.
Its live part starts `BEFORE_CLOSE` before the close of the session `SESSIONS_BACK` sessions ago,
so the first daily bar closes within a minute of the start and the next one 6.5 minutes later; it
is preceded by `history` sessions that the detector only learns from (`SyntheticSource.history`):
a daily pattern needs up to 32 daily bars, which the live feed would take hours to bring.
"""

from __future__ import annotations

import numpy as np

from tickstockpl.patterns.sessions import SessionCalendar

SESSIONS_BACK = 250  # ~a year: at 60x the session clock stays behind the wall clock for ~27 hours
BEFORE_CLOSE = 30 * 60  # the live part begins half an hour before that session's close


def live_start(calendar: SessionCalendar, now: int, sessions_back: int = SESSIONS_BACK) -> int:
    """The first live bar's start: BEFORE_CLOSE before the close of the session `sessions_back`
    sessions before the last one that closed at or before `now` (never later than `now`)."""
    closed = int(np.searchsorted(calendar.closes, now, side="right")) - 1
    index = max(closed - sessions_back, 0)
    return max(int(calendar.closes[index]) - BEFORE_CLOSE, int(calendar.opens[index]))


def history_start(calendar: SessionCalendar, live: int, sessions: int) -> int:
    """The open of the session `sessions` sessions before the one `live` falls in."""
    index = int(np.searchsorted(calendar.opens, live, side="right")) - 1
    return int(calendar.opens[max(index - sessions, 0)])
