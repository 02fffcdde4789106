"""Connections to Redis and PostgreSQL, built from Settings, with driver errors wrapped."""

from __future__ import annotations

import redis

from tickstockpl.settings import Settings


def redis_client(settings: Settings, *, timeout_s: float = 5.0) -> redis.Redis:
    """A client with bounded timeouts, so a dead Redis raises instead of hanging a loop."""
    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=settings.redis_password or None,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=15,
        decode_responses=False,
    )
