"""The exporter: one `/metrics` for the whole stack, read from Redis and PostgreSQL at scrape time.

The other processes keep their figures in Redis (the stats hash, the lists, the heartbeat key), so a
custom Collector reads them fresh on every scrape: nothing here can drift from the truth, and a
restart of any process (or of the exporter) loses nothing. A store that is down is reported as
`tickstockpl_up{dependency=...} 0`, never as a 500. The relay's histograms live in the stats hash
too (cumulative bucket counters), so there is one metrics path; field names come from the contract.

Run it as `python -m tickstockpl.services.exporter`; it binds
TICKSTOCKPL_METRICS_HOST:TICKSTOCKPL_METRICS_PORT
(127.0.0.1:9108 by default).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tickstockpl import contract, health
from tickstockpl.errors import (
    AuditConfigError,
    AuditDataError,
    PostgresUnavailable,
    RedisConfigError,
    RedisUnavailable,
    TickStockPLError,
)
from tickstockpl.exitcodes import RET_CONFIG, RET_OK, RET_UNAVAILABLE
from tickstockpl.lifecycle import service_main
from tickstockpl.services.exporter_metrics import (
    DEPTHS,
    PREFIX,
    decoded,
    heartbeat_metric,
    persistence_metrics,
    program_metrics,
    redis_metrics,
    stats_metrics,
)
from tickstockpl.settings import Settings
from tickstockpl.stores import (
    PgConnection,
    close_quietly,
    postgres_connection,
    postgres_errors,
    redis_client,
    redis_errors,
)

log = logging.getLogger("tickstockpl.exporter")

PERSISTENCE_EVERY_S = 60.0
SCRAPE_TIMEOUT_S = 2.0  # each store gets this long per scrape; Prometheus' own timeout is 10 s


class StackCollector(Collector):
    """Reads the stack's state at scrape time (client_python's custom Collector)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._redis = redis_client(settings, timeout_s=SCRAPE_TIMEOUT_S)
        self._pg: PgConnection | None = None
        self._lock = threading.Lock()  # the HTTP server may scrape from two threads at once
        self._was_up: dict[str, bool] = {}  # per store, for logging each change once
        self._persistence_read: tuple[float, health.RedisPersistence] | None = None
        self._info_allowed = True  # INFO stats, until Redis refuses it (an ACL without +info)

    def describe(self) -> Iterable[Metric]:
        return []  # nothing known before the first scrape; keeps registration free of I/O

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = time.monotonic()
            up = GaugeMetricFamily(PREFIX + "up", "1 when the dependency answers.", labels=["dependency"])
            metrics, redis_up = self._collect_redis()
            up.add_metric(["redis"], 1.0 if redis_up else 0.0)
            pg_up = self._postgres_up()
            up.add_metric(["postgres"], 1.0 if pg_up else 0.0)
            yield up
            yield from metrics
            yield GaugeMetricFamily(
                PREFIX + "scrape_duration_seconds",
                "How long this scrape took to read the stores.",
                value=time.monotonic() - started,
            )

    # --- Redis ------------------------------------------------------------------------------------

    def _read_redis(self) -> list[Any]:
        """Everything a scrape reads from Redis, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(contract.KEY_STATS)
        pipe.get(contract.KEY_HEARTBEAT)
        for key in DEPTHS:
            pipe.llen(key)
        pipe.xlen(contract.KEY_REPLAY_STREAM)
        pipe.hgetall(health.KEY_PROGRAMS)
        pipe.pubsub_numsub(*contract.PRODUCER_CHANNELS)
        replies: list[Any] = pipe.execute()
        return replies

    def refused_by_redis(self) -> RedisConfigError | None:
        """The scrape's reads once: Redis refusing our credentials or a command (an operator must
        act) is returned; Redis being down is not (a scrape reports it as tickstockpl_up 0)."""
        try:
            with redis_errors("the exporter's reads"):
                self._read_redis()
        except RedisConfigError as exc:
            return exc
        except RedisUnavailable:
            return None
        return None

    def _collect_redis(self) -> tuple[list[Metric], bool]:
        try:
            replies = self._read_redis()
        except (redis.RedisError, OSError) as exc:
            self._log_change("Redis", False, exc)
            return [], False
        self._log_change("Redis", True, None)
        stats, heartbeat = replies[0], replies[1]
        depths = replies[2 : 2 + len(DEPTHS)]
        stream_length, programs, numsub = replies[-3], replies[-2], replies[-1]
        now = time.time()
        metrics = list(stats_metrics(stats, now, self._settings.total_shards))
        metrics.extend(redis_metrics(self._info_stats()))
        metrics.append(heartbeat_metric(heartbeat, now))
        for (name, help_text), depth in zip(DEPTHS.values(), depths, strict=True):
            metrics.append(GaugeMetricFamily(PREFIX + name, help_text, value=float(depth)))
        metrics.append(
            GaugeMetricFamily(
                PREFIX + "replay_stream_length", "Entries in the replay stream.", value=float(stream_length)
            )
        )
        subscribers = GaugeMetricFamily(
            PREFIX + "channel_subscribers",
            "Subscribers on each producer channel (PUBSUB NUMSUB): is TickStockAppV2 listening?",
            labels=["channel"],
        )
        for channel, count in numsub:
            subscribers.add_metric([decoded(channel)], float(count))
        metrics.append(subscribers)
        metrics.extend(program_metrics(health.parse_programs(programs, now)))
        backlog = int(depths[list(DEPTHS).index(contract.KEY_AUDIT_BACKLOG)])
        metrics.extend(persistence_metrics(self._persistence(now), backlog))
        return metrics, True

    def _info_stats(self) -> dict[str, Any] | None:
        """INFO stats, or None where Redis refuses it (then never asked again) or fails now."""
        if not self._info_allowed:
            return None
        try:
            info: dict[str, Any] = self._redis.info("stats")
        except redis.ResponseError as exc:  # NOPERM: the producer's ACL has no +info
            log.info("Redis refuses INFO (%s): no tickstockpl_redis_output_buffer_disconnections", exc)
            self._info_allowed = False
            return None
        except (redis.RedisError, OSError):
            return None
        return info

    def _persistence(self, now: float) -> health.RedisPersistence:
        """Read at most once a minute (two or three round trips; it rarely changes)."""
        if self._persistence_read is None or now - self._persistence_read[0] > PERSISTENCE_EVERY_S:
            try:
                self._persistence_read = (now, health.read_persistence(self._redis))
            except TickStockPLError:
                return health.RedisPersistence(health.UNKNOWN, "Redis did not answer")
        return self._persistence_read[1]

    # --- PostgreSQL -------------------------------------------------------------------------------

    def _postgres_up(self) -> bool:
        try:
            if self._pg is None or self._pg.closed:
                self._pg = postgres_connection(
                    self._settings,
                    connect_timeout_s=max(1, int(SCRAPE_TIMEOUT_S)),
                    statement_timeout_ms=int(SCRAPE_TIMEOUT_S * 1000),
                )
            with postgres_errors(), self._pg.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        except (PostgresUnavailable, AuditConfigError, AuditDataError) as exc:
            self._log_change("PostgreSQL", False, exc)
            self._close_pg()
            return False
        self._log_change("PostgreSQL", True, None)
        return True

    def _close_pg(self) -> None:
        close_quietly(self._pg)
        self._pg = None

    def _log_change(self, what: str, up: bool, error: object) -> None:
        """Log each store's state change once, not on every scrape."""
        if self._was_up.get(what) is not up:
            if up:
                log.info("%s reachable", what)
            else:
                log.warning("%s unreachable: %s", what, str(error).strip().splitlines()[0] if error else "")
            self._was_up[what] = up

    def close(self) -> None:
        self._close_pg()
        self._redis.close()


def build_registry(settings: Settings) -> tuple[CollectorRegistry, StackCollector]:
    """A registry with only our collector: the stack's state, read at scrape time."""
    registry = CollectorRegistry(auto_describe=False)
    collector = StackCollector(settings)
    registry.register(collector)
    return registry, collector


def run(settings: Settings, stop: threading.Event) -> int:
    """Serve /metrics until `stop` is set."""
    registry, collector = build_registry(settings)
    refused = collector.refused_by_redis()
    if refused is not None:
        log.error("exporter cannot use Redis at %s: %s", settings.redis_target, refused)
        collector.close()
        return RET_CONFIG
    try:
        server, thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.metrics_host, settings.metrics_port, exc)
        collector.close()
        return RET_UNAVAILABLE
    log.info("serving http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)
    try:
        stop.wait()
        log.info("stopping on request")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        collector.close()
    return RET_OK


def main() -> int:
    return service_main("exporter", run)


if __name__ == "__main__":
    sys.exit(main())
