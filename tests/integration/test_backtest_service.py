"""The backtester as a real process against real Redis and PostgreSQL (contract Appendix B item 13).

"Exactly one result" is checked behind a barrier: the service runs jobs in order, so once a later
job's result has arrived, any second result for an earlier job would have arrived before it.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import PostgresHandle
from tests.integration.backtest_helpers import (
    DAILY,
    Listener,
    Service,
    assert_valid_result,
    browser_metrics,
    consumer_job,
    job_id,
    publish_cancel,
    publish_job,
    wait_for,
)
from tickstockpl import contract
from tickstockpl.backtest import MemoryHistory, parse_job, run_job
from tickstockpl.settings import Settings

BARRIER = dict(symbols=["IBM"], start_date="2012-01-01", end_date="2012-12-31", patterns=["Hammer"])


@pytest.fixture
def start_service(
    bars: Settings, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(throttle_s: float = 0.0) -> Service:
        service = Service(bars, tmp_path / "backtester.log", throttle_s)
        started.append(service)
        service.wait_subscribed(redis_client)
        return service

    yield start
    for service in started:
        service.stop(signal.SIGKILL)


def barrier(client: redis.Redis, listener: Listener, n: int = 999) -> None:
    """Publish a small job and wait for its result (see the module docstring)."""
    ident = job_id(n)
    publish_job(client, consumer_job(ident, **BARRIER))
    assert listener.wait_result(ident)["status"] == "completed"


def test_appendix_b_item_13(
    start_service: Callable[..., Service], redis_client: redis.Redis, listener: Listener
) -> None:
    service = start_service()
    counts = dict(
        redis_client.pubsub_numsub(contract.CHANNEL_BACKTEST_JOBS, contract.CHANNEL_BACKTEST_CANCEL)
    )
    assert counts[contract.CHANNEL_BACKTEST_JOBS.encode()] >= 1
    assert counts[contract.CHANNEL_BACKTEST_CANCEL.encode()] >= 1
    job = consumer_job(job_id(1))
    publish_job(redis_client, job)
    result = listener.wait_result(job["job_id"])
    barrier(redis_client, listener)

    progress = listener.progress(job["job_id"])
    assert len(progress) >= 1
    for message in progress:
        assert message["job_id"] == job["job_id"]  # top level, echoed unchanged
        assert type(message["progress"]) is float and 0.0 <= message["progress"] <= 1.0
        assert message["status"] == "running" and message["source"] == "TickStockPL"
    assert [m["progress"] for m in progress] == sorted(m["progress"] for m in progress)
    assert listener.order(job["job_id"]) == ["p"] * len(progress) + ["r"]
    assert len(listener.results(job["job_id"])) == 1
    assert_valid_result(result)
    assert result["status"] == "completed" and result["results"]["total_trades"] > 0

    # The same job straight from the data file, in process: the service read the same bars from PostgreSQL.
    expected = run_job(parse_job(json.dumps(job)), MemoryHistory.from_files([DAILY])).results
    assert result["results"] == json.loads(contract.encode(expected))
    # Appendix B item 15: nothing under the consumer's keys (Redis was flushed before the test).
    assert redis_client.keys("tickstock:*") == []
    assert service.proc.poll() is None


def test_the_browser_reads_the_metrics_of_a_published_result(
    start_service: Callable[..., Service], redis_client: redis.Redis, listener: Listener
) -> None:
    """Issue 17: the browser reads the four metrics from the top level; the Python side from `results`."""
    start_service()
    job = consumer_job(job_id(5), symbols=["AAPL", "MSFT", "IBM"])
    publish_job(redis_client, job)
    result = listener.wait_result(job["job_id"])  # the message as published, parsed from the channel
    assert result["status"] == "completed" and result["results"]["total_trades"] > 0
    python_side = {name: result["results"][name] for name in contract.BACKTEST_RESULT_FIELDS}
    assert python_side["win_rate"] > 0 and python_side["roi"] != 0  # a browser reading nothing shows 0
    for shown in browser_metrics(result):
        assert shown == python_side


def test_cancel_mid_job_stops_promptly_without_completed(
    start_service: Callable[..., Service], redis_client: redis.Redis, listener: Listener
) -> None:
    start_service(throttle_s=1.0)  # five symbols: the job would take at least four seconds
    ident = job_id(2)
    publish_job(redis_client, consumer_job(ident))
    wait_for(lambda: bool(listener.progress(ident)), "the first progress message")
    publish_cancel(redis_client, ident)
    result = listener.wait_result(ident)
    barrier(redis_client, listener)
    assert result["status"] == "cancelled"
    assert_valid_result(result)
    assert [r["status"] for r in listener.results(ident)] == ["cancelled"]
    assert max(m["progress"] for m in listener.progress(ident)) < 1.0  # stopped before the end
    assert redis_client.llen(contract.KEY_BACKTEST_RUNNING) == 0


def test_cancel_of_a_queued_job(
    start_service: Callable[..., Service], redis_client: redis.Redis, listener: Listener
) -> None:
    start_service(throttle_s=0.5)
    running, queued = job_id(3), job_id(4)
    publish_job(redis_client, consumer_job(running))
    wait_for(lambda: bool(listener.progress(running)), "the first job to start")
    publish_job(redis_client, consumer_job(queued))
    publish_cancel(redis_client, queued)
    assert listener.wait_result(queued)["status"] == "cancelled"
    assert listener.wait_result(running)["status"] == "completed"
    barrier(redis_client, listener)
    assert len(listener.results(queued)) == 1 and len(listener.results(running)) == 1
    assert listener.order(queued)[-1] == "r"


BAD_JOBS: list[tuple[str, str | dict[str, object], str]] = [
    ("unknown_pattern", {"patterns": ["Hammer", "FlyingPig"]}, "unknown pattern(s) 'FlyingPig'"),
    ("bad_date", {"start_date": "2008-02-30"}, "start_date '2008-02-30' is not a valid YYYY-MM-DD date"),
    ("reversed_dates", {"start_date": "2012-01-01", "end_date": "2011-01-01"}, "must be before end_date"),
    ("no_data", {"symbols": ["ZZZZ"]}, "no 1d bars for ZZZZ between 2008-01-01 and 2012-12-31"),
    ("too_many_symbols", {"symbols": [f"S{i:02d}" for i in range(51)]}, "too many symbols: 51 (at most 50)"),
    ("malformed_json", '{"type": "backtest_job", "job_id": "JOBID", "symbols": ["AAPL"', "not valid JSON"),
]


def test_each_bad_job_fails_clearly_and_the_service_keeps_serving(
    start_service: Callable[..., Service], redis_client: redis.Redis, listener: Listener
) -> None:
    service = start_service()
    idents = {}
    for n, (case, change, _) in enumerate(BAD_JOBS, start=10):
        idents[case] = f"{job_id(n)}_{case}"
        if isinstance(change, str):
            publish_job(redis_client, change.replace("JOBID", idents[case]))
        else:
            publish_job(redis_client, consumer_job(idents[case], **change))
    publish_job(redis_client, '{"type": "backtest_job", "symbols": ["AAPL"]}')  # no job_id: nothing to answer
    publish_job(redis_client, "[]")
    barrier(redis_client, listener)  # a good job after all of them still completes
    for case, _, error in BAD_JOBS:
        results = listener.results(idents[case])
        assert len(results) == 1, case
        assert results[0]["status"] == "failed", case
        assert error in results[0]["error"] and error in results[0]["results"]["error"], case
        assert_valid_result(results[0])
        assert listener.order(idents[case]) == ["p", "r"], case
    assert service.proc.poll() is None
    # Neither can be answered: each is counted and logged (sampled, one line per reason).
    assert "job rejected (bad_job_id), job_id unknown: job_id is missing" in service.log()
    assert "job rejected (not_object), job_id unknown" in service.log()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_restart_with_a_job_queued_and_one_running(
    how: int, start_service: Callable[..., Service], redis_client: redis.Redis, listener: Listener
) -> None:
    first = start_service(throttle_s=1.0)
    running, queued = job_id(20), job_id(21)
    publish_job(redis_client, consumer_job(running))
    wait_for(lambda: bool(listener.progress(running)), "the first job to start")
    publish_job(redis_client, consumer_job(queued))
    wait_for(lambda: redis_client.llen(contract.KEY_BACKTEST_QUEUE) == 1, "the second job to be queued")
    code = first.stop(how)
    # Frozen state: one job in the running list, one in the queue, and no result for either.
    assert [
        json.loads(raw)["job_id"] for raw in redis_client.lrange(contract.KEY_BACKTEST_RUNNING, 0, -1)
    ] == [running]
    assert [json.loads(raw)["job_id"] for raw in redis_client.lrange(contract.KEY_BACKTEST_QUEUE, 0, -1)] == [
        queued
    ]
    assert listener.results(running) == [] and listener.results(queued) == []
    if how == signal.SIGTERM:
        assert code == 0 and "stopping on request" in first.log()

    start_service()
    for ident in (running, queued):
        assert listener.wait_result(ident)["status"] == "completed"
    barrier(redis_client, listener)
    assert len(listener.results(running)) == 1 and len(listener.results(queued)) == 1
    assert (
        redis_client.llen(contract.KEY_BACKTEST_RUNNING) == 0
        and redis_client.llen(contract.KEY_BACKTEST_QUEUE) == 0
    )


def test_a_repeated_job_gets_no_second_result(
    start_service: Callable[..., Service], redis_client: redis.Redis, listener: Listener
) -> None:
    start_service()
    job = consumer_job(job_id(30), **BARRIER)
    publish_job(redis_client, job)
    listener.wait_result(job["job_id"])
    publish_job(redis_client, job)
    publish_cancel(redis_client, job["job_id"])  # too late: it is done
    barrier(redis_client, listener)
    assert len(listener.results(job["job_id"])) == 1
    assert redis_client.ttl(contract.KEY_BACKTEST_DONE + job["job_id"]) > 6 * 86_400


def test_postgres_outage_requeues_the_job_and_keeps_serving(
    start_service: Callable[..., Service],
    redis_client: redis.Redis,
    listener: Listener,
    postgres_server: PostgresHandle,
) -> None:
    service = start_service()
    waiting, bad = job_id(40), job_id(41)
    postgres_server.stop()
    try:
        publish_job(redis_client, consumer_job(waiting, **BARRIER))
        wait_for(lambda: "unavailable" in service.log(), "the service to notice PostgreSQL is down")
        publish_job(redis_client, consumer_job(bad, patterns=["FlyingPig"]))
        assert listener.wait_result(bad)["status"] == "failed"  # still answering while the database is down
        assert listener.results(waiting) == []  # it cannot have run: no bars without PostgreSQL
    finally:
        postgres_server.start()
    assert listener.wait_result(waiting)["status"] == "completed"
    barrier(redis_client, listener)
    assert len(listener.results(waiting)) == 1
    assert service.proc.poll() is None


def test_run_once_drains_the_queue_in_process(
    bars: Settings, redis_client: redis.Redis, listener: Listener
) -> None:
    """The real loop in burst mode: jobs a previous process left (queued and running) run, then it returns."""
    from tickstockpl.services.backtester import run

    left_running, left_queued = consumer_job(job_id(50), **BARRIER), consumer_job(job_id(51), **BARRIER)
    redis_client.lpush(contract.KEY_BACKTEST_RUNNING, json.dumps(left_running))
    redis_client.lpush(contract.KEY_BACKTEST_QUEUE, json.dumps(left_queued))
    assert run(bars, burst=True) == 0
    # All was published before run() returned; a sentinel after it proves the listener has it all.
    redis_client.publish(contract.CHANNEL_BACKTEST_RESULTS, json.dumps({"job_id": "sentinel"}))
    listener.wait_result("sentinel")
    for job in (left_running, left_queued):
        assert [r["status"] for r in listener.results(job["job_id"])] == ["completed"]
    results = [m["job_id"] for c, m in listener.messages if c == contract.CHANNEL_BACKTEST_RESULTS]
    assert results == [left_running["job_id"], left_queued["job_id"], "sentinel"]  # the recovered one first
    assert listener.order(left_running["job_id"])[-1] == "r"
    assert (
        redis_client.llen(contract.KEY_BACKTEST_QUEUE)
        == redis_client.llen(contract.KEY_BACKTEST_RUNNING)
        == 0
    )


def test_a_queued_job_it_would_now_refuse_fails_once_with_the_reason(
    bars: Settings, redis_client: redis.Redis, listener: Listener
) -> None:
    """A job in the queue is parsed once when it is run: one an older version accepted, and this one
    refuses, gets one `failed` result naming why; the job after it still runs."""
    from tickstockpl.services.backtester import run

    refused = consumer_job(job_id(60), **{**BARRIER, "start_date": "2012-12-31", "end_date": "2012-01-01"})
    after = consumer_job(job_id(61), **BARRIER)
    redis_client.lpush(contract.KEY_BACKTEST_QUEUE, json.dumps(refused), json.dumps(after))
    assert run(bars, burst=True) == 0
    redis_client.publish(contract.CHANNEL_BACKTEST_RESULTS, json.dumps({"job_id": "sentinel"}))
    listener.wait_result("sentinel")
    [failed] = listener.results(refused["job_id"])
    assert failed["status"] == "failed" and "end_date" in failed["error"]
    assert [r["status"] for r in listener.results(after["job_id"])] == ["completed"]
