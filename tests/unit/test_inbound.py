"""The decoders of the three input channels (tickstockpl.inbound, backtest.jobs.parse_job): whatever
arrives, they return a checked value or raise Rejected (never anything else), and they accept what the
contract says TickStockAppV2 sends. Plus the log escaping, sampling and line cap they rely on."""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickstockpl import contract, inbound
from tickstockpl.backtest.jobs import parse_job
from tickstockpl.bars import Bar
from tickstockpl.logs import OneLineFormatter, SampledLog, escape
from tickstockpl.patterns import StreamingEngine
from tickstockpl.sources.massive import parse_message
from tickstockpl.sources.ticks import TOO_MANY_SYMBOLS, TickAggregator
from tickstockpl.stack import logfile

NOW = 1_796_600_000.0  # the wall clock the tick checks are run against
DEEP = 200_000

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=30,
)
FIELDS = ("ticker", "price", "volume", "timestamp", "job_id", "symbols", "patterns", "start_date", "end_date")
hostile_objects = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=8)
tickers = st.from_regex(r"\A[A-Z0-9.\-/:^]{1,20}\Z", fullmatch=True)
job_ids = st.from_regex(r"\A[A-Za-z0-9_.:@\-]{1,100}\Z", fullmatch=True)


def consumer_job(**changes: Any) -> dict[str, Any]:
    job = {
        "type": "backtest_job",
        "job_id": "backtest_1796600000_deadbeef",
        "user_id": "anonymous",
        "symbols": ["AAPL", "BRK.A"],
        "start_date": "2010-01-01",
        "end_date": "2012-12-31",
        "patterns": ["Hammer", "Doji"],
        "parameters": {"initial_capital": 100000, "commission_rate": 0.001},
        "timestamp": 1796600000,
        "source": "tickstock_appv2",
    }
    return {**job, **changes}


def decode_all(raw: bytes | str) -> None:
    """Every channel's decoder on `raw`: each must return or raise Rejected."""
    for decoder in (lambda r: inbound.decode_tick(r, NOW), parse_job, inbound.decode_cancel):
        try:
            decoder(raw)
        except inbound.Rejected as exc:
            assert exc.reason in inbound.REASONS
            assert len(str(exc)) <= contract.MAX_ERROR_LEN + 30 and "\n" not in str(exc)
    assert inbound.job_id_hint(raw) is None or len(inbound.job_id_hint(raw) or "") <= 100


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_are_decoded_or_rejected(raw: bytes) -> None:
    decode_all(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value_is_decoded_or_rejected(value: Any) -> None:
    decode_all(json.dumps(value))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_objects)
def test_any_object_with_the_fields_in_any_shape_is_decoded_or_rejected(value: dict[str, Any]) -> None:
    decode_all(json.dumps(value))
    decode_all(json.dumps({**consumer_job(), **value}))
    try:
        inbound.check_tick(value, NOW)
    except inbound.Rejected:
        pass


@given(tickers, st.floats(1e-4, 1e6), st.floats(0, 1e9), st.floats(-86_400 * 300, 200), st.booleans())
def test_ticks_as_the_contract_describes_them_are_accepted(
    ticker: str, price: float, volume: float, age: float, millis: bool
) -> None:
    stamp = NOW + age
    message = {"ticker": ticker, "price": price, "volume": volume, "event_type": "tick", "source": "polygon"}
    message["timestamp"] = stamp * 1000 if millis else stamp
    tick = inbound.decode_tick(json.dumps(message), NOW)
    assert (tick.ticker, tick.price, tick.volume) == (ticker, price, volume)
    assert math.isclose(tick.timestamp, stamp, rel_tol=1e-12)


@given(job_ids, st.lists(tickers, min_size=1, max_size=50), st.sampled_from(contract.UI_CANDLESTICK_PATTERNS))
def test_jobs_and_cancels_as_the_consumer_sends_them_are_accepted(
    ident: str, symbols: list[str], pattern: str
) -> None:
    job = parse_job(json.dumps(consumer_job(job_id=ident, symbols=symbols, patterns=[pattern])))
    assert job.job_id == ident and job.symbols == tuple(dict.fromkeys(symbols))
    cancel = {"type": "cancel_job", "job_id": ident, "timestamp": NOW, "source": "tickstock_appv2"}
    assert inbound.decode_cancel(json.dumps(cancel)) == ident


def reason(call: Any) -> str:
    with pytest.raises(inbound.Rejected) as caught:
        call()
    return caught.value.reason


def test_the_issues_findings_are_rejected_with_their_reason() -> None:
    nested = "{" + '"x":' + "[" * DEEP + "]" * DEEP + "}"
    for decoder in (lambda r: inbound.decode_tick(r, NOW), parse_job, inbound.decode_cancel):
        assert reason(lambda d=decoder: d(nested)) == inbound.TOO_LARGE
        assert reason(lambda d=decoder: d('{"x":' + "[" * 2000 + "]" * 2000 + "}")) in {
            inbound.NOT_JSON,  # orjson's own limit (1024), caught
            inbound.TOO_LARGE,
        }
        assert reason(lambda d=decoder: d('{"x":[[[[[[1]]]]]]}')) == inbound.TOO_DEEP
    assert reason(lambda: parse_job(json.dumps(consumer_job(job_id="j" * 100_000)))) == inbound.TOO_LARGE
    assert reason(lambda: parse_job(json.dumps(consumer_job(job_id="j" * 101)))) == inbound.BAD_JOB_ID
    assert (
        reason(lambda: parse_job(json.dumps(consumer_job(patterns=["P" * 10_000_000])))) == inbound.TOO_LARGE
    )
    assert inbound.job_id_hint(json.dumps(consumer_job(patterns=["P" * 10_000_000]))) == (
        "backtest_1796600000_deadbeef"
    )
    injected = consumer_job(job_id="backtest_1_x\n2026-12-07 03:00:00,000 relay ERROR forged")
    assert reason(lambda: parse_job(json.dumps(injected))) == inbound.BAD_JOB_ID
    assert inbound.job_id_hint(json.dumps(injected)) is None
    tick = {"ticker": "AAPL", "price": 10.0, "volume": 1}
    for stamp in (1e300, -1e300, 10**300, 4_102_444_800, True, "now", None, NOW + 301, NOW - 367 * 86_400):
        raw = json.dumps({**tick, "timestamp": stamp})
        assert reason(lambda r=raw: inbound.decode_tick(r, NOW)) == inbound.BAD_TIMESTAMP
    for bad in ("X');DELETE--", "\U0001f680", "aapl", "A" * 21, "", 5, None):
        raw = json.dumps({**tick, "ticker": bad, "timestamp": NOW})
        assert reason(lambda r=raw: inbound.decode_tick(r, NOW)) == inbound.BAD_TICKER
    for price in (0, -1, True, "1", 1e300):
        raw = json.dumps({**tick, "price": price, "timestamp": NOW})
        assert reason(lambda r=raw: inbound.decode_tick(r, NOW)) == inbound.BAD_PRICE
    assert (
        reason(lambda: inbound.check_tick({**tick, "price": math.nan, "timestamp": NOW}, NOW)) == "bad_price"
    )
    assert reason(lambda: inbound.check_tick({**tick, "volume": -1, "timestamp": NOW}, NOW)) == "bad_volume"
    big = json.dumps({**tick, "timestamp": 10**400})  # not a double: orjson refuses it
    assert reason(lambda: inbound.decode_tick(big, NOW)) == inbound.NOT_JSON
    for raw in (b"", b"\xff\xfe", b"[1]", b"3", b'"s"', b"null", b"NaN"):
        assert reason(lambda r=raw: inbound.decode_cancel(r)) in {inbound.NOT_JSON, inbound.NOT_OBJECT}


def test_escape_keeps_one_line_and_caps_length() -> None:
    assert escape("a\nb\r\x1b[31mc\u2028") == "a\\nb\\r\\x1b[31mc\\u2028"
    assert escape("x" * 1000, 10) == "xxxxxxxxxx…(+990 chars)"
    assert escape(b"\xff\n") == "\\xff\\n"


def test_formatter_writes_one_line_per_record_and_indents_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(asctime)s test %(levelname)s %(message)s"))
    logger = logging.getLogger("test_inbound.formatter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("job %s queued", "x\n2026-12-07 03:00:00,000 relay ERROR forged")
        try:
            raise ValueError("bad\n2026-12-07 03:00:00,000 relay ERROR forged")
        except ValueError:
            logger.exception("failed %s", "y" * 10_000)
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("2026-12-07 03:00:00,000")]
    assert len(lines[0]) < 200 and "relay ERROR forged" in lines[0]
    assert len(lines[1]) < 2_100 and all(line.startswith("    | ") for line in lines[2:])


def test_sampled_log_shows_the_first_then_one_per_interval_with_the_count() -> None:
    clock = [0.0]
    stream = io.StringIO()
    logger = logging.getLogger("test_inbound.sampled")
    logger.addHandler(logging.StreamHandler(stream))
    logger.propagate = False
    sampled = SampledLog(logger, interval_s=10, clock=lambda: clock[0])
    try:
        shown = [sampled.warning("bad_ticker", "rejected %s", n) for n in range(1000)]
        clock[0] = 10.0
        sampled.warning("bad_ticker", "rejected %s", "again")
        sampled.warning("other", "other reason")
    finally:
        logger.handlers.clear()
    assert shown.count(True) == 1 and sampled.suppressed == 999
    assert stream.getvalue().splitlines() == [
        "rejected 0",
        "rejected again (999 more like this not shown)",
        "other reason",
    ]


def test_stack_log_lines_are_capped(tmp_path: Path) -> None:
    handler = logfile.rotating_handler(tmp_path / "stack.log", max_bytes=100_000, backups=1)
    try:
        logfile.copy([b"x" * 10_000_000 + b"\n", b"next line\n"], handler)
    finally:
        handler.close()
    lines = (tmp_path / "stack.log").read_bytes().splitlines()
    assert len(lines[0]) < logfile.MAX_LINE_BYTES + 100 and b"line cut: 9,983,617 more bytes" in lines[0]
    assert lines[1] == b"next line"


def test_the_tick_clock_is_not_moved_by_a_tick_from_the_future() -> None:
    now = time.time()
    agg = TickAggregator(grace_s=0.0, wall=lambda: 0.0, clock=lambda: now)
    assert not agg.add({"ticker": "ZZZ", "price": 1.0, "timestamp": 4_102_444_800})
    assert agg.now() is None
    assert agg.add({"ticker": "AAPL", "price": 1.0, "timestamp": now - 30})
    assert agg.now() == now - 30


def test_tick_symbols_are_capped_and_idle_ones_forgotten() -> None:
    now, wall = time.time(), [0.0]
    agg = TickAggregator(grace_s=0.0, wall=lambda: wall[0], clock=lambda: now, max_symbols=100, idle_s=300)
    for n in range(150):
        agg.add({"ticker": f"T{n}", "price": 1.0, "timestamp": now - 1000})
    assert agg.tracked == 100 and agg.rejected[TOO_MANY_SYMBOLS] == 50
    wall[0] = 1000.0  # the feed clock moves on: every bar closes, and all 100 symbols become idle
    assert len(agg.flush()) == 100
    assert agg.add({"ticker": "NEW", "price": 1.0, "timestamp": now - 10})
    assert agg.tracked == 1 and agg.evicted == 100


def test_the_engine_keeps_at_most_max_series_and_the_active_ones() -> None:
    engine = StreamingEngine(max_series=100)
    for minute in range(40):
        fresh = [Bar(f"S{minute}_{n}", 60, minute * 60, 10.0, 11.0, 9.0, 10.0, 5.0) for n in range(30)]
        engine.process([*fresh, Bar("KEEP", 60, minute * 60, 10.0, 11.0, 9.0, 10.5, 5.0)])
        assert engine.series <= 100
    assert engine.evicted >= 40 * 30 - 100 and ("KEEP", 60) in engine._rows
    assert engine._seen[engine._rows[("KEEP", 60)]] == 40  # its history is whole
    assert engine._count.shape[0] <= 256


def test_massive_frames_cannot_recurse_or_overflow() -> None:
    rejected: Counter[str] = Counter()
    assert parse_message("[" * DEEP + "]" * DEEP, rejected) == ([], [])
    bar = {"ev": "AM", "sym": "AAPL", "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 1.0}
    frames = [
        {**bar, "s": 1e300, "e": 1e300 + 60_000},
        {**bar, "s": -1e300, "e": 5},
        {**bar, "s": 4_102_444_800_000, "e": 4_102_444_860_000},  # 2100
        {**bar, "s": 1_610_144_640_000, "e": 1_610_144_640_000 + 10**12},  # a bar of 31 years
    ]
    assert parse_message(json.dumps(frames), rejected) == ([], [])
    assert rejected == {"unreadable_message": 1, "bad_timestamp": 3, "bad_timeframe": 1}


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_depth_counts_containers_only_and_stops_exactly_at_the_limit(limit: int) -> None:
    def nested(levels: int) -> object:
        value: object = {"price": 1.0, "ticker": "AAPL"}  # scalars never add a level
        for level in range(levels - 1):
            value = [value, 3, "x"] if level % 2 else {"k": value, "n": None}
        return value

    assert not inbound.depth_exceeds(nested(limit), limit)
    assert inbound.depth_exceeds(nested(limit + 1), limit)
    assert not inbound.depth_exceeds("a scalar", limit) and not inbound.depth_exceeds([], limit)
