"""A synthetic market that exercises every pattern: the embedded default for `make up`.

Deterministic given (seed, symbols, bar length): one numpy Generator drives all symbols. The walk has
  - volatility clusters: GARCH(1,1) variance plus rare volatility bursts;
  - volume that follows volatility, with occasional spikes (x4..x8);
  - levels that get tested and broken: each symbol keeps a support or resistance level near its price;
    closes that would cross it are turned back (tests) until the level's time is up, then price breaks
    through on heavy volume and a new level forms later.
Prices are rounded to cents, as real quotes are, which also makes exact ties (dojis) possible.

On a clock (SyntheticSource) no bar is ever stamped later than the wall clock: the consumer would show
its patterns "from the future". To still publish within seconds of `make up` at an accelerated speed,
the session starts `lookback_s` in the past and runs at `speed` until it meets the clock (after
lookback / (speed - 1) of wall time: 7 days at 60x is 2 h 51 min), then at real time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from tickstockpl.bars import Bar
from tickstockpl.patterns.sessions import SessionCalendar
from tickstockpl.sources import session_clock
from tickstockpl.sources.pacing import Pacer

DEFAULT_LOOKBACK_S = 7 * 86_400  # how far back an accelerated session starts (TICKSTOCKPL_SYNTHETIC_LOOKBACK)
log = logging.getLogger("tickstockpl.synthetic")
BASE_SIGMA = 0.003  # per-bar volatility at rest
ALPHA, BETA = 0.08, 0.88  # GARCH weights: persistence ALPHA + BETA < 1


class SyntheticMarket:
    """The generator itself, stepped one boundary at a time (no clock, no I/O)."""

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int = 42,
        bar_seconds: int = 60,
        start: int = 0,
        sessions: SessionCalendar | None = None,
    ) -> None:
        self.symbols = list(symbols)
        self.bar_seconds = bar_seconds
        self.sessions = sessions  # lay the bars on this calendar's session minutes (nights skipped)
        self.next_start = start if sessions is None else sessions.next_session_time(start)
        n = len(self.symbols)
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        self._close = np.round(rng.uniform(20, 500, n), 2)
        self._var = np.full(n, BASE_SIGMA**2)
        self._last_ret = np.zeros(n)
        self._base_volume = rng.uniform(2e4, 5e5, n)
        self._level = np.full(n, np.nan)
        self._kind = np.ones(n)  # +1 resistance above, -1 support below
        self._bars_left = np.zeros(n)  # bars until the level gives way
        self._cooldown = rng.integers(5, 30, n).astype(float)
        self._run_left = np.zeros(n)
        self._run_dir = np.ones(n)

    def step(self) -> list[Bar]:
        """One closed bar for every symbol at the next boundary."""
        rng, n = self._rng, len(self.symbols)
        omega = BASE_SIGMA**2 * (1 - ALPHA - BETA)
        self._var = omega + ALPHA * self._last_ret**2 + BETA * self._var
        self._var = np.where(rng.random(n) < 0.004, self._var * 8, self._var)  # a volatility burst
        self._var = np.minimum(self._var, (8 * BASE_SIGMA) ** 2)
        sigma = np.sqrt(self._var)
        shock = rng.standard_normal(n) * np.where(rng.random(n) < 0.02, 2.5, 1.0)
        # Momentum runs of 3-5 bars (what soldiers and crows are made of).
        start_run = (self._run_left <= 0) & (rng.random(n) < 0.01)
        self._run_dir = np.where(start_run, np.where(rng.random(n) < 0.5, 1.0, -1.0), self._run_dir)
        self._run_left = np.where(start_run, rng.integers(3, 6, n), self._run_left - 1)
        running = self._run_left > 0
        shock = np.where(running, self._run_dir * (1.5 + 0.3 * np.abs(shock)), shock)
        ret = sigma * shock
        gap = rng.normal(0, 0.25, n)
        gap = np.where(running, -self._run_dir * np.abs(gap), gap)  # runs open inside the prior body
        open_ = self._close * np.exp(gap * sigma)
        close = open_ * np.exp(ret)
        close, breakout = self._levels(open_, close, sigma)
        close = np.maximum(close, 0.05)
        wick_up, wick_down = np.abs(rng.standard_normal((2, n))) * 0.6 * sigma
        wick_up = np.where(
            running & (self._run_dir > 0), wick_up * 0.05, wick_up
        )  # soldiers close near highs
        wick_down = np.where(running & (self._run_dir < 0), wick_down * 0.05, wick_down)  # crows near lows
        high = np.maximum(open_, close) * np.exp(wick_up)
        low = np.minimum(open_, close) * np.exp(-wick_down)
        open_, high, low, close = (np.round(x, 2) for x in (open_, high, low, close))
        high = np.maximum.reduce([high, open_, close])
        low = np.maximum(np.minimum.reduce([low, open_, close]), 0.01)
        spike = np.where(rng.random(n) < 0.012, rng.uniform(4, 8, n), 1.0) * np.where(breakout, 4.0, 1.0)
        move = np.abs(np.log(close / self._close)) / BASE_SIGMA
        volume = np.round(
            self._base_volume * np.exp(0.35 * rng.standard_normal(n)) * (0.6 + 0.25 * move) * spike
        )
        self._last_ret = np.log(close / self._close)
        self._close = close
        start = self.next_start
        self.next_start += self.bar_seconds
        if self.sessions is not None:
            self.next_start = self.sessions.next_session_time(self.next_start)
        return [
            Bar(sym, self.bar_seconds, start, o, h, lo, c, v)
            for sym, o, h, lo, c, v in zip(
                self.symbols,
                open_.tolist(),
                high.tolist(),
                low.tolist(),
                close.tolist(),
                volume.tolist(),
                strict=True,
            )
        ]

    def _levels(
        self, open_: np.ndarray, close: np.ndarray, sigma: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Turn closes back at each symbol's level until it breaks; form new levels after a cooldown."""
        rng, n = self._rng, len(close)
        active = ~np.isnan(self._level)
        beyond = active & (self._kind * (close - self._level) > 0)
        holds = beyond & (self._bars_left > 0)
        # A test: the close is pushed back inside, by a fraction of the overshoot plus a little.
        bounce = self._level - self._kind * (np.abs(close - self._level) * 0.5 + self._level * sigma * 0.3)
        close = np.where(holds, bounce, close)
        breakout = active & (self._bars_left <= 0)
        push = self._level * (1 + self._kind * sigma * rng.uniform(1.5, 3.0, n))
        close = np.where(
            breakout, np.where(self._kind > 0, np.maximum(close, push), np.minimum(close, push)), close
        )
        self._bars_left -= active
        self._level = np.where(breakout, np.nan, self._level)
        self._cooldown = np.where(breakout, rng.integers(10, 40, n), self._cooldown - (~active))
        form = np.isnan(self._level) & (self._cooldown <= 0)
        kind = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        self._kind = np.where(form, kind, self._kind)
        self._level = np.where(form, close * (1 + kind * sigma * rng.uniform(1.0, 3.0, n)), self._level)
        self._bars_left = np.where(form, rng.integers(15, 60, n), self._bars_left)
        self._cooldown = np.where(form, 1e9, self._cooldown)
        return close, breakout


class SyntheticSource:
    """SyntheticMarket on a clock: one batch per boundary, at `speed` x real time (0 = flat out), but
    never ahead of the wall clock: a bar is yielded only once its close time has come.

    With `sessions` the bars lie on the calendar's session minutes (session_clock.py says where they
    start), paced by bars, not by time: a night takes no time. `history` sessions before the start
    are offered to the detector as `history()` (learned from, never published). Without, the market
    trades every minute from `lookback_s` back, at `speed` until it meets the clock."""

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int = 42,
        bar_seconds: int = 60,
        speed: float = 1.0,
        start: int | None = None,
        limit: int | None = None,
        lookback_s: int = DEFAULT_LOOKBACK_S,
        sessions: SessionCalendar | None = None,
        history: int = 0,
    ) -> None:
        if lookback_s < 0:
            raise ValueError(f"the synthetic lookback must be >= 0 s, got {lookback_s}")
        if start is None and sessions is not None:
            start = session_clock.live_start(sessions, int(time.time()))
        if start is None:  # on the bar grid of the wall clock, so bars look live
            now = int(time.time()) // bar_seconds * bar_seconds
            catches_up = speed == 0 or speed > 1  # at real time or slower it never would: start now
            start = now - (lookback_s // bar_seconds * bar_seconds if catches_up else 0)
            if start < now:
                log.info(
                    "synthetic session starts %d s back, at %gx until it meets the clock, then in real time",
                    now - start,
                    speed,
                )
        first = start
        if sessions is not None and history > 0:
            first = session_clock.history_start(sessions, start, history)
        self.market = SyntheticMarket(
            symbols, seed=seed, bar_seconds=bar_seconds, start=first, sessions=sessions
        )
        self.live_from = start if sessions is None else sessions.next_session_time(start)
        self.speed = speed
        self.limit = limit
        self.rejected: Counter[str] = Counter()

    def history(self, stop: threading.Event) -> Iterator[list[Bar]]:
        """The bars before the live part (none without `history`), flat out."""
        while self.market.next_start < self.live_from and not stop.is_set():
            yield self.market.step()

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        for _ in self.history(stop):  # history nobody asked for is skipped, never sent as live
            pass
        pacer = Pacer(self.speed)  # by bars, not by data time: a night between sessions takes none
        not_ahead = Pacer(0, wall_clock=time.time)  # and no bar stamped after the wall clock
        pacer.wait_until(0, stop)  # the clock starts at the first bar's open
        produced = 0
        while self.limit is None or produced < self.limit:
            closes_at = self.market.next_start + self.market.bar_seconds
            if not pacer.wait_until((produced + 1) * self.market.bar_seconds, stop):
                return
            if not not_ahead.wait_until(closes_at, stop):
                return
            yield self.market.step()
            produced += 1

    def close(self) -> None:
        return None
