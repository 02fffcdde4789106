"""Issue #13's "Must show" on the whole supervised stack (`make up`'s path): a flood of every poison
message of the issue, for TICKSTOCKPL_E2E_FLOOD_S seconds (60 by default), leaves every program
RUNNING with the pid it had (no restart), doctor passing, the rejections counted, a normal backtest
job completing, patterns publishing, and stack.log free of forged lines and tracebacks.

The detector reads the tick feed (source "ticks"), so the poison ticks reach it; the figures
(messages by kind, rejections, the detector's RSS) are printed for the operations note.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
import redis

from tests.e2e.stackutil import RunningStack, Subscriber, cpu_s, rss_kb
from tests.hostile import (
    SMALL,
    forged_lines,
    huge_pattern_job,
    normal_session,
    poison_cancels,
    poison_jobs,
    poison_ticks,
    tick,
)
from tests.integration.backtest_helpers import Listener, consumer_job, job_id, load_daily
from tests.support import poll
from tickstockpl import contract
from tickstockpl.stack.supervisord import PROCESSES

pytestmark = pytest.mark.e2e

FLOOD_S = float(os.environ.get("TICKSTOCKPL_E2E_FLOOD_S", "60"))  # the issue asks for 60 s
ROUND_PAUSE_S = 0.25  # between rounds: a round is ~2 MB, so Redis and the services keep up on 2 cores
DISTINCT_PER_ROUND = 25  # new valid tickers a round: thousands over the flood, under the 25,000 cap
HUGE_EVERY = 20  # rounds between two 10 MB jobs (~5 s): far from Redis's 32 MB pub/sub buffer limit
SETTLE_S = 120.0  # for the services to work through what the flood left queued


@pytest.fixture(scope="module")
def tick_stack(
    start_stack: Callable[..., AbstractContextManager[RunningStack]],
) -> Iterator[RunningStack]:
    with start_stack(source="ticks", min_confidence=0.0) as stack:
        yield stack


def flood(client: redis.Redis, seconds: float) -> tuple[Counter[str], float]:
    """Every poison message, round after round, for `seconds`: (messages sent by kind, seconds taken)."""
    jobs, cancels = poison_jobs(), poison_cancels()
    huge = huge_pattern_job(job_id(0xF100D))
    sent: Counter[str] = Counter()
    started = time.monotonic()
    deadline = started + seconds
    rounds = 0
    while time.monotonic() < deadline:
        now = time.time()
        distinct = [
            tick(f"F{rounds * DISTINCT_PER_ROUND + i}", 10.0 + i % 7, now) for i in range(DISTINCT_PER_ROUND)
        ]
        batches: list[tuple[str, list[str | bytes], str]] = [
            (contract.CHANNEL_BACKTEST_JOBS, jobs, "poison jobs"),
            (contract.CHANNEL_BACKTEST_CANCEL, cancels, "poison cancels"),
            (contract.CHANNEL_RAW_TICKS, poison_ticks(), "poison ticks"),
            (contract.CHANNEL_RAW_TICKS, list(distinct), "distinct-ticker ticks"),
        ]
        if rounds % HUGE_EVERY == 0:
            batches.append((contract.CHANNEL_BACKTEST_JOBS, [huge], "10 MB pattern jobs"))
        pipe = client.pipeline(transaction=False)
        for channel, messages, kind in batches:
            for message in messages:
                pipe.publish(channel, message)
            sent[kind] += len(messages)
        pipe.execute()
        rounds += 1
        time.sleep(ROUND_PAUSE_S)
    return sent, time.monotonic() - started


def counted(stats: dict[str, str], prefix: str) -> int:
    """The sum of the stats fields starting with `prefix`."""
    return sum(int(value) for key, value in stats.items() if key.startswith(prefix))


def rejections(stats: dict[str, str]) -> dict[str, int]:
    return {
        "jobs": int(stats.get("jobs_rejected", 0)),
        "cancels": int(stats.get("cancels_rejected", 0)),
        "ticks": counted(stats, f"{contract.STAT_BARS_REJECTED}:tick_"),
    }


@pytest.mark.timeout(1200)
def test_a_flood_of_every_poison_message_restarts_nothing_and_the_stack_keeps_serving(
    tick_stack: RunningStack,
) -> None:
    stack = tick_stack
    assert load_daily(stack.settings) == 12_154  # bars for the normal backtest job after the flood
    before = stack.process_info()
    assert {f"tickstockpl:{name}" for name in PROCESSES} <= set(before)
    assert all(state == "RUNNING" for state, _, _ in before.values()), before  # the stores too, if ours
    detector_pid, backtester_pid = before["tickstockpl:detector-0"][1], before["tickstockpl:backtester"][1]
    rss_before = rss_kb(detector_pid)
    cpu_before = cpu_s(detector_pid), cpu_s(backtester_pid), time.process_time()
    rejected_before = rejections(stack.stats())
    client = stack.redis()

    sent, took = flood(client, FLOOD_S)
    flood_end = time.time()
    cpu_after = cpu_s(detector_pid), cpu_s(backtester_pid), time.process_time()
    cpu = [end - start for end, start in zip(cpu_after, cpu_before, strict=True)]
    assert took >= FLOOD_S

    expected = {
        "jobs": sent["poison jobs"] + sent["10 MB pattern jobs"],
        "cancels": sent["poison cancels"],
        "ticks": sent["poison ticks"],
    }

    def grown() -> dict[str, int]:
        now = rejections(stack.stats())
        return {kind: now[kind] - rejected_before[kind] for kind in now}

    poll(lambda: all(grown()[k] >= expected[k] for k in expected), SETTLE_S, "every poison message counted")
    rejected = grown()
    rss_after = rss_kb(detector_pid)

    # A normal job completes, and normal ticks still become patterns on the channel.
    listener = Listener(stack.redis())
    try:
        ident = job_id(1)
        client.publish(contract.CHANNEL_BACKTEST_JOBS, json.dumps(consumer_job(ident, **SMALL)))
        poll(lambda: listener.results(ident), SETTLE_S, "the normal job's result")
        result = listener.results(ident)[0]
    finally:
        listener.close()
    with Subscriber(stack.redis()) as subscriber:
        session, _ = normal_session("AAPL", 40)
        pipe = client.pipeline(transaction=False)
        for message in session:
            pipe.publish(contract.CHANNEL_RAW_TICKS, message)
        pipe.execute()

        def fresh_patterns() -> list[dict[str, object]]:
            events = [contract.decode_pattern_event(raw) for raw in subscriber.messages]
            return [e for e in events if e["data"]["symbol"] == "AAPL" and e["timestamp"] > flood_end]

        after = poll(fresh_patterns, SETTLE_S, "AAPL patterns published after the flood")

    status = stack.process_info()
    doctor = stack.doctor()
    log = stack.log_text()
    print(
        f"\nflood of {took:.1f} s (asked {FLOOD_S:g} s): sent {dict(sent)}; rejected {rejected}"
        f" (expected {expected}); detector RSS {rss_before / 1024:.0f} MB before,"
        f" {rss_after / 1024:.0f} MB after; normal job {result['status']};"
        f" {len(after)} AAPL patterns after the flood; CPU s during the flood: detector {cpu[0]:.1f},"
        f" backtester {cpu[1]:.1f}, this flooder {cpu[2]:.1f}; stats {rejection_reasons(stack.stats())}"
    )
    for name in before:
        state, pid, start = status[name]
        assert state == "RUNNING" and (pid, start) == before[name][1:], (name, before[name], status[name])
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert rejected == expected
    assert result["status"] == "completed", result
    assert forged_lines(log) == [], forged_lines(log)[:3]
    assert "Traceback" not in log


def rejection_reasons(stats: dict[str, str]) -> dict[str, int]:
    """The rejection counters by reason, for the note."""
    return {key: int(value) for key, value in sorted(stats.items()) if "rejected:" in key}
