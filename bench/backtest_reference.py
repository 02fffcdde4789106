"""An independent, vectorized (pandas/numpy) backtest over the same signals, to check the engine against.

Written from the rules in docs/backtesting.md, not from tickstockpl/backtest/engine.py. Every candidate
trade of a symbol is priced per share at once on a (candidates x max_holding_bars) matrix. Capital is
then shared in one pass over all symbols' candidates in entry order, where each step recomputes its
state from scratch rather than carrying it: equity = initial capital + the summed P&L of trades whose
exit time is before this entry; cash = equity - the summed stakes of the trades not yet exited; the
symbol is busy if one of its trades has not exited before this entry. The tests assert the engine
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

TRADE_COLUMNS = [
    "symbol",
    "pattern",
    "direction",
    "signal_index",
    "entry_index",
    "exit_index",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "quantity",
    "committed",
    "commission",
    "pnl",
]


def reference_candidates(history: History, signals: Sequence[Signal], params: Parameters) -> pd.DataFrame:
    """Every signal the rules would trade if symbol and cash allowed, priced per share."""
    n = len(history.times)
    frame = pd.DataFrame(signals, columns=["bar_index", "pattern", "direction", "confidence"])
    frame["order"] = np.arange(len(frame))
    frame = frame[(frame.bar_index >= history.first) & (frame.direction != 0)]
    best = frame.sort_values(["bar_index", "confidence", "order"], ascending=[True, False, True])
    cand = best.drop_duplicates("bar_index", keep="first")
    cand = cand[cand.bar_index + 1 < n].reset_index(drop=True)
    side = cand.direction.to_numpy(dtype=float)
    entry = cand.bar_index.to_numpy(dtype=np.int64) + 1
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
    return pd.DataFrame(
        {
            "symbol": history.symbol,
            "pattern": cand.pattern.to_numpy(dtype=object),
            "direction": side.astype(int),
            "confidence": cand.confidence.to_numpy(dtype=float),
            "signal_index": cand.bar_index.to_numpy(dtype=np.int64),
            "entry_index": entry,
            "exit_index": exit_idx,
            "entry_time": history.times[entry],
            "exit_time": history.times[exit_idx],
            "entry_price": entry_px,
            "exit_price": raw * (1 - side * params.slippage_rate),
        }
    )


def reference_allocation(candidates: pd.DataFrame, params: Parameters) -> tuple[pd.DataFrame, int, int]:
    """The trades taken from `candidates` (with a `rank`: the job's symbol order); also (blocked, unfunded).

    At one entry time the most confident candidate goes first, then the lower rank.
    """
    order = candidates.sort_values(["entry_time", "confidence", "rank"], ascending=[True, False, True])
    count = len(order)
    exit_time = np.zeros(count, dtype=np.int64)
    stake = np.zeros(count)
    pnl = np.zeros(count)
    symbol = np.empty(count, dtype=object)
    taken: list[dict[str, Any]] = []
    blocked = unfunded = 0
    rate = params.commission_rate
    for row in order.itertuples(index=False):
        m = len(taken)
        gone = exit_time[:m] < row.entry_time
        if np.any(~gone & (symbol[:m] == row.symbol)):
            blocked += 1
            continue
        equity = params.initial_capital + pnl[:m][gone].sum()
        cash = equity - stake[:m][~gone].sum()
        size = params.max_position_size * equity
        if not 0 < size <= cash + 1e-9 * params.initial_capital:
            unfunded += 1
            continue
        quantity = size / row.entry_price / (1 + rate)
        commission = rate * quantity * (row.entry_price + row.exit_price)
        result = row.direction * quantity * (row.exit_price - row.entry_price) - commission
        exit_time[m], stake[m], pnl[m], symbol[m] = row.exit_time, size, result, row.symbol
        taken.append(
            {
                **row._asdict(),
                "quantity": quantity,
                "committed": size,
                "commission": commission,
                "pnl": result,
            }
        )
    trades = pd.DataFrame(taken, columns=TRADE_COLUMNS)
    return trades, blocked, unfunded


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
    """The whole run (symbols in `histories` order): trades, the metrics, signal counts, P&L breakdowns."""
    parts = [
        reference_candidates(histories[s], signals[s], params).assign(rank=r) for r, s in enumerate(histories)
    ]
    candidates = pd.concat(parts, ignore_index=True)
    trades, blocked, unfunded = reference_allocation(candidates, params)
    timeline = np.unique(np.concatenate([h.times[h.first :] for h in histories.values()]))
    results = reference_metrics(trades, timeline, params.initial_capital, per_year)
    directional = 0
    for s, h in histories.items():
        bars = {x.bar_index for x in signals[s] if x.bar_index >= h.first and x.direction != 0}
        directional += len(bars)
    results["skipped_signals"] = directional - len(trades)
    results["unfunded_signals"] = unfunded
    results["blocked_signals"] = blocked
    results["pnl_by_pattern"] = trades.groupby("pattern").pnl.sum().to_dict() if len(trades) else {}
    results["pnl_by_symbol"] = trades.groupby("symbol").pnl.sum().to_dict() if len(trades) else {}
    return results, trades
