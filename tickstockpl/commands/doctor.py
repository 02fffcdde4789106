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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from tickstockpl import contract, health
from tickstockpl.commands.common import add_max_age
from tickstockpl.errors import AuditConfigError, RedisConfigError, TickStockPLError
from tickstockpl.exitcodes import RET_FAILED, RET_OK, RET_USAGE
from tickstockpl.settings import AUDIT_ROLE, Settings
from tickstockpl.stores import PgConnection, postgres_connection

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


class Doctor:
    """Runs the checks in order; a check whose store is unreachable is skipped, not failed twice."""

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

    # --- stores ----------------------------------------------------------------------------------
    def check_redis(self, check: Check) -> Check:
        client = health.checking_client(self.settings)
        target = self.settings.redis_target
        try:
            millis = health.ping_redis(client)
        except RedisConfigError as exc:
            client.close()
            return check.failed(
                f"{target} refused our credentials (password, ACL user or TLS): {exc}",
                f"set REDIS_PASSWORD (and REDIS_USERNAME for an ACL user; REDIS_SSL, REDIS_SSL_CA_CERTS for "
                f"TLS) to what the Redis at {target} requires",
            )
        except TickStockPLError as exc:
            client.close()
            return check.failed(
                str(exc), f"start Redis, or point REDIS_HOST/REDIS_PORT/REDIS_DB at it (now {target})"
            )
        self.client = client
        return check.passed(f"{target}: PONG in {millis:.1f} ms", target=target, ping_ms=round(millis, 3))

    def check_postgres(self, check: Check) -> Check:
        target = self.settings.postgres_target
        if not self.settings.audit_enabled:
            return check.skipped("audit disabled (TICKSTOCKPL_AUDIT_ENABLED=0): no rows are written")
        try:
            self.conn = postgres_connection(self.settings)
        except AuditConfigError as exc:
            return check.failed(
                f"{target}: {exc}",
                "check POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB (or DATABASE_URI); as a superuser: "
                f"ALTER ROLE {self.settings.postgres_user} LOGIN PASSWORD '...'",
            )
        except TickStockPLError as exc:
            return check.failed(
                f"{target}: {exc}",
                "start PostgreSQL, or set POSTGRES_HOST/POSTGRES_PORT (the consumer's default moved "
                "from 5433 to 5432 at 7f70b87)",
            )
        with self.conn.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]  # type: ignore[index]
        return check.passed(f"{target}: PostgreSQL {version}", target=target, version=version)

    @property
    def init_hint(self) -> str:
        return (
            f"apply db/init.sql as a superuser: psql -d {self.settings.postgres_db} -f db/init.sql "
            "(TickStockAppV2 dropped it at 539232d; TICKSTOCKPL_AUDIT_ENABLED=0 runs without the audit)"
        )

    def schema_checks(self) -> None:
        init_hint = self.init_hint
        user = self.settings.postgres_user
        if self.conn is None:
            why = "audit disabled" if not self.settings.audit_enabled else "PostgreSQL unreachable"
            for name, title in (
                ("schema", "integration_events table, INSERT granted"),
                ("function", "log_integration_event present, EXECUTE granted"),
                ("sequence", "sequence grant (USAGE on integration_events_id_seq)"),
                ("audit_call", "an audit row is accepted (probe, rolled back)"),
                ("duplicate_check", "the relay's duplicate check is allowed"),
            ):
                self.checks.append(Check(name, title, True).skipped(why))
            self.deferred.append(("privileges", PRIVILEGES_TITLE, False, lambda check: check.skipped(why)))
            return
        with self.conn.cursor() as cursor:
            status = health.schema_status(cursor)
        self.can_select = status.can_select
        self.status = status

        def table(check: Check) -> Check:
            if not status.table:
                return check.failed("integration_events does not exist", init_hint)
            if not status.can_insert:
                return check.failed(
                    f"{user} may not INSERT into integration_events",
                    f"GRANT INSERT ON integration_events TO {user}",
                )
            view = "present" if status.view else "missing (the consumer's monitor needs it)"
            return check.passed(f"present, INSERT granted; pattern_flow_analysis {view}", view=status.view)

        def function(check: Check) -> Check:
            if not status.function:
                return check.failed("log_integration_event(uuid, varchar, ...) does not exist", init_hint)
            if not status.can_execute:
                return check.failed(
                    f"{user} may not EXECUTE log_integration_event",
                    f"GRANT EXECUTE ON FUNCTION log_integration_event TO {user}",
                )
            return check.passed("present, EXECUTE granted")

        def sequence(check: Check) -> Check:
            if status.sequence is None:
                return check.skipped("no table, so no sequence")
            if not status.can_use_sequence:
                return check.failed(
                    f"{user} lacks USAGE on {status.sequence}: every call fails with "
                    f'"permission denied for sequence"',
                    f"GRANT USAGE, SELECT ON SEQUENCE {status.sequence} TO {user} "
                    "(the consumer's script forgets it; contract §4.3)",
                )
            return check.passed(f"USAGE on {status.sequence} granted", sequence=status.sequence)

        def audit_call(check: Check) -> Check:
            assert self.conn is not None
            try:
                health.probe_audit_call(self.conn)
            except AuditConfigError as exc:
                return check.failed(str(exc), "fix the failing check above; then re-run doctor")
            return check.passed("log_integration_event accepted a heartbeat row (rolled back)")

        self.add("schema", "integration_events table, INSERT granted", True, table)
        self.add("function", "log_integration_event present, EXECUTE granted", True, function)
        self.add("sequence", "sequence grant (USAGE on integration_events_id_seq)", True, sequence)
        self.add("audit_call", "an audit row is accepted (probe, rolled back)", True, audit_call)
        self.add("duplicate_check", "the relay's duplicate check is allowed", True, self.check_duplicate)
        self.deferred.append(("privileges", PRIVILEGES_TITLE, False, self.check_privileges))

    def check_duplicate(self, check: Check) -> Check:
        """The relay skips flows already audited: allowed through the definer function or SELECT."""
        status, user = self.status, self.settings.postgres_user
        assert status is not None
        if status.log_new_callable:
            return check.passed("through tickstockpl_log_new (SECURITY DEFINER): no SELECT needed")
        if status.can_select:
            return check.passed(f"inline: {user} may SELECT integration_events", inline=True)
        return check.failed(
            f"{user} may neither EXECUTE tickstockpl_log_new nor SELECT integration_events: the "
            "relay's duplicate check is refused and every row goes to the audit backlog",
            f"{self.init_hint}; it creates tickstockpl_log_new and grants it to {AUDIT_ROLE}",
        )

    def check_privileges(self, check: Check) -> Check:
        """Which setup this is: the write-only audit role, or a role that can erase the trail."""
        status, user = self.status, self.settings.postgres_user
        assert status is not None
        erase = status.can_erase
        data = {"can_erase": list(erase), "can_select": status.can_select, "role": user}
        if erase:
            return check.failed(
                f"{user} may {', '.join(erase)} integration_events: the weaker shared setup, in "
                "which whoever holds this password can rewrite or erase the audit trail",
                f"run the services as the write-only {AUDIT_ROLE}: make up does "
                "(TICKSTOCKPL_DB_ROLES=least); attached to a database, apply db/init.sql as a superuser "
                f"and set POSTGRES_USER={AUDIT_ROLE} (docs/stack.md, Least privilege)",
                **data,
            )
        reads = "reads nothing" if not status.can_select else "may SELECT (reads, cannot change)"
        return check.passed(f"least privilege: {user} writes audit rows only, {reads}", **data)

    # --- the running stack -----------------------------------------------------------------------
    def check_heartbeat(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        reading = health.read_heartbeat(self.client)
        stats = health.read_stats(self.client)
        running = stats.running or reading.raw is not None or self.args.expect_running
        data: dict[str, Any] = {"age_s": reading.age_s, "value": reading.raw, "stack_running": running}
        last = self.client.get(contract.KEY_HEALTH)
        status = json.loads(last).get("status") if last else None
        data["status"] = status
        if not running:
            why = "never started here" if stats.started_at is None else "stopped cleanly"
            return check.skipped(f"no stack running ({why}); start it with `make up`")
        problem = reading.problem(self.args.max_age)
        if problem is not None:
            hint = (
                "start the heartbeat (make up, or supervisorctl start tickstockpl:heartbeat); it must "
                "SET the key to time.time() seconds every <= 20 s (contract §5.1)"
            )
            if reading.raw is not None and reading.error is not None:
                hint = "the key must hold float epoch seconds (repr(time.time())), not ms, ISO or JSON"
            return check.failed(f"{contract.KEY_HEARTBEAT} {problem}", hint, **data)
        shown = f"; last health status {status}" if status else ""
        return check.passed(f"{reading.age_s:.1f} s old (limit {self.args.max_age:g} s){shown}", **data)

    def check_programs(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        programs = health.read_programs(self.client)
        if not programs:
            return check.skipped("no supervisord of ours reports program states (is the stack running?)")
        component = health.program_component(programs)
        states = component["states"]
        if component["failing"]:
            return check.failed(
                "; ".join(component["failing"].values()),
                "see why in `make logs` (or docker compose logs), fix it, then "
                "`supervisorctl -c var/supervisorctl.conf restart <group:name>`",
                states=states,
            )
        shown = ", ".join(f"{name.split(':')[-1]} {state}" for name, state in sorted(states.items()))
        return check.passed(shown, states=states)

    def check_persistence(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        persistence = health.read_persistence(self.client)
        backlog = health.queue_depths(self.client).audit_backlog
        data = {"mode": persistence.mode, "audit_backlog": backlog}
        if persistence.mode == health.AOF:
            return check.passed(persistence.detail, **data)
        return check.failed(
            persistence.risk(backlog),
            "turn on AOF in that Redis (CONFIG SET appendonly yes, and appendonly yes in redis.conf), or "
            "give the producer a Redis of its own that has it; with CONFIG forbidden, ask its operator",
            **data,
        )

    def check_subscribers(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        counts = health.subscriber_counts(self.client)
        shown = ", ".join(f"{channel}={count}" for channel, count in counts.items())
        if counts.get(contract.CHANNEL_PATTERNS, 0) == 0:
            return check.failed(
                f"nobody subscribes to {contract.CHANNEL_PATTERNS} ({shown})",
                "start TickStockAppV2 and make it use the same Redis (REDIS_HOST/REDIS_PORT/REDIS_DB)",
                counts=counts,
            )
        return check.passed(shown, counts=counts)

    def flow_checks(self) -> None:
        titles = {
            "recent_patterns": "recent PATTERN_PUBLISHED rows",
            "consumer_flows": "flows completed by the consumer (EVENT_RECEIVED, EVENT_PARSED)",
            "orphans": "no orphan flows",
        }
        reader = self._reader()
        if reader is None:
            why = (
                "PostgreSQL unreachable"
                if self.conn is None
                else f"{self.settings.postgres_user} cannot read integration_events (needs SELECT, or "
                "POSTGRES_READ_PASSWORD for the read role)"
            )
            for name, title in titles.items():
                self.checks.append(Check(name, title, False).skipped(why))
            return
        try:
            with reader.cursor() as cursor:
                flows = health.flow_stats(
                    cursor, window_s=self.args.window, orphan_grace_s=self.args.orphan_grace
                )
        finally:
            if reader is not self.conn:
                reader.close()
        data = asdict(flows)
        window = f"in the last {self.args.window / 60:g} min"

        def recent(check: Check) -> Check:
            if flows.published == 0:
                return check.failed(
                    f"no PATTERN_PUBLISHED rows {window}",
                    "is the stack running (detector, relay)? `tickstockpl publish-test` sends one",
                    **data,
                )
            age = flows.last_published_age_s or 0.0
            return check.passed(f"{flows.published} flows {window}, the newest {age:.0f} s ago", **data)

        def completed(check: Check) -> Check:
            if flows.published == 0:
                return check.skipped("no flows to judge")
            if flows.completed == 0:
                return check.failed(
                    f"none of {flows.published} flows has EVENT_RECEIVED and EVENT_PARSED",
                    "TickStockAppV2 writes them only at 30aa1ba-7f70b87 (not from 539232d), against this "
                    "database; check that it runs and that its inserts succeed",
                    **data,
                )
            latency = ""
            if flows.p50_ms is not None and flows.p95_ms is not None:
                latency = f"; latency p50 {flows.p50_ms:.1f} ms, p95 {flows.p95_ms:.1f} ms"
            return check.passed(f"{flows.completed} of {flows.published} completed{latency}", **data)

        def orphans(check: Check) -> Check:
            if flows.orphans:
                return check.failed(
                    f"{flows.orphans} published flows {window} have no EVENT_RECEIVED or EVENT_PARSED row",
                    "the consumer missed them: not subscribed at the time, or its inserts failed "
                    "(non-UUID flow_id, confidence >= 9.995, its sequence grant); see its log",
                    **data,
                )
            return check.passed(f"0 orphans among {flows.published} flows", **data)

        self.add("recent_patterns", titles["recent_patterns"], False, recent)
        self.add("consumer_flows", titles["consumer_flows"], False, completed)
        self.add("orphans", titles["orphans"], False, orphans)

    def _reader(self) -> PgConnection | None:
        """A connection that may read the flows: the read role's when its password is known (the
        audit role may not SELECT), else ours if it can; None when neither."""
        if self.conn is None:
            return None
        reading = self.settings.for_reading()
        if reading is not self.settings:
            try:
                return postgres_connection(reading)
            except TickStockPLError:
                pass  # fall back to our own connection, which may read
        return self.conn if self.can_select else None

    def check_backlog(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        depths = health.queue_depths(self.client)
        data = asdict(depths)
        shown = (
            f"outbox {depths.outbox}, processing {depths.processing}, dead letters {depths.dead_letters}, "
            f"audit backlog {depths.audit_backlog}"
        )
        hints = []
        if depths.outbox > self.thresholds.outbox_backlog:
            hints.append("the outbox is backing up: is the relay running (supervisorctl status)?")
        if depths.dead_letters:
            hints.append("inspect poison records with `tickstockpl deadletters`")
        if depths.audit_backlog:
            hints.append("audit rows wait for PostgreSQL: the relay writes them when it answers")
        if hints:
            return check.failed(shown, "; ".join(hints), **data)
        return check.passed(shown, **data)


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
