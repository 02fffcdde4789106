"""The relay's hand-sent commands (`relay/scripts.py`) on every redis-py the project allows.

pyproject allows redis-py from 5.0, where `ConnectionPool.get_connection` requires a command name;
5.3 made it optional and warns when one is given (pytest turns that warning into a failure). A
pool with 5.0's signature, otherwise the real one, stands for the old versions.
"""

from __future__ import annotations

from typing import Any

import redis

from tests.integration.test_relay_support import make_events
from tickstockpl import contract, outbox
from tickstockpl.relay import lists
from tickstockpl.relay.lists import Finish


class PoolWithRequiredCommandName(redis.ConnectionPool):
    """redis-py 5.0's `get_connection(command_name, *keys, **options)`, over the real pool."""

    def get_connection(self, command_name: str, *keys: Any, **options: Any) -> Any:  # type: ignore[override]
        assert isinstance(command_name, str) and command_name
        return super().get_connection()


def _client_on(pool: redis.ConnectionPool) -> redis.Redis:
    return redis.Redis(connection_pool=pool)


def test_take_and_finish_on_a_pool_that_requires_a_command_name(redis_client: redis.Redis) -> None:
    kwargs = redis_client.connection_pool.connection_kwargs
    client = _client_on(PoolWithRequiredCommandName(host=kwargs["host"], port=kwargs["port"]))
    try:
        _take_and_finish(client, redis_client)
    finally:
        client.close()


def test_take_and_finish_on_the_installed_pool(redis_client: redis.Redis) -> None:
    _take_and_finish(redis_client, redis_client)


def _take_and_finish(client: redis.Redis, check: redis.Redis) -> None:
    outbox.enqueue(check, make_events(3))
    taken = lists.take(client, 2)  # EVALSHA sent by hand
    taken += lists.take(client, 5, block_s=0.1)  # BLMOVE and EVALSHA pipelined
    assert len(taken) == 3 and check.llen(contract.KEY_PROCESSING) == 3
    lists.finish(client, Finish(contract.KEY_PROCESSING, taken))
    assert check.llen(contract.KEY_PROCESSING) == 0
