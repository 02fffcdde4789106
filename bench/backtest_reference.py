"""An independent, vectorized (pandas/numpy) backtest over the same signals, to check the engine against.

Written from the rules in docs/backtesting.md, not from tickstockpl/backtest/engine.py: every candidate
trade is priced at once on a (trades x max_holding_bars) matrix, and the one-position-per-symbol rule
is then a walk along "next candidate at or after my exit bar" pointers. The tests assert the engine
equals this on hand-made and on real data; the benchmark uses it as the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tickstockpl.backtest.engine import History
from tickstockpl.backtest.jobs import Parameters
from tickstockpl.backtest.signals import Signal


def reference_trades(history: History, signals: Sequence[Signal], params: Parameters) -> pd.DataFrame:
    """One row per trade: symbol, pattern, direction, entry/exit index and time, fills, pnl."""
    n = len(history.times)
    frame = pd.DataFrame(signals, columns=["bar_index", "pattern", "direction", "confidence"])
    frame["order"] = np.arange(len(frame))
    frame = frame[(frame.bar_index >= history.first) & (frame.direction != 0)]
    best = frame.sort_values(["bar_index", "confidence", "order"], ascending=[True, False, True])
    cand = best.drop_duplicates("bar_index", keep="first")
    cand = cand[cand.bar_index + 1 < n].reset_index(drop=True)
    if cand.empty:
        return pd.DataFrame(columns=["symbol", "pattern", "direction", "exit_time", "pnl", "commission"])
    side = cand.direction.to_numpy(dtype=float)
    entry = cand.bar_index.to_numpy() + 1
    hold = params.max_holding_bars
    idx = entry[:, None] + np.arange(hold)[None, :]
    valid = idx < n
    idx = np.minimum(idx, n - 1)
    o, h, low = history.open[idx], history.high[idx], history.low[idx]
    entry_px = history.open[entry] * (1 + side * params.slippage_rate)
    stop = entry_px * (1 - side * params.stop_loss_pct)
    target = entry_px * (1 + side * params.take_profit_pct)
    long = (side > 0)[:, None]
    stop_hit = np.where(long, low <= stop[:, None], h >= stop[:, None]) & valid
    take_hit = np.where(long, h >= target[:, None], low <= target[:, None]) & valid
    hit = stop_hit | take_hit
    has = hit.any(axis=1)
    rows = np.arange(len(cand))
    k = np.where(has, hit.argmax(axis=1), np.minimum(hold, n - entry) - 1)
    exit_idx = entry + k
    ok = o[rows, k]
    by_stop = np.where(side > 0, np.minimum(ok, stop), np.maximum(ok, stop))
    by_take = np.where(side > 0, np.maximum(ok, target), np.minimum(ok, target))
    raw = np.where(has, np.where(stop_hit[rows, k], by_stop, by_take), history.close[exit_idx])
    exit_px = raw * (1 - side * params.slippage_rate)
    qty = params.max_position_size * params.initial_capital / entry_px
    commission = params.commission_rate * qty * (entry_px + exit_px)
    pnl = side * qty * (exit_px - entry_px) - commission
    # One position at a time: from each taken trade, jump to the first candidate at or after its exit.
    following = np.searchsorted(cand.bar_index.to_numpy(), exit_idx, side="left")
    taken, i = [], 0
    while i < len(cand):
        taken.append(i)
        i = int(following[i])
    return pd.DataFrame(
        {
            "symbol": history.symbol,
            "pattern": cand.pattern.to_numpy()[taken],
            "direction": side[taken].astype(int),
            "entry_index": entry[taken],
            "exit_index": exit_idx[taken],
            "exit_time": history.times[exit_idx[taken]],
            "entry_price": entry_px[taken],
            "exit_price": exit_px[taken],
            "commission": commission[taken],
            "pnl": pnl[taken],
        }
    )


def reference_metrics(
    trades: pd.DataFrame, timeline: np.ndarray, initial_capital: float, per_year: float
) -> dict[str, Any]:
    """win_rate, roi, max_drawdown, sharpe_ratio, counts, P&L, with pandas' own cummax/pct_change/std."""
    total = len(trades)
    wins = int((trades.pnl > 0).sum()) if total else 0
    realized = trades.groupby("exit_time").pnl.sum() if total else pd.Series(dtype=float)
    steps = realized.reindex(timeline, fill_value=0.0)
    equity = pd.concat(
        [pd.Series([initial_capital]), initial_capital + steps.cumsum().reset_index(drop=True)]
    )
    peak = equity.cummax()
    returns = equity.pct_change().dropna()
    spread = returns.std(ddof=1) if len(returns) > 1 else 0.0
    sharpe = returns.mean() / spread * math.sqrt(per_year) if spread and np.isfinite(spread) else 0.0
    return {
        "win_rate": wins / total if total else 0.0,
        "roi": float(trades.pnl.sum()) / initial_capital if total else 0.0,
        "max_drawdown": float(((peak - equity) / peak).max()),
        "sharpe_ratio": float(sharpe),
        "total_trades": total,
        "winning_trades": wins,
        "total_pnl": float(trades.pnl.sum()) if total else 0.0,
        "total_commission": float(trades.commission.sum()) if total else 0.0,
        "final_equity": float(equity.iloc[-1]),
    }


def reference_backtest(
    histories: Mapping[str, History],
    signals: Mapping[str, Sequence[Signal]],
    params: Parameters,
    per_year: float = 252.0,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The whole run: trades of every symbol, then the metrics and per-pattern / per-symbol P&L."""
    parts = [reference_trades(histories[s], signals[s], params) for s in histories]
    trades = pd.concat([p for p in parts if not p.empty] or [parts[0]], ignore_index=True)
    timeline = np.unique(np.concatenate([h.times[h.first :] for h in histories.values()]))
    results = reference_metrics(trades, timeline, params.initial_capital, per_year)
    results["pnl_by_pattern"] = trades.groupby("pattern").pnl.sum().to_dict() if len(trades) else {}
    results["pnl_by_symbol"] = trades.groupby("symbol").pnl.sum().to_dict() if len(trades) else {}
    return results, trades
