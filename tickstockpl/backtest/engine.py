"""Signals in, trades out: one symbol at a time, one open position per symbol.

The rules (docs/backtesting.md has the worked example):
- a signal on bar i (known at its close) enters at bar i+1's open, in the signal's direction; neutral
  signals (Doji) carry no direction and are counted, not traded;
- several signals on one bar: the most confident directional one wins (ties: the detector's order);
- a signal while a position is open is skipped; one on the exit bar itself may enter next bar;
- fills move `slippage_rate` against us; commission is `commission_rate` of each fill's notional;
- each trade is sized at `max_position_size` x initial capital (no compounding, so trades are
  independent and the position-size cap holds for every trade);
- exit on the first bar, entry bar included, whose range reaches the stop (checked first: the
  cautious reading when a bar reaches both) or the target, at that level or at the open if the bar
  gapped through it; otherwise at the close of the `max_holding_bars`-th bar, or of the last bar.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tickstockpl.backtest.jobs import Parameters
from tickstockpl.backtest.signals import FLAT, LONG, Signal

FloatArray = npt.NDArray[np.float64]

STOP_LOSS, TAKE_PROFIT, MAX_HOLDING, END_OF_DATA = "stop_loss", "take_profit", "max_holding", "end_of_data"


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
    commission: float
    pnl: float
    exit_reason: str


class Simulation(NamedTuple):
    trades: list[Trade]
    signals: int  # signals on bars inside the range
    neutral: int  # of which carried no direction
    skipped: int  # directional signals not traded (position open, or no next bar)


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


def simulate(history: History, signals: Iterable[Signal], params: Parameters) -> Simulation:
    """Trades for one symbol (see the module docstring for the rules)."""
    chosen, seen, neutral = choose(signals, history.first)
    trades: list[Trade] = []
    busy_until = -1
    for signal in chosen:
        if signal.bar_index < busy_until or signal.bar_index + 1 >= len(history):
            continue
        trade = enter(history, signal, params)
        trades.append(trade)
        busy_until = trade.exit_index
    return Simulation(trades, seen, neutral, len(chosen) - len(trades))


def enter(history: History, signal: Signal, params: Parameters) -> Trade:
    """The one trade a signal opens at the next bar's open, followed to its exit."""
    side = signal.direction
    entry = signal.bar_index + 1
    slip = params.slippage_rate
    entry_price = float(history.open[entry]) * (1 + side * slip)
    quantity = params.max_position_size * params.initial_capital / entry_price
    stop = entry_price * (1 - side * params.stop_loss_pct)
    target = entry_price * (1 + side * params.take_profit_pct)
    last = min(entry + params.max_holding_bars, len(history)) - 1
    window = slice(entry, last + 1)
    opens = history.open[window]
    if side == LONG:
        stop_hit, take_hit = history.low[window] <= stop, history.high[window] >= target
    else:
        stop_hit, take_hit = history.high[window] >= stop, history.low[window] <= target
    hits = np.flatnonzero(stop_hit | take_hit)
    if len(hits):
        k = int(hits[0])
        exit_index = entry + k
        level, reason = (stop, STOP_LOSS) if stop_hit[k] else (target, TAKE_PROFIT)
        # Gapped through the level: the first price available is the open.
        gapped = (float(opens[k]) - level) * side * (1 if reason == TAKE_PROFIT else -1) > 0
        raw_exit = float(opens[k]) if gapped else level
    else:
        exit_index = last
        raw_exit = float(history.close[last])
        reason = MAX_HOLDING if last == entry + params.max_holding_bars - 1 else END_OF_DATA
    exit_price = raw_exit * (1 - side * slip)
    commission = params.commission_rate * quantity * (entry_price + exit_price)
    pnl = side * quantity * (exit_price - entry_price) - commission
    return Trade(
        symbol=history.symbol,
        pattern=signal.pattern,
        direction=side,
        signal_index=signal.bar_index,
        entry_index=entry,
        exit_index=exit_index,
        entry_time=int(history.times[entry]),
        exit_time=int(history.times[exit_index]),
        entry_price=entry_price,
        exit_price=exit_price,
        quantity=quantity,
        commission=commission,
        pnl=pnl,
        exit_reason=reason,
    )
