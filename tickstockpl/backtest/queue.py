"""Accepted backtest jobs in Redis, so that a restart loses none and each job gets exactly one result.

Keys are the producer's own (contract.KEY_BACKTEST_*), never the consumer's `tickstock:jobs:*`:
- the queue list: raw job messages, LPUSHed on arrival, taken from the right (oldest first);
- the running list: the job being worked on, moved there by LMOVE (rq's intermediate queue);
- `done:<job_id>`: set in the same MULTI/EXEC that publishes the result and drops the job from the
  running list, so a crash leaves either all three or none: never a second result;
- `cancel:<job_id>`: a cancel seen, kept a day, so a cancel that races its job still wins.
One backtester consumes the queue; at start it moves whatever a dead process left running back to the
front of the queue.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from tickstockpl import contract
from tickstockpl.backtest.jobs import job_id_of

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

    def release(self, raw: bytes) -> None:
        """Give a running job back (store outage): first in line again."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(contract.KEY_BACKTEST_RUNNING, 1, raw)
            pipe.rpush(contract.KEY_BACKTEST_QUEUE, raw)
            pipe.execute()

    def finish(self, job_id: str, result: dict[str, Any], raw: bytes | None = None) -> int:
        """Publish the job's one result, mark it done and drop it from running, atomically."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(contract.KEY_BACKTEST_DONE + job_id, "1", ex=DONE_TTL_S)
            pipe.publish(contract.CHANNEL_BACKTEST_RESULTS, contract.encode(result))
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
    """The job_id of a cancel message (`{type: cancel_job, job_id, ...}`), or None if it has none."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    job_id = message.get("job_id") if isinstance(message, dict) else None
    return job_id if isinstance(job_id, str) and job_id else None
