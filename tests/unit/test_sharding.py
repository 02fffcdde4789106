"""Sharded detectors (issue 14, item 4): which shard owns a symbol, the settings that say which shards
a host runs, and the sources cut to one shard (synthetic and CSV wrapped, ticks and Massive filtered
before a bar exists)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tickstockpl import health, inbound, supervised
from tickstockpl.bars import Bar
from tickstockpl.patterns import StreamingEngine
from tickstockpl.programwatch import HostPrograms
from tickstockpl.settings import DEFAULT_SYMBOLS, Settings, SettingsError
from tickstockpl.sharding import Shard, detector_process, shard_of
from tickstockpl.sources import build_source
from tickstockpl.sources.csv_replay import CsvReplaySource
from tickstockpl.sources.sharded import ShardedSource
from tickstockpl.sources.synthetic import SyntheticSource
from tickstockpl.sources.ticks import BAD_TICK, TickFeedSource

DAILY = Path(__file__).resolve().parents[2] / "data" / "daily_us_equities_2000_2013.csv"
TICKERS = [f"T{i:04d}" for i in range(4000)]


def test_the_owner_is_pinned_so_every_host_and_python_agrees() -> None:
    # BLAKE2b-64 of the UTF-8 symbol, big-endian, mod count: a change here reshuffles every deployment.
    assert [shard_of(symbol, 2) for symbol in ("AAPL", "FB", "GOOG", "IBM", "MSFT")] == [0, 1, 0, 0, 0]
    assert shard_of("AAPL", 7) == int.from_bytes(bytes.fromhex(blake("AAPL")), "big") % 7
    assert shard_of("ÄPFEL", 3) == int.from_bytes(bytes.fromhex(blake("ÄPFEL")), "big") % 3


def blake(symbol: str) -> str:
    import hashlib

    return hashlib.blake2b(symbol.encode("utf-8"), digest_size=8).hexdigest()


@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_each_symbol_has_exactly_one_owner_and_the_shares_are_even(count: int) -> None:
    shards = [Shard(index, count) for index in range(count)]
    owners = Counter(sum(shard.owns(ticker) for shard in shards) for ticker in TICKERS)
    assert owners == {1: len(TICKERS)}
    shares = Counter(shard_of(ticker, count) for ticker in TICKERS)
    assert set(shares) == set(range(count))
    assert max(shares.values()) < 1.15 * len(TICKERS) / count


def test_a_shard_outside_its_count_is_refused() -> None:
    with pytest.raises(ValueError, match="shard 2 of 2"):
        Shard(2, 2)
    assert str(Shard(1, 4)) == "shard 1 of 4" and Shard(1, 4).sharded and not Shard().sharded


def test_settings_name_the_host_s_detectors_and_refuse_impossible_shards() -> None:
    one = Settings.from_env({}, env_file=None)
    assert one.shard == Shard(0, 1) and one.detector_processes == ("detector-0",)
    host = Settings.from_env(
        {
            "TICKSTOCKPL_DETECTOR_SHARDS": "2",
            "TICKSTOCKPL_SHARD_FIRST": "2",
            "TICKSTOCKPL_SHARD_COUNT": "4",
            "TICKSTOCKPL_SHARD_INDEX": "3",
        },
        env_file=None,
    )
    assert host.shard == Shard(3, 4) and host.detector_processes == ("detector-2", "detector-3")
    assert Settings(detector_shards=3, shard_index=2).shard == Shard(2, 3)  # one host: count = shards
    with pytest.raises(SettingsError, match="TICKSTOCKPL_SHARD_COUNT=4: set it to the shards of all"):
        Settings(detector_shards=2, shard_first=3, shard_count=4)
    with pytest.raises(SettingsError, match="TICKSTOCKPL_SHARD_INDEX=2 is not a shard of 2"):
        Settings(detector_shards=2, shard_index=2)
    with pytest.raises(SettingsError, match="TICKSTOCKPL_DETECTOR_SHARDS='0'"):
        Settings.from_env({"TICKSTOCKPL_DETECTOR_SHARDS": "0"}, env_file=None)
    assert detector_process(5) == "detector-5"


def signals(source: SyntheticSource | ShardedSource) -> list[tuple[str, int, str]]:
    engine = StreamingEngine()
    return [
        (s.symbol, s.start, s.pattern)
        for batch in source.batches(threading.Event())
        for s in engine.process(batch)
    ]


def synthetic() -> SyntheticSource:
    return SyntheticSource(DEFAULT_SYMBOLS, seed=3, bar_seconds=60, speed=0, start=0, limit=150)


def test_synthetic_shards_together_find_what_one_detector_finds() -> None:
    whole = signals(synthetic())
    parts = [signals(ShardedSource(synthetic(), Shard(index, 3))) for index in range(3)]
    assert whole and all(parts)
    assert Counter(whole) == sum((Counter(part) for part in parts), Counter())
    for index, part in enumerate(parts):
        assert {shard_of(symbol, 3) for symbol, _, _ in part} == {index}


def test_a_sharded_csv_replay_keeps_its_symbols_and_shard_0_counts_unowned_rejects(tmp_path: Path) -> None:
    broken = tmp_path / "with_bad_rows.csv"
    header, *rows = DAILY.read_text().splitlines()
    sample = rows[::20]  # every symbol, rows in the file's order
    broken.write_text(
        "\n".join([header, *sample[:300], "2000-01-01,IBM,not-a-price,1,1,1,1", *sample[300:]]) + "\n"
    )
    settings = Settings(source="csv", csv_files=(str(broken),), speed=0, detector_shards=2)
    whole = CsvReplaySource([broken], speed=0)
    every = [bar for batch in whole.batches(threading.Event()) for bar in batch]
    seen: list[Bar] = []
    rejected: Counter[str] = Counter()
    for index in range(2):
        source = build_source(settings.replace(shard_index=index))
        assert isinstance(source, ShardedSource)
        mine = [bar for batch in source.batches(threading.Event()) for bar in batch]
        assert mine and {bar.symbol for bar in mine} == {
            s for s in ("AAPL", "FB", "GOOG", "IBM", "MSFT") if shard_of(s, 2) == index
        }
        seen.extend(mine)
        rejected += source.rejected
    assert sorted(seen) == sorted(every) and whole.rejected == rejected == {"missing_field": 1}


class Unused:
    """A Redis client the tick source is given but never calls in these tests."""

    def close(self) -> None:
        return None


def tick(ticker: object, at: float, price: float = 10.0) -> bytes:
    return json.dumps({"ticker": ticker, "price": price, "volume": 1, "timestamp": at}).encode()


def test_every_tick_shard_hears_everything_keeps_its_own_and_counts_a_reject_once() -> None:
    at = time.time() - 3600
    symbols = ["AAPL", "FB", "GOOG", "IBM", "MSFT", "NVDA", "TSLA"]
    shards = [TickFeedSource(Settings(), client=Unused(), shard=Shard(index, 2)) for index in range(2)]  # type: ignore[arg-type]
    whole = TickFeedSource(Settings(), client=Unused())  # type: ignore[arg-type]
    feed = [tick(symbol, at + n) for n, symbol in enumerate(symbols)]
    feed += [b"{not json", tick("bad ticker!", at), tick("AAPL", at, price=-1.0), tick("FB", at, price=-1.0)]
    for source in (*shards, whole):
        for raw in feed:
            source._take(raw)
    held = [set(source.aggregator._open) for source in shards]
    assert held[0] | held[1] == set(whole.aggregator._open) == set(symbols) and not held[0] & held[1]
    assert all(shard_of(symbol, 2) == index for index, part in enumerate(held) for symbol in part)
    price = f"tick_{inbound.BAD_PRICE}"
    ticker = f"tick_{inbound.BAD_TICKER}"
    assert whole.rejected == {BAD_TICK: 1, ticker: 1, price: 2}
    assert shards[0].rejected == {BAD_TICK: 1, ticker: 1, price: 1}  # unreadable ones, and AAPL's
    assert shards[1].rejected == {price: 1}  # FB's


def test_a_detectors_only_host_reports_and_forgets_only_its_own_shards() -> None:
    main = HostPrograms(first=0, count=2, total=4)
    extra = HostPrograms(first=2, count=2, total=4, detectors_only=True)
    names = [
        "tickstockpl:relay",
        "tickstockpl:detector-0",
        "tickstockpl:detector-3",
        "tickstockpl:detector-7",
    ]
    assert [main.reports(name) for name in names] == [True, True, True, True]
    assert [extra.reports(name) for name in names] == [False, True, True, True]
    assert [main.forgets(name) for name in names] == [True, True, False, True]  # 3 is the other host's
    assert [extra.forgets(name) for name in names] == [False, False, True, False]
    one = HostPrograms()
    assert all(one.forgets(name) for name in names)  # one host: everything it finds is its own


def test_health_names_a_shard_that_stopped_while_the_others_go_on() -> None:
    now = 1_800_000_000.0
    fields = {
        "last_bar_time": repr(now - 5),  # some shard keeps the detector as a whole fresh
        "shard_last_bar_time:0": repr(now - 5),
        "shard_last_bar_time:1": repr(now - 900),
        "shard_last_bar_time:3": repr(now - 900),  # a shard of an earlier run with more of them
    }
    stats = health.parse_stats(fields)
    assert stats.shard_bar_times == {0: now - 5, 1: now - 900, 3: now - 900}
    ok = {"status": health.OK}
    report = health.assess(
        redis_component=ok,
        postgres_component=ok,
        stats=stats,
        depths=None,
        now=now,
        thresholds=health.Thresholds(detector_stale_after_s=300, detector_shards=3),
    )
    assert report.status == health.DEGRADED
    assert report.reasons == ("detector shard 1 stale: no bar for 900 s",)
    assert report.components["detector"]["status"] == health.OK
    assert report.components["detector"]["shards"] == {"0": 5.0, "1": 900.0}
    single = health.assess(
        redis_component=ok, postgres_component=ok, stats=stats, depths=None, now=now
    )  # one shard: judged as a whole, as before
    assert single.status == health.HEALTHY and "shards" not in single.components["detector"]


def test_a_detectors_only_host_runs_the_detector_and_leaves_the_rest_to_the_main_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TICKSTOCKPL_ENV_FILE", "")
    monkeypatch.setenv("TICKSTOCKPL_DETECTORS_ONLY", "1")
    assert supervised.runs_here("tickstockpl.services.detector")
    assert not supervised.runs_here("tickstockpl.services.relay")
    assert supervised.main(["tickstockpl.services.relay"]) == 0  # expected: supervisord records it done
    assert "tickstockpl.services.relay: the main host runs it" in capsys.readouterr().out
    monkeypatch.setenv("TICKSTOCKPL_DETECTORS_ONLY", "0")
    assert supervised.runs_here("tickstockpl.services.relay")
