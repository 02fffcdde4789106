"""Trades in, the numbers the consumer shows out: win rate, ROI, drawdown, Sharpe, breakdowns.

All ratios are fractions (0.05 is 5 %), as the consumer's UI formats them (contract §2.4).
Equity is initial capital plus realized P&L, stepped at each bar time of the run (`timeline`): a
trade's P&L counts at its exit bar. Drawdown and Sharpe are read from that curve; Sharpe is the mean
over the standard deviation (ddof=1) of per-bar returns, annualised with `periods_per_year`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tickstockpl.backtest.engine import Trade
from tickstockpl.bars import DAY_SECONDS

TRADING_DAYS = 252
SESSION_SECONDS = 23_400  # 09:30-16:00


def periods_per_year(timeframe_seconds: int) -> float:
    """Bars in a trading year: 252 for daily bars, 252 x bars per 6.5 h session for intraday ones."""
    if timeframe_seconds >= DAY_SECONDS:
        return TRADING_DAYS * DAY_SECONDS / timeframe_seconds
    return TRADING_DAYS * SESSION_SECONDS / timeframe_seconds


def equity_curve(
    trades: Sequence[Trade], timeline: npt.NDArray[np.int64], initial_capital: float
) -> npt.NDArray[np.float64]:
    """Equity before the first bar, then after each bar of `timeline` (sorted unique bar times)."""
    pnl = np.zeros(len(timeline))
    if trades:
        positions = np.searchsorted(timeline, [t.exit_time for t in trades])
        np.add.at(pnl, positions, [t.pnl for t in trades])
    return initial_capital + np.concatenate([[0.0], np.cumsum(pnl)])


def max_drawdown(equity: npt.NDArray[np.float64]) -> float:
    """Largest fall from a running peak, as a fraction of that peak (capped at 1)."""
    peaks = np.maximum.accumulate(equity)
    return float(min(1.0, np.max((peaks - equity) / peaks))) if len(equity) else 0.0


def sharpe_ratio(equity: npt.NDArray[np.float64], per_year: float) -> float:
    returns = equity[1:] / equity[:-1] - 1.0
    if len(returns) < 2:
        return 0.0
    spread = float(np.std(returns, ddof=1))
    if spread == 0.0 or not math.isfinite(spread):
        return 0.0
    return float(np.mean(returns)) / spread * math.sqrt(per_year)


def _group(trades: Iterable[Trade], initial_capital: float) -> dict[str, Any]:
    pnls = [t.pnl for t in trades]
    wins = sum(1 for p in pnls if p > 0)
    return {
        "total_trades": len(pnls),
        "winning_trades": wins,
        "win_rate": wins / len(pnls) if pnls else 0.0,
        "pnl": float(sum(pnls)),
        "roi": float(sum(pnls)) / initial_capital,
    }


def breakdown(
    trades: Sequence[Trade], key: str, names: Iterable[str], initial_capital: float
) -> dict[str, dict[str, Any]]:
    """Per pattern or per symbol (`key`), every name listed even with no trades; one pass over the
    trades (hundreds of symbols times a million trades would not finish name by name)."""
    groups: dict[str, list[Trade]] = defaultdict(list)
    for trade in trades:
        groups[getattr(trade, key)].append(trade)
    return {name: _group(groups.get(name, ()), initial_capital) for name in names}


def summarize(
    trades: Sequence[Trade],
    timeline: npt.NDArray[np.int64],
    initial_capital: float,
    timeframe_seconds: int,
) -> dict[str, Any]:
    """The headline figures of a run (breakdowns are added by the caller, which knows the names)."""
    equity = equity_curve(trades, timeline, initial_capital)
    overall = _group(trades, initial_capital)
    position_value = [t.quantity * t.entry_price for t in trades]
    returns = [t.pnl / v for t, v in zip(trades, position_value, strict=True)]
    return {
        "win_rate": overall["win_rate"],
        "roi": overall["roi"],
        "max_drawdown": max_drawdown(equity),
        "sharpe_ratio": sharpe_ratio(equity, periods_per_year(timeframe_seconds)),
        "total_trades": overall["total_trades"],
        "winning_trades": overall["winning_trades"],
        "losing_trades": overall["total_trades"] - overall["winning_trades"],
        "total_pnl": overall["pnl"],
        "total_commission": float(sum(t.commission for t in trades)),
        "final_equity": float(equity[-1]),
        "avg_trade_return": float(np.mean(returns)) if returns else 0.0,
    }
