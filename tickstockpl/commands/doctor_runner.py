"""What every doctor check shares: the result row (Check) and the runner that records one per check.

A store that refuses us mid-run fails the check at hand with a fix, instead of aborting doctor;
the store-specific checks (doctor_redis, doctor_postgres) build on CheckRunner.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from tickstockpl import health
from tickstockpl.errors import RedisConfigError, TickStockPLError
from tickstockpl.settings import Settings
from tickstockpl.stores import PgConnection

PASS, FAIL, SKIP = "pass", "fail", "skip"
PRIVILEGES_TITLE = "the audit role cannot change or erase the trail (least privilege)"
MARKS = {PASS: "✓", FAIL: "✗", SKIP: "–"}


@dataclass
class Check:
    """One row of the table."""

    name: str
    title: str
    required: bool
    state: str = PASS
    detail: str = ""
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def passed(self, detail: str, **data: Any) -> Check:
        self.state, self.detail, self.data = PASS, detail, data
        return self

    def failed(self, detail: str, hint: str, **data: Any) -> Check:
        self.state, self.detail, self.hint, self.data = FAIL, detail, hint, data
        return self

    def skipped(self, detail: str) -> Check:
        self.state, self.detail = SKIP, detail
        return self


class CheckRunner:
    """The state the checks share, and `add`, which runs one check and keeps its row."""

    def __init__(self, settings: Settings, args: argparse.Namespace) -> None:
        self.settings = settings
        self.args = args
        self.checks: list[Check] = []
        self.client: redis.Redis | None = None
        self.conn: PgConnection | None = None
        self.can_select = False
        self.status: health.SchemaStatus | None = None
        self.thresholds = health.Thresholds.from_settings(settings)
        # Checks decided early but shown last (the advisory rows after the required ones).
        self.deferred: list[tuple[str, str, bool, Callable[[Check], Check]]] = []

    def add(self, name: str, title: str, required: bool, body: Callable[[Check], Check]) -> None:
        check = Check(name, title, required)
        try:
            self.checks.append(body(check))
        except RedisConfigError as exc:  # a command or key the ACL user may not use
            self.checks.append(
                check.failed(
                    f"Redis refused {self.settings.redis_username or 'default'}: {exc}",
                    "give the producer's ACL user the commands, keys and channels it uses: load "
                    "deploy/redis-producer.acl (docs/operations.md, Redis ACL)",
                )
            )
        except TickStockPLError as exc:  # a store went away between two checks
            self.checks.append(check.failed(str(exc), "re-run doctor; if it persists, check the store's log"))
