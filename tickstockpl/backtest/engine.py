"""Signals in, trades out: every symbol of a job on one timeline, sharing one pot of cash.

The rules (docs/backtesting.md has the worked examples):
- a signal on bar i (known at its close) enters at bar i+1's open, in the signal's direction; neutral
  signals (Doji) carry no direction and are counted, not traded;
- several signals on one bar: the most confident directional one wins (ties: the detector's order);
- one position per symbol: a signal while it is open is skipped; one on the exit bar may enter next bar;
- fills move `slippage_rate` against us; commission is `commission_rate` of each fill's notional;
- exit on the first bar, entry bar included, whose range reaches the stop (checked first: the
  cautious reading when a bar reaches both) or the target, at that level or at the open if the bar
  gapped through it; otherwise at the close of the `max_holding_bars`-th bar, or of the last bar;
- capital: an entry at time T commits `max_position_size` x equity (initial capital plus the P&L of
  trades closed before T), shares and entry commission together, and only if that much cash is free
  (equity minus what open positions committed); otherwise it is skipped as unfunded. Entries at one
  time go most confident first, then in the job's symbol order.

The exit of a trade does not depend on its size, so each symbol's candidates are priced per share
first (`price`, the symbol's bars can then be dropped) and capital is allocated afterwards (`allocate`).
A book keeps its candidates as one numpy record each (CANDIDATE_DTYPE, ~70 bytes, not a few hundred
as Python objects), so hundreds of symbols over decades fit (issue 14).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tickstockpl.backtest.jobs import Parameters
from tickstockpl.backtest.signals import FLAT, LONG, Signal

FloatArray = npt.NDArray[np.float64]

STOP_LOSS, TAKE_PROFIT, MAX_HOLDING, END_OF_DATA = "stop_loss", "take_profit", "max_holding", "end_of_data"
EXIT_REASONS = (STOP_LOSS, TAKE_PROFIT, MAX_HOLDING, END_OF_DATA)
# Rounding slack, as a fraction of initial capital, so ten entries of 0.1 x equity all fit.
CASH_SLACK = 1e-9


class History(NamedTuple):
    """One symbol's bars, oldest first; bars before `first` are warm-up for the detector only."""

    symbol: str
    times: npt.NDArray[np.int64]  # bar start, epoch seconds
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    first: int = 0

    def __len__(self) -> int:
        return len(self.times)

    @property
    def bars_in_range(self) -> int:
        return len(self.times) - self.first


class Candidate(NamedTuple):
    """A tradable signal priced per share, before capital decides whether it is taken."""

    symbol: str
    pattern: str
    direction: int  # +1 long, -1 short
    confidence: float
    signal_index: int
    entry_index: int
    exit_index: int
    entry_time: int
    exit_time: int
    entry_price: float  # fill, slippage included
    exit_price: float
    exit_reason: str


class Trade(NamedTuple):
    symbol: str
    pattern: str
    direction: int  # +1 long, -1 short
    signal_index: int
    entry_index: int
    exit_index: int
    entry_time: int
    exit_time: int
    entry_price: float  # fill, slippage included
    exit_price: float
    quantity: float
    committed: float  # cash set aside at entry: quantity x entry_price plus the entry commission
    commission: float  # entry and exit
    pnl: float
    exit_reason: str


# A Candidate as one record: the pattern and exit reason as codes (Book.patterns, EXIT_REASONS).
CANDIDATE_DTYPE = np.dtype(
    [
        ("signal_index", np.int64),
        ("entry_index", np.int64),
        ("exit_index", np.int64),
        ("entry_time", np.int64),
        ("exit_time", np.int64),
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("confidence", np.float64),
        ("direction", np.int8),
        ("pattern", np.int16),
        ("reason", np.int8),
    ]
)


class Book(NamedTuple):
    """One symbol's candidates and signal counts (see `price`)."""

    symbol: str
    candidates: npt.NDArray[np.void]  # CANDIDATE_DTYPE records, in signal order
    patterns: tuple[str, ...]  # the names the records' `pattern` codes stand for
    signals: int  # signals on bars inside the range
    neutral: int  # of which carried no direction
    no_next_bar: int  # directional signals on the last bar: no open to enter at

    def candidate(self, n: int) -> Candidate:
        """The `n`th candidate as a Candidate (one `.item()`: a field at a time costs ~1 us each)."""
        (
            signal,
            entry,
            exit_,
            entry_time,
            exit_time,
            entry_price,
            exit_price,
            confidence,
            direction,
            pattern,
            reason,
        ) = self.candidates[n].item()
        return Candidate(
            symbol=self.symbol,
            pattern=self.patterns[pattern],
            direction=direction,
            confidence=confidence,
            signal_index=signal,
            entry_index=entry,
            exit_index=exit_,
            entry_time=entry_time,
            exit_time=exit_time,
            entry_price=entry_price,
            exit_price=exit_price,
            exit_reason=EXIT_REASONS[reason],
        )


def pack(symbol: str, candidates: Sequence[Candidate], signals: int, neutral: int, no_next_bar: int) -> Book:
    """A Book holding `candidates` as records."""
    patterns = tuple(dict.fromkeys(c.pattern for c in candidates))
    code = {name: index for index, name in enumerate(patterns)}
    records = np.array(
        [
            (
                c.signal_index,
                c.entry_index,
                c.exit_index,
                c.entry_time,
                c.exit_time,
                c.entry_price,
                c.exit_price,
                c.confidence,
                c.direction,
                code[c.pattern],
                EXIT_REASONS.index(c.exit_reason),
            )
            for c in candidates
        ],
        dtype=CANDIDATE_DTYPE,
    )
    return Book(symbol, records, patterns, signals, neutral, no_next_bar)


class Simulation(NamedTuple):
    trades: list[Trade]  # in order of entry
    signals: int  # signals on bars inside the range
    neutral: int  # of which carried no direction
    skipped: int  # directional signals not traded: position open, no next bar, or unfunded
    unfunded: int  # of the skipped, those for which the cash was not there


def choose(signals: Iterable[Signal], first: int = 0) -> tuple[list[Signal], int, int]:
    """The tradable signal per bar from `first` on; also (signals seen, neutral ones)."""
    best: dict[int, Signal] = {}
    seen = neutral = 0
    for signal in signals:
        if signal.bar_index < first:
            continue
        seen += 1
        if signal.direction == FLAT:
            neutral += 1
            continue
        held = best.get(signal.bar_index)
        if held is None or signal.confidence > held.confidence:
            best[signal.bar_index] = signal
    return [best[index] for index in sorted(best)], seen, neutral


def price(history: History, signals: Iterable[Signal], params: Parameters) -> Book:
    """Every tradable signal of one symbol followed to its exit, per share (size comes later)."""
    chosen, seen, neutral = choose(signals, history.first)
    tradable = [signal for signal in chosen if signal.bar_index + 1 < len(history)]
    # Plain lists: a trade looks at a few bars, where a Python loop beats numpy's per-call cost.
    bars = _Bars(
        history.symbol,
        history.times.tolist(),
        history.open.tolist(),
        history.high.tolist(),
        history.low.tolist(),
        history.close.tolist(),
    )
    candidates = [_follow(bars, signal, params) for signal in tradable]
    return pack(history.symbol, candidates, seen, neutral, len(chosen) - len(tradable))


def allocate(books: Sequence[Book], params: Parameters) -> Simulation:
    """Walk all symbols' candidates by entry time, entering those the symbol and the cash allow."""
    parts = [book.candidates for book in books]
    records = np.concatenate(parts) if parts else np.empty(0, CANDIDATE_DTYPE)
    owners = np.repeat(np.arange(len(books)), [len(part) for part in parts])
    numbers = np.concatenate([np.arange(len(part)) for part in parts]) if parts else np.empty(0, np.int64)
    # Entry time, then most confident; the sort is stable, so ties keep the job's symbol order.
    order = np.lexsort((-records["confidence"], records["entry_time"]))
    queue = zip(
        records["entry_time"][order].tolist(),
        records["signal_index"][order].tolist(),
        owners[order].tolist(),
        numbers[order].tolist(),
        strict=True,
    )
    equity = params.initial_capital  # realized: initial capital + P&L of closed trades
    committed = 0.0  # cash set aside by open positions
    slack = CASH_SLACK * params.initial_capital
    open_: list[tuple[int, int, float, float]] = []  # heap of (exit_time, entry order, committed, pnl)
    busy_until = [-1] * len(books)  # per symbol: exit bar of its last trade
    trades: list[Trade] = []
    blocked = unfunded = 0
    for entry_time, signal_index, k, n in queue:
        # Capital comes back after the exit bar: a position closing on this very bar still holds it.
        while open_ and open_[0][0] < entry_time:
            _, _, stake, pnl = heapq.heappop(open_)
            equity += pnl
            committed -= stake
        if not open_:
            committed = 0.0  # no rounding residue while flat
        if signal_index < busy_until[k]:
            blocked += 1
            continue
        stake = params.max_position_size * equity
        if stake <= 0 or stake > equity - committed + slack:
            unfunded += 1
            continue
        trade = fill(books[k].candidate(n), stake, params)
        heapq.heappush(open_, (trade.exit_time, len(trades), stake, trade.pnl))
        committed += stake
        busy_until[k] = trade.exit_index
        trades.append(trade)
    return Simulation(
        trades,
        signals=sum(book.signals for book in books),
        neutral=sum(book.neutral for book in books),
        skipped=sum(book.no_next_bar for book in books) + blocked + unfunded,
        unfunded=unfunded,
    )


def simulate(history: History, signals: Iterable[Signal], params: Parameters) -> Simulation:
    """One symbol alone (the job's runner prices every symbol, then allocates them together)."""
    return allocate([price(history, signals, params)], params)


def fill(candidate: Candidate, stake: float, params: Parameters) -> Trade:
    """The candidate as a trade committing `stake`: shares at the entry fill plus the entry commission."""
    rate = params.commission_rate
    quantity = stake / (candidate.entry_price * (1 + rate))
    commission = rate * quantity * (candidate.entry_price + candidate.exit_price)
    pnl = candidate.direction * quantity * (candidate.exit_price - candidate.entry_price) - commission
    return Trade(
        symbol=candidate.symbol,
        pattern=candidate.pattern,
        direction=candidate.direction,
        signal_index=candidate.signal_index,
        entry_index=candidate.entry_index,
        exit_index=candidate.exit_index,
        entry_time=candidate.entry_time,
        exit_time=candidate.exit_time,
        entry_price=candidate.entry_price,
        exit_price=candidate.exit_price,
        quantity=quantity,
        committed=stake,
        commission=commission,
        pnl=pnl,
        exit_reason=candidate.exit_reason,
    )


class _Bars(NamedTuple):
    symbol: str
    times: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]


def _follow(bars: _Bars, signal: Signal, params: Parameters) -> Candidate:
    """Where a trade opened by `signal` at the next bar's open would exit, and at what fill."""
    side = signal.direction
    entry = signal.bar_index + 1
    slip = params.slippage_rate
    entry_price = bars.open[entry] * (1 + side * slip)
    stop = entry_price * (1 - side * params.stop_loss_pct)
    target = entry_price * (1 + side * params.take_profit_pct)
    last = min(entry + params.max_holding_bars, len(bars.times)) - 1
    for index in range(entry, last + 1):
        high, low, open_ = bars.high[index], bars.low[index], bars.open[index]
        if side == LONG:
            if low <= stop:  # the stop first: the cautious reading when the bar reaches both
                raw_exit, reason = min(open_, stop), STOP_LOSS  # gapped below: out at the open
                break
            if high >= target:
                raw_exit, reason = max(open_, target), TAKE_PROFIT  # gapped above: the better open
                break
        else:
            if high >= stop:
                raw_exit, reason = max(open_, stop), STOP_LOSS
                break
            if low <= target:
                raw_exit, reason = min(open_, target), TAKE_PROFIT
                break
    else:
        index = last
        raw_exit = bars.close[last]
        reason = MAX_HOLDING if last == entry + params.max_holding_bars - 1 else END_OF_DATA
    return Candidate(
        symbol=bars.symbol,
        pattern=signal.pattern,
        direction=side,
        confidence=signal.confidence,
        signal_index=signal.bar_index,
        entry_index=entry,
        exit_index=index,
        entry_time=bars.times[entry],
        exit_time=bars.times[index],
        entry_price=entry_price,
        exit_price=raw_exit * (1 - side * slip),
        exit_reason=reason,
    )
