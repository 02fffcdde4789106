"""Hostile input of issue #13, shared by the integration tests (against the processes directly) and
the end-to-end flood (against the supervised stack): what an attacker, or a buggy consumer, sends on
the tick feed and the two backtest channels."""

from __future__ import annotations

import json
import random
import time

from tests.integration.backtest_helpers import consumer_job

SMALL = dict(symbols=["IBM"], start_date="2012-01-01", end_date="2012-12-31", patterns=["Hammer"])
DEEP = 200_000  # levels of nesting, as in the issue
FORGED = "2026-12-07 03:00:00,000 relay ERROR forged line"
YEAR_2100 = 4_102_444_800  # 2100-01-01, epoch seconds
BAD_TICKERS = ["X');DELETE--", "\U0001f680", "aapl", "A" * 21, "", " ", "AAPL\nFORGED", 42, None, ["AAPL"]]


def deep(prefix: str = "") -> str:
    """`{<prefix>"x":[[[…]]]}` nested DEEP levels: RecursionError for a recursive parser."""
    return "{" + prefix + '"x":' + "[" * DEEP + "]" * DEEP + "}"


def forged_lines(text: str) -> list[str]:
    """Lines that begin as the forged line does (a service's own lines begin with the time now)."""
    return [line for line in text.splitlines() if line.startswith(FORGED[:23])]


def tick(ticker: str, price: float, at: float, volume: float = 100) -> str:
    return json.dumps(
        {"ticker": ticker, "price": price, "volume": volume, "timestamp": at, "event_type": "tick"}
    )


def normal_session(symbol: str, minutes: int, seed: int = 3) -> tuple[list[str | bytes], float]:
    """Three ticks a minute of a random walk, for `minutes` minutes ending a minute before now."""
    rng = random.Random(seed)
    start = (int(time.time()) // 60 - minutes - 1) * 60
    price, messages = 100.0, list[str | bytes]()
    for minute in range(minutes):
        for second in (5, 25, 45):
            price = max(1.0, price * (1 + rng.gauss(0, 0.004)))
            messages.append(tick(symbol, round(price, 2), start + minute * 60 + second, rng.randint(1, 500)))
    return messages, float(start)


HOSTILE_JOBS: list[bytes | str] = [
    b"",
    b"\xff\xfe\x00garbage",  # not UTF-8
    b'{"job_id": "backtest_1_\xff"}',
    "[1, 2, 3]",
    "42",
    '"a string"',
    "null",
    '{"job_id": "backtest_1_dup", "job_id": ["twice"]}',  # duplicate keys: the last one wins
    '{"job_id": 12345, "symbols": "AAPL"}',
    '{"job_id": true}',
    json.dumps(consumer_job("backtest_1_types", symbols=[1, None, {"a": 1}])),
    json.dumps(consumer_job("backtest_1_nan", parameters={"initial_capital": -5})),
    '{"job_id": "backtest_1_naninf", "parameters": {"initial_capital": NaN}}',
    json.dumps(consumer_job("backtest_1_dates", start_date="9999-99-99", end_date=1e300)),
    json.dumps(consumer_job("backtest_1_emoji", symbols=["\U0001f680"], patterns=["X');DELETE--"])),
    json.dumps(consumer_job("backtest_1_many", patterns=["Doji"] * 10_000)),
    json.dumps(consumer_job("backtest_1_bigint", parameters={"max_holding_bars": 10**400})),
]


def poison_jobs() -> list[str | bytes]:
    """Every hostile job of the issue and our own (without the 10 MB one: see huge_pattern_job)."""
    return [
        *HOSTILE_JOBS,
        deep(),
        deep('"job_id":"backtest_1_deep",'),
        json.dumps(consumer_job("j" * 100_000, **SMALL)),
        json.dumps(consumer_job(f"backtest_1_x\n{FORGED}", **SMALL)),
    ]


def huge_pattern_job(ident: str) -> str:
    """A job naming a 10 MB unknown pattern (finding 3)."""
    return json.dumps(consumer_job(ident, **{**SMALL, "patterns": ["P" * 10_000_000]}))


def poison_cancels() -> list[str | bytes]:
    return [deep(), b"\xff", "[]", json.dumps({"job_id": "j" * 5000}), json.dumps({"job_id": f"x\n{FORGED}"})]


def poison_ticks() -> list[str | bytes]:
    """Every tick the detector must refuse: nesting, huge numbers, 2100, not UTF-8, bad tickers."""
    now = time.time()
    ticks: list[str | bytes] = [
        deep(),
        deep('"ticker":"AAPL","price":1,"timestamp":1,'),
        tick("AAPL", 10.0, 1e300),
        tick("ZZZ", 10.0, YEAR_2100),
        '{"ticker": "AAPL", "price": NaN, "timestamp": 1}',
        b"\xff\xfe\x00",
        b"",
        "[1, 2]",
        json.dumps({"ticker": "AAPL", "price": -1, "timestamp": now, "volume": -5}),
    ]
    return ticks + [json.dumps({"ticker": t, "price": 1.0, "timestamp": now}) for t in BAD_TICKERS]
