"""`tickstockpl doctor`: the integration document's startup checklist and troubleshooting guide as checks.

Required checks (exit 1 when one fails): Redis, PostgreSQL with our credentials, the audit table,
function and sequence grant callable by our role, the relay's duplicate check allowed, and a fresh
heartbeat once the stack runs. Advisory checks warn and exit 0, because a producer with no consumer
attached is healthy: subscribers, recent patterns, flows completed by the consumer, orphans,
backlog, and whether our role could change or erase the audit trail (the weaker shared setup).
Every failure carries a one-line fix. `--json` prints the same for machines.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from tickstockpl.commands.common import add_max_age
from tickstockpl.commands.doctor_postgres import PostgresChecks
from tickstockpl.commands.doctor_redis import RedisChecks
from tickstockpl.commands.doctor_runner import FAIL, MARKS, Check
from tickstockpl.exitcodes import RET_FAILED, RET_OK, RET_USAGE
from tickstockpl.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    add_max_age(parser)
    parser.add_argument(
        "--expect-running",
        action="store_true",
        help="require a fresh heartbeat even when no stack run is recorded (for scripts waiting on `up`)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how far back flows count (default 1 h)",
    )
    parser.add_argument(
        "--orphan-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a published flow younger than this is not an orphan yet (default 10)",
    )


class Doctor(RedisChecks, PostgresChecks):
    """Runs the checks in order; a check whose store is unreachable is skipped, not failed twice."""

    def run(self) -> list[Check]:
        try:
            self.add("redis", "Redis reachable", True, self.check_redis)
            self.add("postgres", "PostgreSQL reachable with our credentials", True, self.check_postgres)
            self.schema_checks()
            self.add("heartbeat", "heartbeat fresh (once the stack runs)", True, self.check_heartbeat)
            self.add("programs", "no program FATAL or restart-looping", True, self.check_programs)
            self.add("subscribers", "TickStockAppV2 listening (PUBSUB NUMSUB)", False, self.check_subscribers)
            self.flow_checks()
            self.add("backlog", "outbox, dead letters and audit backlog", False, self.check_backlog)
            self.add("redis_persistence", "Redis survives a restart (AOF)", False, self.check_persistence)
            for name, title, required, body in self.deferred:
                self.add(name, title, required, body)
        finally:
            if self.client is not None:
                self.client.close()
            if self.conn is not None:
                self.conn.close()
        return self.checks


def render(checks: list[Check], settings: Settings) -> str:
    lines = [f"tickstockpl doctor: Redis {settings.redis_target}, PostgreSQL {settings.postgres_target}", ""]
    width = max(len(check.title) for check in checks)
    for check in checks:
        kind = "required" if check.required else "advisory"
        lines.append(f"  {MARKS[check.state]} {check.title:<{width}}  {kind:<8}  {check.detail}")
        if check.state == FAIL:
            lines.append(f"    {'':<{width}}  {'':<8}  fix: {check.hint}")
    lines += ["", summary(checks)]
    return "\n".join(lines)


def summary(checks: list[Check]) -> str:
    failed = [c.name for c in checks if c.state == FAIL and c.required]
    warned = [c.name for c in checks if c.state == FAIL and not c.required]
    warnings = f"{len(warned)} advisory warning(s)" + (f" ({', '.join(warned)})" if warned else "")
    if failed:
        return f"doctor: {len(failed)} required check(s) failed ({', '.join(failed)}); {warnings}"
    return f"doctor: all required checks passed; {warnings}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.max_age <= 0 or args.window <= 0 or args.orphan_grace < 0:
        print("doctor: --max-age and --window must be > 0, --orphan-grace >= 0")
        return RET_USAGE
    checks = Doctor(settings, args).run()
    ok = not any(check.state == FAIL and check.required for check in checks)
    if args.json:
        report = {
            "ok": ok,
            "required_failed": [c.name for c in checks if c.state == FAIL and c.required],
            "warnings": [c.name for c in checks if c.state == FAIL and not c.required],
            "checks": [asdict(check) for check in checks],
        }
        json.dump(report, sys.stdout, indent=2, default=str)
        print()
    else:
        print(render(checks, settings))
    return RET_OK if ok else RET_FAILED
