"""Whether the producer's Redis survives a restart: the outbox and the audit backlog live only there.

Read with CONFIG GET, else INFO persistence, else reported as unknown (an ACL or a managed service).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import redis

from tickstockpl.errors import RedisConfigError
from tickstockpl.health.redis_readings import as_text
from tickstockpl.health.states import UNKNOWN
from tickstockpl.stores import redis_errors

AOF: Final = "aof"  # survives a restart (up to ~1 s of writes on a crash, with appendfsync everysec)
RDB: Final = "rdb"  # snapshots only: a restart loses what was written since the last one
NONE: Final = "none"  # nothing survives a restart
# UNKNOWN: Redis forbids both CONFIG GET and INFO (an ACL, a managed service)


@dataclass(frozen=True)
class RedisPersistence:
    """Whether the producer's Redis structures survive a Redis restart, and the exact risk if not."""

    mode: str  # AOF, RDB, NONE or UNKNOWN
    detail: str  # what was read: "appendonly yes (appendfsync everysec)", ...

    @property
    def at_risk(self) -> bool:
        """True when a restart is known to lose what only Redis holds."""
        return self.mode in (RDB, NONE)

    def risk(self, audit_backlog: int | None = None) -> str:
        """The warning to print, naming what would be lost; empty when nothing would."""
        if self.mode == AOF:
            return ""
        held = "the outbox (detected patterns not yet published), the processing list and the audit backlog"
        backlog = ""
        if audit_backlog:
            backlog = (
                f"; {audit_backlog} published pattern(s) whose audit row is deferred live ONLY there and "
                "would never get their PATTERN_PUBLISHED row"
            )
        if self.mode == NONE:
            return f"Redis has no persistence ({self.detail}): a Redis restart empties {held}{backlog}"
        if self.mode == RDB:
            return (
                f"Redis keeps snapshots only ({self.detail}): a Redis restart loses every write since the "
                f"last snapshot, in {held}{backlog}"
            )
        return f"Redis persistence unknown ({self.detail}): without any, a restart empties {held}{backlog}"


def read_persistence(client: redis.Redis) -> RedisPersistence:
    """CONFIG GET appendonly/save, else INFO persistence; UNKNOWN when Redis forbids both."""
    try:
        with redis_errors("CONFIG GET appendonly"):
            try:
                config = {**client.config_get("appendonly"), **client.config_get("save")}
                config.update(client.config_get("appendfsync"))
            except redis.ResponseError:  # an ACL (NOPERM), or CONFIG renamed away
                config = {}
            if config:
                if as_text(config.get("appendonly")) == "yes":
                    return RedisPersistence(
                        AOF, f"appendonly yes, appendfsync {as_text(config.get('appendfsync'))}"
                    )
                save = (as_text(config.get("save")) or "").strip()
                if save:
                    return RedisPersistence(RDB, f"appendonly no, save '{save}'")
                return RedisPersistence(NONE, "appendonly no, save ''")
            try:
                info = client.info("persistence")
            except redis.ResponseError:
                return RedisPersistence(UNKNOWN, "Redis forbids CONFIG GET and INFO to us")
    except RedisConfigError:
        return RedisPersistence(UNKNOWN, "Redis forbids CONFIG GET and INFO to us")
    if int(info.get("aof_enabled", 0)) == 1:
        return RedisPersistence(AOF, "aof_enabled:1 (INFO persistence; CONFIG is forbidden)")
    # INFO does not show the save rules: a snapshot since start up is the only hint there are any.
    return RedisPersistence(
        RDB if int(info.get("rdb_saves", 0)) > 0 else NONE,
        f"aof_enabled:0, rdb_saves:{info.get('rdb_saves', 0)} (INFO persistence; CONFIG is forbidden)",
    )
