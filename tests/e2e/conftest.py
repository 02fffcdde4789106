"""Fixtures for the end-to-end suite (`make e2e`): the whole supervised stack on fresh stores.

Without a Docker daemon (or with TICKSTOCKPL_TEST_DOCKER=never), each stack gets free ports where
nothing listens, so `up` starts its own redis-server and PostgreSQL under supervisord in the test's
var directory: exactly the `make up` path. With a daemon, Redis and PostgreSQL run in testcontainers
and the stack attaches to them (POSTGRES_ADMIN_URI lets it apply db/init.sql), each stack on a
flushed Redis and a new database. The tests are the same either way.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import docker_available
from tests.conftest import postgres_container as postgres_container_for_tests
from tests.conftest import redis_container as redis_container_for_tests
from tests.e2e.stackutil import RunningStack, running_stack, stack_settings


@pytest.fixture(scope="session")
def e2e_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: 0700 root directories, and PostgreSQL runs as another user.
    path = Path(tempfile.mkdtemp(prefix="tickstockpl-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def store_overrides() -> Iterator[Callable[[], dict[str, Any]]]:
    """A function giving Settings overrides for fresh stores: none (local servers) or containers."""
    if not docker_available():
        yield dict
        return
    redis_container = redis_container_for_tests().start()
    try:
        postgres_container = postgres_container_for_tests().start()
    except BaseException:
        redis_container.stop()
        raise
    host = postgres_container.get_container_host_ip()
    pg_port = int(postgres_container.get_exposed_port(5432))
    redis_port = int(redis_container.get_exposed_port(6379))

    def fresh() -> dict[str, Any]:
        redis.Redis(host=host, port=redis_port).flushall()
        admin = (
            f"host={host} port={pg_port} user=postgres password={postgres_container.password} dbname=postgres"
        )
        return {
            "redis_host": host,
            "redis_port": redis_port,
            "postgres_host": host,
            "postgres_port": pg_port,
            "postgres_db": f"e2e_{uuid.uuid4().hex[:10]}",
            "postgres_admin_uri": admin,
        }

    try:
        yield fresh
    finally:
        redis_container.stop()
        postgres_container.stop()


@pytest.fixture(scope="session")
def start_stack(
    e2e_dir: Path, store_overrides: Callable[[], dict[str, Any]]
) -> Callable[..., AbstractContextManager[RunningStack]]:
    """`with start_stack(source="csv", ...) as stack:` a fresh stack, stopped (and checked) on exit."""

    def start(**overrides: Any) -> AbstractContextManager[RunningStack]:
        settings = stack_settings(**{**store_overrides(), **overrides})
        return running_stack(e2e_dir / f"var-{secrets.token_hex(3)}", settings)

    return start


@pytest.fixture(scope="module")
def synthetic_stack(
    start_stack: Callable[..., AbstractContextManager[RunningStack]],
) -> Iterator[RunningStack]:
    with start_stack() as stack:
        yield stack
