"""The detector service against a real Redis: events in the outbox, counters, an outage, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from tests.support import poll, run_python
from tickstockpl import contract
from tickstockpl.bars import Bar
from tickstockpl.patterns import StreamingEngine
from tickstockpl.services import detector
from tickstockpl.settings import Settings
from tickstockpl.sources.synthetic import SyntheticMarket, SyntheticSource

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("AAA", "BBB", "CCC")


def expected_signals(boundaries: int, **indicator_settings: Any) -> list[Any]:
    market = SyntheticMarket(SYMBOLS, seed=5, bar_seconds=60, start=0)
    engine = StreamingEngine(**indicator_settings)
    return [s for _ in range(boundaries) for s in engine.process(market.step())]


def synthetic(boundaries: int) -> SyntheticSource:
    return SyntheticSource(SYMBOLS, seed=5, bar_seconds=60, speed=0, start=0, limit=boundaries)


def outbox(client: redis.Redis) -> list[dict[str, Any]]:
    return [contract.decode_pattern_event(raw) for raw in reversed(client.lrange(contract.KEY_OUTBOX, 0, -1))]


def test_every_signal_reaches_the_outbox_with_counters(settings: Settings, redis_client: redis.Redis) -> None:
    want = expected_signals(120)
    assert want, "the synthetic market should produce signals in 120 bars"
    everything = settings.replace(min_confidence=0.0)
    code = detector.run(everything, threading.Event(), source=synthetic(120), drain_timeout_s=5)
    assert code == 0
    events = outbox(redis_client)
    got = [(e["data"]["symbol"], e["data"]["bar_start"], e["data"]["pattern"]) for e in events]
    assert got == [(s.symbol, s.start, s.pattern) for s in want]
    first = events[0]["data"]
    assert first["timestamp"] == first["bar_start"] + 60 and first["tier"] == first["source"] == "intraday"
    assert first["timeframe"] == "1m" and first["direction"] in {"bullish", "bearish", "neutral"}
    assert [e["data"]["indicators"] for e in events] == [s.indicators for s in want]
    assert {"rsi", "relative_volume", "relative_strength"} <= set(events[-1]["data"]["indicators"])
    stats = {
        k.decode(): int(v) for k, v in redis_client.hgetall(contract.KEY_STATS).items() if b"time" not in k
    }
    assert stats["bars_received"] == 120 * len(SYMBOLS)
    assert stats["patterns_detected"] == len(want)
    per_pattern = Counter(s.pattern for s in want)
    assert {
        k.removeprefix("detected:"): v for k, v in stats.items() if k.startswith("detected:")
    } == per_pattern
    assert float(redis_client.hget(contract.KEY_STATS, contract.STAT_LAST_BAR_TIME) or 0) > 0


def test_the_relative_strength_settings_reach_the_engine(
    settings: Settings, redis_client: redis.Redis
) -> None:
    chosen = settings.replace(min_confidence=0.0, rs_bars=5, rs_benchmark="BBB")
    want = expected_signals(60, rs_bars=5, rs_benchmark="BBB")
    assert [s.indicators for s in want] != [s.indicators for s in expected_signals(60)]  # they matter
    assert detector.run(chosen, threading.Event(), source=synthetic(60), drain_timeout_s=5) == 0
    events = outbox(redis_client)
    assert [e["data"]["indicators"] for e in events] == [s.indicators for s in want]
    assert {
        e["data"]["indicators"].get("relative_strength") for e in events if e["data"]["symbol"] == "BBB"
    } <= {
        1.0,
        None,
    }


def test_only_signals_at_the_minimum_confidence_are_published(
    settings: Settings, redis_client: redis.Redis
) -> None:
    want = expected_signals(120)
    kept = [s for s in want if round(s.confidence, 2) >= settings.min_confidence]
    assert settings.min_confidence == 0.7 and 0 < len(kept) < len(want) / 2
    assert detector.run(settings, threading.Event(), source=synthetic(120), drain_timeout_s=5) == 0
    events = outbox(redis_client)
    assert [(e["data"]["symbol"], e["data"]["bar_start"], e["data"]["pattern"]) for e in events] == [
        (s.symbol, s.start, s.pattern) for s in kept
    ]
    assert min(e["data"]["confidence"] for e in events) >= 0.7
    stats = redis_client.hgetall(contract.KEY_STATS)
    assert int(stats[b"patterns_detected"]) == len(kept)
    assert int(stats[b"signals_below_min_confidence"]) == len(want) - len(kept)
    assert sum(int(v) for k, v in stats.items() if k.startswith(b"detected:")) == len(want)


class BadBarsSource:
    """A few good bars with garbage between them."""

    def __init__(self) -> None:
        self.rejected: Counter[str] = Counter({"missing_field": 2})  # as if two rows failed to parse

    def batches(self, stop: threading.Event) -> Iterator[list[Bar]]:
        good = Bar("ZZZ", 60, 0, 10.0, 11.0, 9.0, 10.5, 100.0)
        yield [good, good._replace(close=float("nan"), start=60), good._replace(volume=-1, start=60)]
        yield [good, good._replace(start=120)]  # a duplicate, then a good one

    def close(self) -> None:
        return None


def test_malformed_bars_are_counted_by_reason(settings: Settings, redis_client: redis.Redis) -> None:
    assert detector.run(settings, threading.Event(), source=BadBarsSource(), drain_timeout_s=5) == 0
    stats = redis_client.hgetall(contract.KEY_STATS)
    assert int(stats[b"bars_received"]) == 7
    assert int(stats[b"bars_rejected"]) == 5
    assert {k: int(v) for k, v in stats.items() if k.startswith(b"bars_rejected:")} == {
        b"bars_rejected:missing_field": 2,
        b"bars_rejected:not_finite": 1,
        b"bars_rejected:negative_volume": 1,
        b"bars_rejected:duplicate": 1,
    }


def test_a_redis_outage_is_buffered_and_flushed_when_it_returns(
    settings: Settings, redis_client: redis.Redis, redis_server: Any
) -> None:
    want = expected_signals(80)
    # Closed explicitly: the outage leaves redis-py's ConnectionRefusedError tracebacks in reference
    # cycles that hold this frame, so its clients are freed only by a later gc pass, in an order
    # that can finalize the socket first (an unraisable ResourceWarning at the end of the session).
    with redis.Redis(
        host=settings.redis_host, port=settings.redis_port, socket_timeout=1, socket_connect_timeout=1
    ) as client:
        run = detector.Detector(settings.replace(min_confidence=0.0), source=synthetic(80), client=client)
        redis_server.stop()
        try:
            thread = threading.Thread(
                target=run.run, args=(threading.Event(),), kwargs={"drain_timeout_s": 60}
            )
            thread.start()
            poll(
                lambda: (
                    run.bars == 80 * len(SYMBOLS)
                    and run.buffer.pending == len(want)
                    and run.buffer.backoff.is_down
                ),
                20,
                "every event buffered while Redis is down",
            )
            assert thread.is_alive()  # all bars judged, nothing handed over, and still running
        finally:
            redis_server.start()
        thread.join(60)
        assert not thread.is_alive()
    with redis.Redis(host=settings.redis_host, port=settings.redis_port, socket_timeout=5) as fresh:
        assert fresh.llen(contract.KEY_OUTBOX) == len(want)
        assert int(fresh.hget(contract.KEY_STATS, "bars_received") or 0) == 80 * len(SYMBOLS)


def test_sigterm_finishes_the_step_and_exits_zero(settings: Settings, redis_client: redis.Redis) -> None:
    env = {
        **os.environ,
        "REDIS_HOST": settings.redis_host,
        "REDIS_PORT": str(settings.redis_port),
        "TICKSTOCKPL_SOURCE": "synthetic",
        "TICKSTOCKPL_SPEED": "0",
        "TICKSTOCKPL_SYMBOLS": "AAA,BBB",
        "TICKSTOCKPL_MIN_CONFIDENCE": "0",  # every signal published: the outbox fills from the start
        "TICKSTOCKPL_SYNTHETIC_HISTORY": "0",  # no history to learn from first: events at once
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickstockpl.services.detector"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        poll(lambda: redis_client.llen(contract.KEY_OUTBOX) > 0, 20, "events in the outbox")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "stopping on request" in out
    received = int(redis_client.hget(contract.KEY_STATS, "bars_received") or 0)
    assert received > 0 and received % 2 == 0  # whole boundaries only: the step in flight finished


def test_the_default_synthetic_feed_publishes_intraday_and_daily_tiers_within_ten_minutes(
    settings: Settings, redis_client: redis.Redis
) -> None:
    """`make up`'s defaults (session clock, history, timeframes), flat out instead of 60x: within the
    first 600 boundaries, 10 minutes at the default speed, both tiers reach the outbox; no bar is
    stamped after the wall clock and every event expires after its timestamp."""
    defaults = Settings()
    assert (defaults.source, defaults.synthetic_clock, defaults.speed) == ("synthetic", "sessions", 60.0)
    flat_out = settings.replace(speed=0.0)
    boundaries = 600
    code = detector.run(flat_out, threading.Event(), max_bars=boundaries * len(defaults.symbols))
    assert code == 0
    events = [e["data"] for e in outbox(redis_client)]
    tiers = Counter(e["tier"] for e in events)
    assert tiers["intraday"] > 100 and tiers["daily"] >= 1, tiers
    assert all(e["expires_at"] > e["timestamp"] <= time.time() for e in events)
    assert int(redis_client.hget(contract.KEY_STATS, "bars_received") or 0) == boundaries * len(
        defaults.symbols
    )


def test_a_missing_csv_file_is_a_configuration_error(settings: Settings, tmp_path: Path) -> None:
    """Exit 78 (do not restart) with the file named, not a traceback when the replay reaches it."""
    broken = settings.replace(source="csv", csv_files=(str(tmp_path / "nope.csv"),))
    result = run_python(broken, "-m", "tickstockpl.services.detector")
    assert result.returncode == 78, result.stdout + result.stderr
    assert "nope.csv" in result.stdout and "Traceback" not in result.stdout + result.stderr


def test_a_wrong_redis_password_is_a_configuration_error(
    settings: Settings, redis_client: redis.Redis, redis_server: Any
) -> None:
    """Exit 78 (supervisord does not restart it) with the cause, not an endless backoff."""
    redis_client.config_set("requirepass", "s3cret")  # this connection stays authenticated
    try:
        result = run_python(settings.replace(redis_password="wrong"), "-m", "tickstockpl.services.detector")
    finally:
        redis_client.config_set("requirepass", "")
    assert result.returncode == 78, result.stdout + result.stderr
    assert "detector cannot use Redis" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
