"""Fixtures the backtester's tests share: the daily bars loaded, and a listener on its channels."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import INIT_DB, PostgresHandle, execute
from tests.integration.backtest_helpers import Listener, load_daily
from tickstockpl.settings import Settings


@pytest.fixture
def bars(settings: Settings, postgres_server: PostgresHandle) -> Settings:
    execute(postgres_server.dsn(INIT_DB), "TRUNCATE historical_bars")
    assert load_daily(settings) == 12_154
    return settings


@pytest.fixture
def listener(redis_client: redis.Redis) -> Iterator[Listener]:
    listen = Listener(redis_client)
    yield listen
    listen.close()
