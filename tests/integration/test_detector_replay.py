"""`tickstockpl replay --publish` hands the outbox every event at the minimum confidence, as the
detector does."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import redis

from tickstockpl import contract, replay
from tickstockpl.patterns import HistorySignal, history_signals
from tickstockpl.settings import Settings
from tickstockpl.sources.csv_replay import load_csv

MINUTE = str(Path(__file__).resolve().parents[2] / "data" / "minute_aapl_2026.csv")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    return parser.parse_args(argv)


def test_publish_enqueues_every_event_at_the_minimum_confidence(
    settings: Settings, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings.replace(timeframes=())  # the file's own timeframe: comparable with the history scan
    assert replay.run(parse([MINUTE, "--publish"]), settings) == 0
    detected = replay.replay([MINUTE]).signals
    kept = [s for s in history(MINUTE) if round(s.confidence, 2) >= settings.min_confidence]
    assert redis_client.llen(contract.KEY_OUTBOX) == len(kept) > 0
    assert f"published: {len(kept):,} events" in capsys.readouterr().out
    assert len(kept) < detected / 3  # the default minimum thins the stream (docs/patterns.md)
    events = [contract.decode_pattern_event(raw) for raw in redis_client.lrange(contract.KEY_OUTBOX, 0, -1)]
    assert all(e["data"]["confidence"] >= 0.7 for e in events)
    assert events[0]["data"]["symbol"] == "AAPL" and events[0]["data"]["tier"] == "intraday"


def test_a_replay_of_the_minute_file_publishes_every_tier_with_the_default_settings(
    settings: Settings, redis_client: redis.Redis
) -> None:
    assert settings.timeframes == Settings().timeframes and settings.combo_timeframes
    assert replay.run(parse([MINUTE, "--publish"]), settings) == 0
    events = [
        contract.decode_pattern_event(raw)["data"] for raw in redis_client.lrange(contract.KEY_OUTBOX, 0, -1)
    ]
    tiers = {e["tier"] for e in events}
    assert tiers == {"intraday", "combo"}, tiers  # the file's one daily signal is below 0.7; its combo is not
    combos = [e for e in events if e["tier"] == "combo"]
    assert all(e["confirmed_by"] and e["confidence"] >= 0.7 and e["source"] == "combo" for e in combos)
    assert {e["timeframe"] for e in events} >= {"1m", "5m", "15m", "1h"}
    assert all(e["expires_at"] > e["timestamp"] for e in events)


def test_publish_everything_with_min_confidence_zero(settings: Settings, redis_client: redis.Redis) -> None:
    settings = settings.replace(timeframes=())
    assert replay.run(parse([MINUTE, "--publish", "--min-confidence", "0"]), settings) == 0
    assert redis_client.llen(contract.KEY_OUTBOX) == replay.replay([MINUTE]).signals > 0


def history(path: str) -> list[HistorySignal]:
    bars = load_csv(path)
    arrays = [np.array([getattr(b, f) for b in bars]) for f in ("open", "high", "low", "close", "volume")]
    return history_signals(*arrays)
