"""`tickstockpl deadletters` as a process: list (text and --json), and requeue after a fix."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.conftest import CONSUMER_DB, PostgresHandle, execute
from tests.integration.test_relay_support import (
    Subscriber,
    audit_rows,
    dead_letters,
    flow_ids,
    make_events,
)
from tests.support import run_cli
from tickstockpl import contract, outbox
from tickstockpl.exitcodes import RET_OK, RET_UNAVAILABLE, RET_USAGE
from tickstockpl.local_servers import free_port
from tickstockpl.services import relay
from tickstockpl.settings import Settings


def deadletters_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(settings, "deadletters", *args)


@pytest.fixture
def short_symbols(
    consumer_settings: Settings, postgres_server: PostgresHandle, fresh_database: Callable[[str], str]
) -> Iterator[tuple[Settings, str]]:
    """The consumer's schema with symbol narrowed to VARCHAR(4): five-letter tickers are refused (22001)."""
    name = fresh_database(CONSUMER_DB)
    dsn = postgres_server.dsn(name)
    execute(dsn, "DROP VIEW pattern_flow_analysis")
    execute(dsn, "ALTER TABLE integration_events ALTER COLUMN symbol TYPE varchar(4)")
    yield consumer_settings.replace(postgres_db=name), dsn


def test_list_shows_reason_and_payload_then_requeue_after_the_fix(
    short_symbols: tuple[Settings, str], redis_client: redis.Redis
) -> None:
    settings, dsn = short_symbols
    good, refused = (
        make_events(1)[0],
        contract.build_pattern_event(symbol="GOOGL", pattern="Hammer", confidence=0.7),
    )
    outbox.enqueue(redis_client, [good, refused])
    redis_client.lpush(contract.KEY_OUTBOX, b"{broken json")
    assert relay.run(settings, burst=True) == RET_OK
    assert audit_rows(settings) == {good["data"]["flow_id"]: 1}

    listing = deadletters_cli(settings)
    assert listing.returncode == RET_OK, listing.stdout + listing.stderr
    assert "2 dead letter(s)" in listing.stdout
    assert "sqlstate=22001" in listing.stdout and "value too long" in listing.stdout
    assert f"flow_id={refused['data']['flow_id']}" in listing.stdout
    assert "is not JSON" in listing.stdout and "{broken json" in listing.stdout
    assert listing.stderr == ""

    as_json = deadletters_cli(settings, "--json")
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [entry["stage"] for entry in entries] == ["audit", "contract"]  # newest first
    audit_entry = entries[0]
    assert json.loads(audit_entry["payload"]) == refused  # the whole original payload
    assert audit_entry["sqlstate"] == "22001" and audit_entry["published"] is False

    execute(dsn, "ALTER TABLE integration_events ALTER COLUMN symbol TYPE varchar(20)")  # the fix
    subscriber = Subscriber(redis_client)
    try:
        requeued = deadletters_cli(settings, "--requeue", audit_entry["id"])
        assert requeued.returncode == RET_OK, requeued.stdout
        assert f"requeued {audit_entry['id']}" in requeued.stdout
        assert relay.run(settings, burst=True) == RET_OK
        subscriber.wait_for_flows(flow_ids([refused]))
    finally:
        subscriber.close()
    assert audit_rows(settings) == {good["data"]["flow_id"]: 1, refused["data"]["flow_id"]: 1}
    assert [letter.stage for letter in dead_letters(redis_client)] == ["contract"]
    # Requeued twice? The entry is gone, so the second attempt is refused, not duplicated.
    again = deadletters_cli(settings, "--requeue", audit_entry["id"])
    assert again.returncode == RET_USAGE
    assert len(again.stdout.strip().splitlines()) == 1 and audit_entry["id"] in again.stdout


def test_a_requeued_record_that_is_still_bad_comes_back_once(
    settings: Settings, redis_client: redis.Redis
) -> None:
    redis_client.lpush(contract.KEY_OUTBOX, b"still not json")
    relay.run(settings, burst=True)
    [letter] = dead_letters(redis_client)
    assert deadletters_cli(settings, "--requeue", letter.id).returncode == RET_OK
    relay.run(settings, burst=True)
    [again] = dead_letters(redis_client)
    assert again.payload == b"still not json" and again.id != letter.id
    assert redis_client.llen(contract.KEY_OUTBOX) == 0  # not retried on its own


def test_empty_and_limit(settings: Settings, redis_client: redis.Redis) -> None:
    empty = deadletters_cli(settings)
    assert empty.returncode == RET_OK and "no dead letters" in empty.stdout
    redis_client.lpush(contract.KEY_OUTBOX, *[f"bad {index}".encode() for index in range(5)])
    relay.run(settings, burst=True)
    limited = deadletters_cli(settings, "--limit", "2")
    assert "5 dead letter(s)" in limited.stdout and "showing 2" in limited.stdout
    assert limited.stdout.count("reason:") == 2
    assert len(deadletters_cli(settings, "--json", "--limit", "0").stdout.splitlines()) == 5


def test_non_utf8_payload_survives_as_base64(settings: Settings, redis_client: redis.Redis) -> None:
    redis_client.lpush(contract.KEY_OUTBOX, b"\xff\xfe binary")
    relay.run(settings, burst=True)
    [entry] = [json.loads(line) for line in deadletters_cli(settings, "--json").stdout.splitlines()]
    assert entry["payload_encoding"] == "base64"
    assert dead_letters(redis_client)[0].payload == b"\xff\xfe binary"


def test_redis_unreachable_is_one_line(settings: Settings) -> None:
    result = deadletters_cli(settings.replace(redis_port=free_port()))
    assert result.returncode == RET_UNAVAILABLE
    assert len(result.stdout.strip().splitlines()) == 1 and "unreachable" in result.stdout
    assert "Traceback" not in result.stderr
