"""What the producer accepts from TickStockAppV2: sizes, patterns and bounds of every inbound message.

Checked by tickstockpl.inbound before anything from another application is queued, aggregated or logged.
"""

from __future__ import annotations

from typing import Final

from tickstockpl.contract.names import PRODUCER_PREFIX

# --- Input limits: what the producer accepts from TickStockAppV2 (§3.1, §3.3) -----------------------
# Everything on these channels comes from another application and is checked against these limits by
# tickstockpl.inbound before it is queued, aggregated or logged. The consumer's own messages are far
# inside them (a job is < 2 KB, a tick < 1 KB).
MAX_TICK_BYTES: Final = 4_096  # one flat tick (§3.3); a bigger message is rejected unread
MAX_JOB_BYTES: Final = 65_536  # one backtest job (§3.1): 50 symbols and a few patterns fit in 2 KB
MAX_CANCEL_BYTES: Final = 4_096  # {type, job_id, timestamp, source}
MAX_INPUT_DEPTH: Final = 4  # nesting of an input message: a job's `parameters` object is level 2
# job_id: echoed unchanged into results and used in Redis key names. The consumer's own is
# `backtest_<epoch>_<8 hex>` (28 characters); other tools may use UUIDs. No spaces, quotes or controls.
MAX_JOB_ID_LEN: Final = 100
JOB_ID_PATTERN: Final = r"[A-Za-z0-9_.:@\-]{1,100}"
MAX_JOB_PATTERNS: Final = 100  # pattern names per job (the UI offers 11)
# Tickers as TickStockAppV2 and Massive spell them: upper-case letters and digits, with `.` (BRK.A),
# `-` and `/` (share classes, units), `:` (Massive's X:BTCUSD, C:EURUSD, I:SPX) and `^` (index
# symbols); at most MAX_SYMBOL_LEN characters (the audit column). No lower case, spaces or quotes.
TICKER_PATTERN: Final = r"[A-Z0-9.\-/:^]{1,20}"
# A tick's price and volume: finite, price > 0, volume >= 0, and small enough that sums stay finite.
MAX_TICK_PRICE: Final = 1e9
MAX_TICK_VOLUME: Final = 1e13
# A tick's timestamp must lie within this window around the wall clock: a feed replayed from the
# last year is fine; a tick from the future (beyond clock skew) would move the tick clock ahead.
TICK_MAX_AGE_S: Final = 366 * 86_400
TICK_MAX_LEAD_S: Final = 300.0
# Per-symbol state of the tick source and the streaming engine: at most this many symbols (Massive's
# whole US stock universe is ~12,000). The tick source forgets a symbol whose last bar closed
# TICK_IDLE_S ago (a late tick for it is then refused by the engine as out of order); the engine, when
# full, forgets the series updated least recently (their pattern history restarts if they return).
MAX_TRACKED_SYMBOLS: Final = 25_000
TICK_IDLE_S: Final = 300.0
# A backtest job run this many times without producing its result (a crash each time) is moved aside.
MAX_JOB_ATTEMPTS: Final = 3
KEY_BACKTEST_ATTEMPTS: Final = PRODUCER_PREFIX + "backtest:attempts"  # hash job_id -> runs started
KEY_BACKTEST_POISON: Final = PRODUCER_PREFIX + "backtest:poison"  # jobs moved aside, with the reason
MAX_POISON_KEPT: Final = 1_000
MAX_ERROR_LEN: Final = 500  # the `error` text of a failed result
