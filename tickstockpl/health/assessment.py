"""Turns readings already taken into healthy, degraded or down, and into the `system_health` event.

Touches no store: the readers (redis_readings, persistence, programs, audit_store) do that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tickstockpl import contract
from tickstockpl.errors import AuditConfigError, RedisConfigError
from tickstockpl.health.persistence import RedisPersistence
from tickstockpl.health.programs import ProgramState, program_component
from tickstockpl.health.redis_readings import QueueDepths, StackStats
from tickstockpl.health.states import (
    BACKLOG,
    DEGRADED,
    DISABLED,
    DOWN,
    HEALTHY,
    MISCONFIGURED,
    OK,
    PRESENT,
    STALE,
    UNAVAILABLE,
    UNKNOWN,
)
from tickstockpl.settings import Settings


@dataclass(frozen=True)
class Thresholds:
    """When a component stops being `ok`."""

    detector_stale_after_s: float = 300.0
    outbox_backlog: int = 10_000
    detector_shards: int = 1  # shards across every host: each is judged on its own as well

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """Stale after five bars' worth of wall time (bars come faster when replay speed is up), >= 2 min."""
        bar_wall_s = settings.bar_seconds / settings.speed if settings.speed > 0 else settings.bar_seconds
        return cls(detector_stale_after_s=max(120.0, 5 * bar_wall_s), detector_shards=settings.total_shards)


def store_component(error: Exception | None, *, disabled: bool = False) -> dict[str, Any]:
    """A store's component entry from the outcome of its probe (None = it answered)."""
    if disabled:
        return {"status": DISABLED}
    if error is None:
        return {"status": OK}
    misconfigured = isinstance(error, AuditConfigError | RedisConfigError)
    return {"status": MISCONFIGURED if misconfigured else UNAVAILABLE, "error": str(error)[:300]}


@dataclass(frozen=True)
class HealthReport:
    """An overall status with the reasons for it and one entry per component."""

    status: str
    reasons: tuple[str, ...]
    components: Mapping[str, Mapping[str, Any]]


def assess(
    *,
    redis_component: Mapping[str, Any],
    postgres_component: Mapping[str, Any],
    stats: StackStats | None,
    depths: QueueDepths | None,
    now: float,
    thresholds: Thresholds = Thresholds(),
    programs: Mapping[str, ProgramState] | None = None,
    persistence: RedisPersistence | None = None,
) -> HealthReport:
    """Healthy, degraded or down, from readings already taken (stats and depths None when Redis is down).

    down: neither store is usable, so nothing can be published or audited. degraded: one store is
    unusable, the detector has shown no progress for too long, the outbox is backed up, or a
    supervised program is FATAL or restart-looping. Dead letters are reported but do not change
    the status: they are set aside and block nothing.
    """
    reasons: list[str] = []
    redis_ok = redis_component["status"] == OK
    postgres_ok = postgres_component["status"] in (OK, DISABLED)
    if not redis_ok:
        reasons.append(f"redis {redis_component['status']}")
    if not postgres_ok:
        reasons.append(f"postgres {postgres_component['status']}")
    detector: dict[str, Any] = {"status": UNKNOWN, "lag_seconds": None}
    outbox: dict[str, Any] = {"status": UNKNOWN, "depth": None, "processing": None, "audit_backlog": None}
    dead: dict[str, Any] = {"status": UNKNOWN, "count": None}
    if stats is not None:
        lag = stats.detector_lag_s(now)
        detector = {
            "status": UNKNOWN if lag is None else (STALE if lag > thresholds.detector_stale_after_s else OK),
            "lag_seconds": None if lag is None else round(lag, 3),
            "last_bar_time": stats.last_bar_time,
            "last_pattern_time": stats.last_pattern_time,
            "patterns_detected": stats.patterns_detected,
        }
        if detector["status"] == STALE:
            reasons.append(f"detector stale: no progress for {lag:.0f} s")
        elif thresholds.detector_shards > 1:
            reasons.extend(_stale_shards(detector, stats, now, thresholds))
    if depths is not None:
        backed_up = depths.outbox > thresholds.outbox_backlog
        outbox = {
            "status": BACKLOG if backed_up else OK,
            "depth": depths.outbox,
            "processing": depths.processing,
            "audit_backlog": depths.audit_backlog,
        }
        if backed_up:
            reasons.append(f"outbox backlog: {depths.outbox} records")
        dead = {"status": PRESENT if depths.dead_letters else OK, "count": depths.dead_letters}
        if depths.audit_backlog and persistence is not None and persistence.at_risk:
            reasons.append(f"{depths.audit_backlog} deferred audit rows only in a Redis without persistence")
    program_states = program_component(programs)
    reasons.extend(program_states["failing"].values())
    if not redis_ok and not postgres_ok:
        status = DOWN
    elif reasons:
        status = DEGRADED
    else:
        status = HEALTHY
    redis_entry = dict(redis_component)
    if persistence is not None:
        redis_entry["persistence"] = persistence.mode
    components = {
        "redis": redis_entry,
        "postgres": dict(postgres_component),
        "detector": detector,
        "outbox": outbox,
        "dead_letters": dead,
        "programs": program_states,
    }
    return HealthReport(status=status, reasons=tuple(reasons), components=components)


def _stale_shards(
    detector: dict[str, Any], stats: StackStats, now: float, thresholds: Thresholds
) -> list[str]:
    """Per-shard lags into `detector`; a reason for each shard that had bars and stopped while the
    others go on (a shard that owns no symbol never has a bar, and is not judged)."""
    lags = {
        shard: max(0.0, now - seen)
        for shard, seen in stats.shard_bar_times.items()
        if shard < thresholds.detector_shards
    }
    detector["shards"] = {str(shard): round(lag, 3) for shard, lag in sorted(lags.items())}
    return [
        f"detector shard {shard} stale: no bar for {lag:.0f} s"
        for shard, lag in sorted(lags.items())
        if lag > thresholds.detector_stale_after_s
    ]


def health_event(
    report: HealthReport,
    *,
    now: float,
    previous_status: str | None,
    status_since: float,
    uptime_s: float | None,
) -> dict[str, Any]:
    """The `system_health` message for tickstock.health.status (§2.5, Appendix B item 14).

    Flat like the consumer's fixtures: top-level event_type, source, timestamp (float) and status;
    `metrics` mirrors their shape where we have the figure.
    """
    outbox = report.components["outbox"]
    detector = report.components["detector"]
    return {
        "event_type": contract.EVENT_SYSTEM_HEALTH,
        "source": contract.SOURCE_SYSTEM,
        "timestamp": float(now),
        "status": report.status,
        "previous_status": previous_status,
        "status_since": float(status_since),
        "reasons": list(report.reasons),
        "components": {name: dict(value) for name, value in report.components.items()},
        "metrics": {
            "queue_depth": outbox.get("depth"),
            "uptime_hours": None if uptime_s is None else round(uptime_s / 3600, 4),
            "patterns_detected": detector.get("patterns_detected"),
        },
    }
