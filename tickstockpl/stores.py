"""Connections to Redis and PostgreSQL, built from Settings, with driver errors wrapped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tickstockpl.errors import RedisConfigError, RedisUnavailable
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


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Wrap redis-py errors: refused credentials are RedisConfigError (an operator must act), the
    rest RedisUnavailable (back off and try again)."""
    try:
        yield
    except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        raise RedisConfigError(f"{what}: {exc}") from None
    except redis.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise RedisConfigError(f"{what}: {exc}") from None
        raise RedisUnavailable(f"{what}: {exc}") from None
    except redis.RedisError as exc:
        raise RedisUnavailable(f"{what}: {exc}") from None
