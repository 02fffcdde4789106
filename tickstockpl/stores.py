"""Connections to Redis and PostgreSQL, built from Settings, with driver errors wrapped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tickstockpl import contract
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
        username=settings.redis_username or None,
        password=settings.redis_password or None,
        **_tls(settings),
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        health_check_interval=15,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
    )


def _tls(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS arguments: the server's certificate always verified (against
    REDIS_SSL_CA_CERTS, else the system's CAs), its name too unless REDIS_SSL_CHECK_HOSTNAME=0."""
    if not settings.redis_ssl:
        return {}
    return {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": settings.redis_ssl_ca_certs or None,
        "ssl_certfile": settings.redis_ssl_certfile or None,
        "ssl_keyfile": settings.redis_ssl_keyfile or None,
        "ssl_check_hostname": settings.redis_ssl_check_hostname,
    }


def check_access(client: redis.Redis, what: str = "checking Redis") -> None:
    """PING, then read the producer's own keys: a wrong password and an ACL that forbids our
    commands or keys both raise RedisConfigError here, at start, instead of in a retry loop."""
    with redis_errors(what):
        pipe = client.pipeline(transaction=False)
        pipe.ping()
        pipe.exists(contract.KEY_HEARTBEAT)
        pipe.llen(contract.KEY_OUTBOX)
        pipe.hget(contract.KEY_STATS, contract.STAT_STARTED_AT)
        pipe.execute()


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Wrap redis-py errors: refused credentials are RedisConfigError (an operator must act), the
    rest RedisUnavailable (back off and try again)."""
    try:
        yield
    except (
        redis.exceptions.AuthenticationError,
        redis.exceptions.AuthorizationError,
        redis.exceptions.NoPermissionError,  # NOPERM: a command, key or channel the ACL forbids
    ) as exc:
        raise RedisConfigError(f"{what}: {exc}") from None
    except redis.ResponseError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")) or any(
            text in str(exc) for text in ACL_REFUSALS
        ):
            raise RedisConfigError(f"{what}: {exc}") from None
        raise RedisUnavailable(f"{what}: {exc}") from None
    except redis.ConnectionError as exc:
        if any(text in str(exc) for text in TLS_REFUSALS):
            raise RedisConfigError(f"{what}: TLS: {exc}") from None
        raise RedisUnavailable(f"{what}: {exc}") from None
    except redis.RedisError as exc:
        raise RedisUnavailable(f"{what}: {exc}") from None


# An ACL refusal inside a Lua script comes back as a plain error, not NOPERM.
ACL_REFUSALS = ("can't run this command", "no permissions to")
# TLS handshake failures that retrying cannot fix: a CA that did not sign the server's certificate,
# a name that does not match it, TLS spoken to a plain port (or the reverse).
TLS_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER", "certificate verify failed")
