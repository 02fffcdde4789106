"""Accepted backtest jobs in Redis, so that a restart loses none and each job gets exactly one result.

Keys are the producer's own (contract.KEY_BACKTEST_*), never the consumer's `tickstock:jobs:*`:
- the queue list: raw job messages, LPUSHed on arrival, taken from the right (oldest first);
- the running list: the job being worked on, moved there by LMOVE (rq's intermediate queue);
- `done:<job_id>`: set in the same MULTI/EXEC that publishes the result and drops the job from the
  running list, so a crash leaves either all three or none: never a second result;
- `cancel:<job_id>`: a cancel seen, kept a day, so a cancel that races its job still wins;
- the attempts hash: job_id -> runs started and not ended (a crash mid-run leaves it counted); a job
  claimed more than contract.MAX_JOB_ATTEMPTS times is poison: `bury` moves it to the poison list with
  the reason, so one job that kills the process cannot crash-loop the service forever.
One backtester consumes the queue; at start it moves whatever a dead process left running back to the
front of the queue.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from tickstockpl import contract, inbound
from tickstockpl.backtest.jobs import job_id_of
from tickstockpl.logs import escape

DONE_TTL_S = 7 * 86_400  # as long as the consumer keeps its job record
CANCEL_TTL_S = 86_400


class JobQueue:
    def __init__(self, client: redis.Redis) -> None:
        # Any: redis-py's annotations say str where a bytes client takes and returns bytes.
        self._redis: Any = client

    def accept(self, raw: bytes) -> None:
        self._redis.lpush(contract.KEY_BACKTEST_QUEUE, raw)

    def claim(self) -> bytes | None:
        """Move the oldest queued job to the running list and return it (None: queue empty)."""
        raw = self._redis.lmove(contract.KEY_BACKTEST_QUEUE, contract.KEY_BACKTEST_RUNNING, "RIGHT", "LEFT")
        return None if raw is None else bytes(raw)

    def recover(self) -> int:
        """Put jobs a previous process left running back at the front of the queue."""
        moved = 0
        while self._redis.lmove(contract.KEY_BACKTEST_RUNNING, contract.KEY_BACKTEST_QUEUE, "LEFT", "RIGHT"):
            moved += 1
        return moved

    def release(self, raw: bytes, job_id: str | None = None) -> None:
        """Give a running job back (store outage): first in line again, the attempt not counted."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(contract.KEY_BACKTEST_RUNNING, 1, raw)
            pipe.rpush(contract.KEY_BACKTEST_QUEUE, raw)
            if job_id:
                pipe.hincrby(contract.KEY_BACKTEST_ATTEMPTS, job_id, -1)
            pipe.execute()

    def attempt(self, job_id: str) -> int:
        """Count one more run of `job_id`; the number of runs started that did not end."""
        return int(self._redis.hincrby(contract.KEY_BACKTEST_ATTEMPTS, job_id, 1))

    def attempt_ended(self, job_id: str) -> None:
        """A run that stopped on request, without a result: it runs again, and that is no crash."""
        self._redis.hincrby(contract.KEY_BACKTEST_ATTEMPTS, job_id, -1)

    def bury(self, raw: bytes, job_id: str, reason: str, result: dict[str, Any] | None = None) -> None:
        """Move a poison job aside (the poison list keeps its id, the reason and its first bytes) and,
        if `result` is given, publish it as the job's one result, all in one transaction."""
        record = {
            "job_id": job_id,
            "reason": escape(reason, contract.MAX_ERROR_LEN),
            "at": time.time(),
            "job": escape(raw, 2_000),
        }
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.lpush(contract.KEY_BACKTEST_POISON, json.dumps(record))
            pipe.ltrim(contract.KEY_BACKTEST_POISON, 0, contract.MAX_POISON_KEPT - 1)
            pipe.lrem(contract.KEY_BACKTEST_RUNNING, 1, raw)
            pipe.hdel(contract.KEY_BACKTEST_ATTEMPTS, job_id)
            if result is not None:
                pipe.set(contract.KEY_BACKTEST_DONE + job_id, "1", ex=DONE_TTL_S)
                pipe.publish(contract.CHANNEL_BACKTEST_RESULTS, contract.encode(result))
            pipe.execute()

    def finish(self, job_id: str, result: dict[str, Any], raw: bytes | None = None) -> int:
        """Publish the job's one result, mark it done and drop it from running, atomically."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(contract.KEY_BACKTEST_DONE + job_id, "1", ex=DONE_TTL_S)
            pipe.publish(contract.CHANNEL_BACKTEST_RESULTS, contract.encode(result))
            pipe.hdel(contract.KEY_BACKTEST_ATTEMPTS, job_id)
            if raw is not None:
                pipe.lrem(contract.KEY_BACKTEST_RUNNING, 1, raw)
            receivers: int = pipe.execute()[1]
        return receivers

    def drop(self, raw: bytes) -> None:
        """Forget a running job that needs no result (it already has one)."""
        self._redis.lrem(contract.KEY_BACKTEST_RUNNING, 1, raw)

    def is_done(self, job_id: str) -> bool:
        return bool(self._redis.exists(contract.KEY_BACKTEST_DONE + job_id))

    def mark_cancelled(self, job_id: str) -> None:
        self._redis.set(contract.KEY_BACKTEST_CANCELS + job_id, "1", ex=CANCEL_TTL_S)

    def is_cancelled(self, job_id: str) -> bool:
        return bool(self._redis.exists(contract.KEY_BACKTEST_CANCELS + job_id))

    def take_queued(self, job_id: str) -> bytes | None:
        """Remove a still-queued job (cancelled before it ran) and return it."""
        for raw in self._redis.lrange(contract.KEY_BACKTEST_QUEUE, 0, -1):
            if job_id_of(raw) == job_id and self._redis.lrem(contract.KEY_BACKTEST_QUEUE, 1, raw):
                return bytes(raw)
        return None

    def depth(self) -> tuple[int, int]:
        """(queued, running)."""
        return self._redis.llen(contract.KEY_BACKTEST_QUEUE), self._redis.llen(contract.KEY_BACKTEST_RUNNING)


def cancel_target(raw: bytes) -> str | None:
    """The job_id of a cancel message (`{type: cancel_job, job_id, ...}`), or None if it has none
    we can use (the service itself calls inbound.decode_cancel, to count and log why)."""
    try:
        return inbound.decode_cancel(raw)
    except inbound.Rejected:
        return None
