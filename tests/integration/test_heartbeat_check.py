"""`tickstockpl heartbeat --check` as a container health check would run it: exit 0 or 1, one line."""

from __future__ import annotations

import json
import time

import pytest
import redis

from tests.integration.stack_helpers import fast
from tests.support import run_cli
from tickstockpl import contract
from tickstockpl.local_servers import free_port
from tickstockpl.services import heartbeat as heartbeat_service
from tickstockpl.settings import Settings


def check(settings: Settings, *extra: str) -> tuple[int, str]:
    result = run_cli(settings, "heartbeat", "--check", *extra)
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout
    return result.returncode, result.stdout


def test_fresh_after_the_real_heartbeat_ran(settings: Settings) -> None:
    assert heartbeat_service.run(fast(settings), burst=True) == 0
    code, out = check(settings)
    assert code == 0 and "fresh" in out


@pytest.mark.parametrize(
    ("value", "extra", "code", "text"),
    [
        (lambda now: repr(now - 5), (), 0, "fresh"),
        (lambda now: repr(now - 31), (), 1, "stale: 31"),
        (lambda now: repr(now - 31), ("--max-age", "60"), 0, "fresh"),
        (lambda now: repr(now - 2), ("--max-age", "1"), 1, "stale"),
        (lambda now: str(int(now * 1000)), (), 1, "milliseconds"),
        (lambda now: "2025-09-19T12:00:00+00:00", (), 1, "not a float"),
        (lambda now: json.dumps({"timestamp": now}), (), 1, "not a float"),
        (lambda now: "", (), 1, "not a float"),
    ],
    ids=["fresh", "stale", "max-age-60", "max-age-1", "milliseconds", "iso", "json", "empty"],
)
def test_check_judges_the_value_as_the_consumer_reads_it(
    settings: Settings, redis_client: redis.Redis, value: object, extra: tuple[str, ...], code: int, text: str
) -> None:
    redis_client.set(contract.KEY_HEARTBEAT, value(time.time()))  # type: ignore[operator]
    got, out = check(settings, *extra)
    assert (got, text in out) == (code, True), out


def test_absent_key_fails(settings: Settings) -> None:
    code, out = check(settings)
    assert code == 1 and "absent" in out


def test_redis_unreachable_fails(settings: Settings) -> None:
    code, out = check(settings.replace(redis_port=free_port()))
    assert code == 1 and "unavailable" in out


def test_without_check_reports_but_exits_zero(settings: Settings, redis_client: redis.Redis) -> None:
    redis_client.set(contract.KEY_HEARTBEAT, repr(time.time() - 100))
    result = run_cli(settings, "heartbeat")
    assert result.returncode == 0 and "stale" in result.stdout
