"""`tickstockpl replay --publish` hands every event to the outbox, as the detector does."""

from __future__ import annotations

import argparse
from pathlib import Path

import redis

from tickstockpl import contract, replay
from tickstockpl.settings import Settings

MINUTE = str(Path(__file__).resolve().parents[2] / "data" / "minute_aapl_2026.csv")


def test_publish_enqueues_every_event(settings: Settings, redis_client: redis.Redis) -> None:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    assert replay.run(parser.parse_args([MINUTE, "--publish"]), settings) == 0
    expected = replay.replay([MINUTE]).counts.total()
    assert redis_client.llen(contract.KEY_OUTBOX) == expected > 0
    event = contract.decode_pattern_event(redis_client.rpop(contract.KEY_OUTBOX) or b"")
    assert event["data"]["symbol"] == "AAPL" and event["data"]["tier"] == "intraday"
